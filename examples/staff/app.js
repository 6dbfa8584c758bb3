// Staff: customer lookup and the 360° view (profile, points, orders on every channel,
// timeline, consents), the store's click & collect orders, and what exists for returns.
import { client, el, money, report, requestId, session } from "../lib/api.js";

const $ = (id) => document.getElementById(id);
const staff = session("tenpo.staff");
const api = client({ key: null, token: () => staff.get()?.accessToken });
const fail = (error) => report($("error"), error);
const label = (value, prefix) => (value || "").replace(prefix, "").toLowerCase();
let shown = null; // the customer in the 360° view

async function signIn(event) {
  event.preventDefault();
  const { tokens } = await api.post("/v1/identity:signInStaff", { email: $("email").value, password: $("password").value });
  staff.set({ accessToken: tokens.accessToken, email: $("email").value });
  $("password").value = "";
  await ready();
}

async function ready() {
  const on = Boolean(staff.get());
  $("sign-in-section").hidden = on;
  for (const id of ["lookup-section", "pickups-section", "returns-section"]) $(id).hidden = !on;
  if (!on) return;
  $("who").textContent = staff.get().email;
  const { locations = [] } = await api.get("/v1/locations", { pageSize: 50 });
  $("store").replaceChildren(...locations.filter((l) => l.type === "LOCATION_TYPE_STORE")
    .map((l) => el("option", { value: l.id }, l.displayName)));
  await pickups();
}

async function lookup(event) {
  event.preventDefault();
  const query = $("lookup-query").value.trim();
  const field = query.includes("@") ? "email" : /^[\d+\-]+$/.test(query) ? "phoneNumber" : "name";
  const { customers = [] } = await api.get("/v1/customers:search", { [field]: query, pageSize: 20 });
  $("customers").replaceChildren(...customers.map((c) =>
    el("li", {}, el("a", { href: "#", onclick: (e) => { e.preventDefault(); show(c.id).catch(fail); } },
      `${c.name?.familyName || ""} ${c.name?.givenName || ""}`), ` · ${c.email || ""}`)));
  if (!customers.length) $("customers").replaceChildren(el("li", { class: "muted" }, "No customer found."));
}

// The 360° view, each part from the service that owns it, side by side.
async function show(customerId) {
  const [customer, balance, orders, timeline, consents] = await Promise.all([
    api.get(`/v1/customers/${customerId}`),
    api.get(`/v1/customers/${customerId}/loyalty`),
    api.get("/v1/orders", { customerId, pageSize: 20 }),
    api.get(`/v1/customers/${customerId}/interactions`, { pageSize: 20 }),
    api.get(`/v1/customers/${customerId}/consents`),
  ]);
  $("customer-section").hidden = false;
  $("customer-name").textContent = `${customer.name?.familyName || ""} ${customer.name?.givenName || ""}`;
  $("customer-contact").textContent = [customer.email, customer.phoneNumber, customer.preferredStoreId].filter(Boolean).join(" · ");
  $("customer-points").textContent = `${balance.available || 0} pt`;
  $("customer-orders").replaceChildren(...(orders.orders || []).map(orderRow));
  $("customer-timeline").replaceChildren(...(timeline.interactions || []).map((i) =>
    el("li", {}, `${i.createTime?.slice(0, 16).replace("T", " ")} · ${label(i.kind, "INTERACTION_KIND_")} · ${i.summary || i.sku || ""} `,
      el("span", { class: "muted" }, `${label(i.channel, "CHANNEL_")} ${i.storeId || ""}`))));
  $("customer-consents").replaceChildren(...(consents.consents || []).map((c) =>
    el("li", {}, `${label(c.purpose, "CONSENT_PURPOSE_")} × ${label(c.channel, "CONSENT_CHANNEL_")}: ${label(c.status, "CONSENT_STATUS_")}`)));
  shown = customerId;
}

function orderRow(order) {
  return el("tr", { "data-order": order.id },
    el("td", {}, order.orderNumber), el("td", {}, label(order.status, "ORDER_STATUS_")),
    el("td", {}, label(order.channel, "CHANNEL_")), el("td", {}, label(order.fulfillment?.method, "FULFILLMENT_METHOD_")),
    el("td", {}, money(order.totals?.total)), el("td", {}, order.createTime?.slice(0, 10) || ""));
}

