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
  await pickups();
}

function orderRow(order) {
  return el("tr", { "data-order": order.id },
    el("td", {}, order.orderNumber), el("td", {}, label(order.status, "ORDER_STATUS_")),
    el("td", {}, label(order.channel, "CHANNEL_")), el("td", {}, label(order.fulfillment?.method, "FULFILLMENT_METHOD_")),
    el("td", {}, money(order.totals?.total)), el("td", {}, order.createTime?.slice(0, 10) || ""));
}

// ListOrders names one customer (CUSTOMER_ID_REQUIRED otherwise): the store's pickups are
// the shown customer's placed click & collect orders for this store, until a store-wide
// pickup list exists.
async function pickups() {
  if (!shown) return;
  const store = $("store").value;
  const { orders = [] } = await api.get("/v1/orders", { customerId: shown, statuses: "ORDER_STATUS_PLACED", pageSize: 100 });
  const here = orders.filter((o) => o.fulfillment?.method === "FULFILLMENT_METHOD_PICKUP" && o.fulfillment?.storeId === store);
  $("pickups").replaceChildren(...here.map((order) => {
    const row = orderRow(order);
    row.append(el("td", {}, el("button", { onclick: () => cancel(order).catch(fail) }, "Cancel")));
    return row;
  }));
  if (!here.length) $("pickups").replaceChildren(el("tr", {}, el("td", { class: "muted" }, "No pickup orders for this store.")));
}

async function cancel(order) {
  if (!confirm(`Cancel ${order.orderNumber}? Stock goes back, the payment is voided.`)) return;
  await api.post(`/v1/orders/${order.id}:cancel`, { reason: "cancelled at the store", requestId: requestId() });
  await pickups();
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
ready().catch(fail);
