// The dev inbox: every mail and SMS the notification service sent, newest first.
import { client, el, report, session } from "../lib/api.js";
import { listMessages } from "./source.js";

const $ = (id) => document.getElementById(id);
const token = session("tenpo.inbox.token");
const fail = (error) => report($("error"), error);

async function refresh() {
  $("error").hidden = true;
  const on = Boolean(token.get());
  $("token-section").hidden = on;
  $("messages-section").hidden = !on;
  if (!on) return;
  const messages = await listMessages(token.get());
  $("count").textContent = `(${messages.length})`;
  $("messages").replaceChildren(...messages.map((m) =>
    el("tr", { "data-channel": m.channel },
      el("td", {}, m.time.slice(0, 19).replace("T", " ")), el("td", {}, m.channel), el("td", {}, m.to),
      el("td", {}, el("a", { href: "#", onclick: (e) => { e.preventDefault(); open(m); } }, m.subject || "(no subject)")),
      el("td", { class: "muted" }, m.status))));
  if (!messages.length) $("messages").replaceChildren(el("tr", {}, el("td", { class: "muted" }, "Nothing sent yet.")));
}

function open(message) {
  $("message-section").hidden = false;
  $("subject").textContent = message.subject;
  $("meta").textContent = `${message.channel} to ${message.to} · ${message.status} ${message.reason}`;
  $("body").textContent = message.body;
}

// Staff sign-in: in development the staff account carries notifications:read.
$("sign-in").addEventListener("submit", (event) => {
  event.preventDefault();
  const api = client({ key: null });
  api.post("/v1/identity:signInStaff", { email: $("email").value, password: $("password").value })
    .then(({ tokens }) => {
      $("password").value = "";
      if (!(tokens.scopes || []).includes("notifications:read")) {
        throw new Error("This staff account may not read messages (notifications:read).");
      }
      token.set(tokens.accessToken);
      return refresh();
    })
    .catch((error) => {
      token.clear();
      fail(error);
    });
});

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token.set($("token").value.trim());
  $("token").value = "";
  refresh().catch((error) => {
    token.clear();
    fail(error);
  });
});
$("refresh").addEventListener("click", () => refresh().catch(fail));
refresh().catch(fail);
