// The kiosk: bound to its store by its device token; scan (JAN) or search, stock in this
// store (live) and nearby, and "continue my cart" through the device hand-off.
import { client, el, money, report, requestId, text } from "../lib/api.js";
import { deviceState, handOff, signInDevice } from "../lib/device.js";

const $ = (id) => document.getElementById(id);
const state = deviceState("kiosk");
const current = () => state.get() || {};
// The customer's handed-off session when there is one, else the kiosk's own token.
const api = client({ key: null, token: () => current().customerToken || current().token });
const deviceApi = client({ key: null, token: () => current().token });
const fail = (error) => report($("error"), error);
let stopHere = null;
let storeLocation = null;

async function setUp(event) {
  event.preventDefault();
  const device = await signInDevice(deviceApi, $("client-id").value.trim(), $("client-secret").value);
  state.set(device);
  $("client-secret").value = "";
  await ready();
}

async function ready() {
  const device = current();
  const on = state.valid(device.token);
  $("setup").hidden = on;
  for (const id of ["find", "handoff-section", "pickup-section"]) $(id).hidden = !on;
  if (!on) return;
  storeLocation = await deviceApi.get(`/v1/locations/${device.store}`);
  $("store-name").textContent = storeLocation.displayName;
  $("device").textContent = `${device.channel} · ${device.store}`;
  if (device.customerToken) await showCustomerCart();
}

// --- find -----------------------------------------------------------------------------------

async function find(event) {
  event.preventDefault();
  const input = $("code").value.trim();
  if (/^\d{8}$|^\d{13}$/.test(input)) {
    const found = await deviceApi.get(`/v1/barcodes/${input}`);
    return showProduct(found.product.id, found.variant?.sku);
  }
  const found = await deviceApi.post("/v1/products:search", { query: input, pageSize: 10 });
  $("results").replaceChildren(
    ...(found.results || []).map(({ product, fromPrice }) =>
      el("li", {}, el("a", { href: "#", onclick: (e) => { e.preventDefault(); showProduct(product.id).catch(fail); } },
        text(product.titles, product.title, "ja")), " ", money(fromPrice?.amount))),
  );
}

async function showProduct(productId, sku) {
  const near = `${storeLocation.geoPoint.latitude},${storeLocation.geoPoint.longitude}`;
  const view = await deviceApi.get(`/v1/storefront/products/${productId}`, { near });
  $("product").hidden = false;
  $("title").textContent = `${text(view.product.titles, "", "ja")} / ${text(view.product.titles, "", "en")}`;
  const prices = new Map((view.prices || []).map((p) => [p.sku, p]));
  $("sku").replaceChildren(...view.product.variants.map((v) =>
    el("option", { value: v.sku }, `${v.options?.size || ""} ${v.options?.color || ""} (${v.sku})`)));
  if (sku) $("sku").value = sku;
  $("sku").onchange = () => chooseSize(productId, prices).catch(fail);
  await chooseSize(productId, prices);
}

async function chooseSize(productId, prices) {
  const sku = $("sku").value;
  $("price").textContent = money(prices.get(sku)?.amount);
  const near = `${storeLocation.geoPoint.latitude},${storeLocation.geoPoint.longitude}`;
  const view = await deviceApi.get(`/v1/storefront/products/${productId}`, { near, sku });
  $("nearby").replaceChildren(...(view.nearbyStores || [])
    .filter((s) => s.location.id !== current().store)
    .map((s) => el("li", {}, `${s.location.displayName} · ${Number(s.distanceKm).toFixed(1)} km · `,
      el("strong", {}, `${(s.available || []).find((a) => a.sku === sku)?.quantity || 0}`))));
  // This store's stock, live (the stream's first event is the current figure).
  if (stopHere) stopHere();
  stopHere = deviceApi.stream("/v1/stream/availability", { skus: sku, locationId: current().store }, (update) => {
    $("here").textContent = update.availableToPromise || "0";
    $("here").classList.add("changed");
    setTimeout(() => $("here").classList.remove("changed"), 1500);
  }, { onError: fail });
  $("add").hidden = !current().customerToken;
}

// --- continue my cart -----------------------------------------------------------------------

