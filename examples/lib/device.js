// In-store devices (kiosk, smart shelf, smart mirror): the device's own token from its client credentials,
// and the hand-off that lends it a customer's session for a few minutes.
import { client, session } from "./api.js";

// The RFID EPC a shelf or mirror read (96, 128 or 256 bits of hex), lower case; "" for a JAN.
// Decided by the code itself: the catalog may resolve an SGTIN tag through the JAN it
// encodes and report that it matched the JAN, yet only the tag names this very item.
export function rfidTag(code) {
  return /^(?:[0-9a-f]{24}|[0-9a-f]{32}|[0-9a-f]{64})$/i.test(code) ? code.toLowerCase() : "";
}

// A JWT's claims, read (not verified: the gateway and services verify every token).
export function claims(token) {
  const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
}

// The device's state for this tab: { token, store, channel, name } and, after a hand-off,
// { customerToken, customerId }.
export function deviceState(name) {
  const state = session(`tenpo.${name}.device`);
  return {
    ...state,
    // A token a minute from its end is as good as gone.
    valid: (token) => Boolean(token) && claims(token).exp * 1000 > Date.now() + 60_000,
  };
}

export async function signInDevice(api, clientId, clientSecret) {
  const { tokens } = await api.post("/v1/clients:signIn", { clientId, clientSecret });
  const claimed = claims(tokens.accessToken);
  return { token: tokens.accessToken, store: claimed.store, channel: claimed.channel };
}

// Device hand-off: a code the customer approves in her own app (the web shop here), then
// polled until approved. onCode(started) shows the code; resolves with the customer session.
export async function handOff(deviceToken, { onCode, onState = () => {}, signal } = {}) {
  const api = client({ key: null, token: () => deviceToken });
  const started = await api.post("/v1/deviceSessions", {});
  onCode(started);
  const interval = Math.max(1, started.pollIntervalSeconds || 2) * 1000;
  const expires = Date.parse(started.expireTime);
  while (Date.now() < expires) {
    if (signal?.aborted) throw new Error("hand-off cancelled");
    await new Promise((resolve) => setTimeout(resolve, interval));
    const exchanged = await api.post("/v1/deviceSessions:exchange", { deviceCode: started.deviceCode });
    onState(exchanged.state);
    if (exchanged.tokens?.accessToken) {
      return { customerToken: exchanged.tokens.accessToken, customerId: exchanged.customerId };
    }
  }
  throw new Error("the code expired: start again");
}