// The store's click & collect work list (ListStoreFulfillments: open fulfilments by due
// time): ready to collect, and those still to prepare, which staff put on the shelf.
async function pickups() {
  const store = $("store").value;
  if (!store) return;
  const { fulfillments = [] } = await api.get(`/v1/stores/${store}/fulfillments`, { pageSize: 200 });
  const here = fulfillments.filter((f) => f.type === "FULFILLMENT_TYPE_CLICK_AND_COLLECT");
  $("pickups").replaceChildren(...here.map((f) => {
    const ready = f.status === "FULFILLMENT_STATUS_READY_FOR_PICKUP";
    return el("tr", { "data-fulfilment": f.id, "data-order-number": f.orderNumber, "data-status": f.status },
      el("td", {}, f.orderNumber), el("td", {}, f.number),
      el("td", {}, (f.lines || []).map((l) => `${l.sku} × ${l.quantity}`).join(", ")),
      el("td", {}, label(f.status, "FULFILLMENT_STATUS_").replaceAll("_", " ")),
      el("td", {}, ready ? `hold until ${f.pickup?.holdUntil?.slice(0, 10) || ""}` : `due ${f.dueTime?.slice(0, 16).replace("T", " ") || ""}`),
      el("td", {}, ready ? "" : el("button", { class: "primary", onclick: () => markReady(f).catch(fail) }, "Ready"),
        " ", el("button", { onclick: () => cancel(f).catch(fail) }, "Cancel")));
  }));
  if (!here.length) $("pickups").replaceChildren(el("tr", {}, el("td", { class: "muted" }, "No pickups in this store.")));
}

async function markReady(fulfilment) {
  await api.post(`/v1/orders/${fulfilment.orderId}/fulfillments/${fulfilment.id}:markReadyForPickup`, { requestId: requestId() });
  await pickups();
}

async function cancel(fulfilment) {
  if (!confirm(`Cancel ${fulfilment.orderNumber}? Stock goes back, the payment is voided.`)) return;
  await api.post(`/v1/orders/${fulfilment.orderId}:cancel`, { reason: "cancelled at the store", requestId: requestId() });
  await pickups();
  if (shown) await show(shown);
}

// --- returns --------------------------------------------------------------------------------

// Any store takes back what left (picked up, delivered, carried out) within the return
// window: restocked here, refunded to the original payment.
let returning = null;

async function findReturn(event) {
  event.preventDefault();
  const { orders = [] } = await api.get("/v1/orders:search", { orderNumber: $("return-number").value.trim() });
  returning = orders[0] || null;
  $("return-result").textContent = "";
  if (!returning) throw new Error(`No order ${$("return-number").value.trim()}.`);
  $("return-order").hidden = false;
  $("return-title").textContent = `${returning.orderNumber} · ${label(returning.status, "ORDER_STATUS_")} · ${money(returning.totals?.total)}`;
  $("return-lines").replaceChildren(...(returning.lines || []).map((line) =>
    el("li", {}, `${line.title || ""} (${line.sku}) × ${line.quantity} · `, money(line.total), " · back: ",
      el("input", { type: "number", min: "0", max: String(line.quantity), value: "0", "data-sku": line.sku, "aria-label": `return ${line.sku}`, class: "return-quantity" }))));
}

async function takeBack(event) {
  event.preventDefault();
  const lines = [...document.querySelectorAll(".return-quantity")]
    .map((input) => ({ sku: input.dataset.sku, quantity: Number(input.value) }))
    .filter((line) => line.quantity > 0);
  if (!lines.length) throw new Error("Say how many units come back.");
  const { orderReturn } = await api.post(`/v1/orders/${returning.id}:returnLines`, {
    storeId: $("store").value, lines, requestId: requestId(),
  });
  $("return-result").textContent = `Taken back in ${orderReturn.storeId}: ${lines.map((l) => `${l.sku} × ${l.quantity}`).join(", ")}, ${money(orderReturn.refund)} refunded (${label(orderReturn.status, "RETURN_STATUS_")})`;
  $("return-result").dataset.status = orderReturn.status;
  $("return-order").hidden = true;
}

function on(id, event, handler) {
  $(id).addEventListener(event, (e) => {
    $("error").hidden = true;
    Promise.resolve(handler(e)).catch(fail);
  });
}

on("sign-in", "submit", signIn);
on("lookup", "submit", lookup);
on("store", "change", pickups);
on("refresh-pickups", "click", pickups);
on("return-find", "submit", findReturn);
on("return-form", "submit", takeBack);
ready().catch(fail);