async function startHandoff() {
  $("handoff-code").hidden = false;
  const session = await handOff(current().token, {
    onCode: (started) => {
      drawQr(started.qrPayload).catch(() => $("qr").replaceChildren());
      $("user-code").textContent = started.userCode;
      $("qr-payload").textContent = started.qrPayload;
      $("approve-link").href = `../shop/?code=${encodeURIComponent(started.userCode)}`;
    },
    onState: (value) => { $("handoff-state").textContent = value.replace("DEVICE_SESSION_STATE_", "").toLowerCase(); },
  });
  state.set({ ...current(), ...session });
  $("handoff-code").hidden = true;
  await showCustomerCart();
}

// The QR code of the hand-off payload, drawn by the pinned encoder `make examples` fetches;
// without it the code is shown as text only.
async function drawQr(payload) {
  const { default: qrcode } = await import("../vendor/qrcode.mjs");
  const code = qrcode(0, "M");
  code.addData(payload);
  code.make();
  $("qr").replaceChildren(el("img", { src: code.createDataURL(6, 4), alt: payload, "data-payload": payload }));
}

async function showCustomerCart() {
  const cart = await api.get("/v1/carts:active");
  $("customer-cart").hidden = false;
  $("welcome").textContent = "Welcome back — your cart from the web shop:";
  renderCart(cart.cart || cart);
  $("add").hidden = false;
}

function renderCart(cart) {
  $("cart-lines").replaceChildren(...(cart.lineItems || []).map((line) =>
    el("li", {}, `${line.title} (${line.sku}) × ${line.quantity} — `, money(line.total))));
  $("cart-total").textContent = money(cart.totals?.total);
}

async function addToCart() {
  const cart = await api.get("/v1/carts:active");
  const updated = await api.post(`/v1/carts/${(cart.cart || cart).id}/lineItems`, {
    sku: $("sku").value, quantity: 1, requestId: requestId(),
  });
  renderCart(updated.cart || updated);
}

// --- click & collect pickup -----------------------------------------------------------------

// The order is found on this store's work list (the kiosk sees only its own store's), then
// handed over against the code; the order service checks the code and locks after 5 misses.
async function collect(event) {
  event.preventDefault();
  $("pickup-result").textContent = "";
  let [orderNumber, code] = [$("pickup-order").value.trim(), $("pickup-code").value.trim().toUpperCase()];
  const scanned = orderNumber.match(/^tenpo:pickup:([\w-]+):([\w-]+):([A-Z]+)$/);
  let target = null;
  if (scanned) {
    target = { orderId: scanned[1], id: scanned[2] };
    code = scanned[3];
  } else {
    target = await readyPickup(orderNumber);
    if (!target) throw new Error(`${orderNumber} is not ready for pickup in this store.`);
  }
  const order = await deviceApi.post(
    `/v1/orders/${target.orderId}/fulfillments/${target.id}:confirmPickup`,
    { pickupCode: code, requestId: requestId() },
  );
  const handed = (order.fulfillments || []).find((f) => f.id === target.id) || {};
  $("pickup-result").textContent = `${handed.number || order.orderNumber}: handed over — thank you!`;
  $("pickup-result").dataset.status = handed.status || "";
  $("pickup-order").value = "";
  $("pickup-code").value = "";
}

async function readyPickup(orderNumber) {
  let pageToken = "";
  do {
    const page = await deviceApi.get(`/v1/stores/${current().store}/fulfillments`, { pageSize: 200, pageToken });
    const found = (page.fulfillments || []).find((f) =>
      f.orderNumber === orderNumber && f.status === "FULFILLMENT_STATUS_READY_FOR_PICKUP");
    if (found) return found;
    pageToken = page.nextPageToken || "";
  } while (pageToken);
  return null;
}

function endSession() {
  const { customerToken, customerId, ...device } = current();
  state.set(device);
  $("customer-cart").hidden = true;
  $("add").hidden = true;
}

function on(id, event, handler) {
  $(id).addEventListener(event, (e) => {
    $("error").hidden = true;
    Promise.resolve(handler(e)).catch(fail);
  });
}

on("setup-form", "submit", setUp);
on("scan", "submit", find);
on("handoff", "click", startHandoff);
on("add", "click", addToCart);
on("end-session", "click", endSession);
on("pickup", "submit", collect);
ready().catch(fail);
