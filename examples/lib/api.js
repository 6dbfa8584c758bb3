// The one client the demo touchpoints share: the gateway's public HTTP API on the same
// origin, a channel's publishable key for anonymous calls, bearer tokens once signed in, and
// server-sent events read with fetch (so a token can travel in a header, never in a URL).

// Development publishable keys (public by design: a key only names the channel).
export const KEYS = { WEB: "pk_web_dev_tenpo_0000000000", APP: "pk_app_dev_tenpo_0000000000" };

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    const info = (error.details || []).find((d) => d.reason) || {};
    // The offending fields, as the AIP-193 BadRequest detail names them.
    const fields = (error.details || []).flatMap((d) => d.fieldViolations || [])
      .map((v) => `${v.field}: ${v.description}`);
    const message = [error.message || "request failed", ...fields].join("; ");
    super(`${status} ${info.reason || error.status || ""}: ${message}`);
    this.status = status;
    this.reason = info.reason || "";
    this.body = body;
  }
}

// A client for one touchpoint: `key` for anonymous calls, `token()` for the signed-in one.
export function client({ key = KEYS.WEB, token = () => null, language = () => "ja" } = {}) {
  function headers(extra = {}) {
    const result = { "accept-language": language(), ...extra };
    const bearer = token();
    if (bearer) result.authorization = `Bearer ${bearer}`;
    else if (key) result["x-api-key"] = key;
    return result;
  }

  async function call(method, path, { body, query, bearer } = {}) {
    const url = new URL(path, location.origin);
    for (const [name, value] of Object.entries(query || {})) {
      for (const item of [].concat(value)) {
        if (item !== undefined && item !== null && item !== "") url.searchParams.append(name, item);
      }
    }
    const extra = body === undefined ? {} : { "content-type": "application/json" };
    if (bearer) extra.authorization = `Bearer ${bearer}`;
    const response = await fetch(url, {
      method,
      headers: headers(extra),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    const data = text ? JSON.parse(text) : {};
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  // Server-sent events: onEvent(data) for each `data:` event; returns stop(). Reconnects
  // after a dropped connection (the gateway ends streams after a while) until stopped.
  function stream(path, query, onEvent, { onError = () => {} } = {}) {
    const controller = new AbortController();
    let stopped = false;
    async function run() {
      while (!stopped) {
        try {
          const url = new URL(path, location.origin);
          for (const [name, value] of Object.entries(query)) {
            for (const item of [].concat(value)) url.searchParams.append(name, item);
          }
          const response = await fetch(url, {
            headers: headers({ accept: "text/event-stream" }),
            signal: controller.signal,
          });
          if (!response.ok) throw new ApiError(response.status, await response.json());
          await readEvents(response.body, onEvent, onError);
        } catch (error) {
          if (stopped) return;
          onError(error);
        }
        await new Promise((resolve) => setTimeout(resolve, 2000));
      }
    }
    run();
    return () => {
      stopped = true;
      controller.abort();
    };
  }

  return {
    get: (path, query) => call("GET", path, { query }),
    post: (path, body = {}, options = {}) => call("POST", path, { body, ...options }),
    patch: (path, body, query) => call("PATCH", path, { body, query }),
    stream,
  };
}

async function readEvents(body, onEvent, onError) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const lines = block.split("\n");
      const kind = (lines.find((l) => l.startsWith("event:")) || "event: message").slice(6).trim();
      const data = lines.filter((l) => l.startsWith("data:")).map((l) => l.slice(5)).join("\n");
      if (!data) continue; // a heartbeat comment
      if (kind === "error") onError(new ApiError(0, JSON.parse(data)));
      else onEvent(JSON.parse(data));
    }
  }
}

// A fresh idempotency key for a mutating call the user may retry.
export const requestId = () => crypto.randomUUID();

// google.type.Money → "¥12,800" (JPY has no minor unit; nanos are shown only when present).
export function money(amount) {
  if (!amount || !amount.currencyCode) return "—";
  const value = Number(amount.units || 0) + (amount.nanos || 0) / 1e9;
  return new Intl.NumberFormat("ja-JP", { style: "currency", currency: amount.currencyCode })
    .format(value);
}

// A localized text in the wanted language, else the server's pick, else any.
export function text(localized, fallback, language) {
  const translations = (localized && localized.translations) || {};
  return translations[language] || fallback || Object.values(translations)[0] || "";
}

// Tiny DOM helper: el("li", { class: "x", onclick }, "text", child, ...).
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

// Show an error where the user looks (and in the console for developers).
export function report(target, error) {
  console.warn(error);
  target.textContent = error instanceof Error ? error.message : String(error);
  target.hidden = false;
}

// Tokens are kept per browser tab (sessionStorage): closing the tab signs out.
export function session(name) {
  return {
    get: () => JSON.parse(sessionStorage.getItem(name) || "null"),
    set: (value) => sessionStorage.setItem(name, JSON.stringify(value)),
    clear: () => sessionStorage.removeItem(name),
  };
}
