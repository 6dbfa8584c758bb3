// The web shop: search with facets, product page with live stock, cart, checkout, sign-in,
// loyalty points, device hand-off approval and "my data". Only the public HTTP API.
import { client, el, money, report, requestId, session, text } from "../lib/api.js";

const $ = (id) => document.getElementById(id);
const TOKYO_SHIBUYA = "35.6595,139.7005"; // the shopper's location for "nearest stores"
const account = session("tenpo.shop.customer"); // { accessToken, customerId }
const guestCart = {
  get: () => JSON.parse(localStorage.getItem("tenpo.shop.cart") || "null"),
  set: (value) => localStorage.setItem("tenpo.shop.cart", JSON.stringify(value)),
  clear: () => localStorage.removeItem("tenpo.shop.cart"),
};
const language = () => $("language").value;
const api = client({ token: () => account.get()?.accessToken, language });
const filters = { brands: new Set(), categoryIds: new Set(), attributes: new Map() };
let stopStock = null;
let stopPoints = null;
let stopOrder = null;
let searches = 0; // only the newest search may render: answers can arrive out of order
const fail = (error) => report($("error"), error);

// --- search -------------------------------------------------------------------------------

async function search() {
  const mine = ++searches;
  const query = $("query").value;
  $("results").dataset.state = "loading";
  const attributeFilters = [...filters.attributes].map(([key, values]) => ({ key, values: [...values] }));
  const found = await api.post("/v1/products:search", {
    query,
    languageCode: language(),
    brands: [...filters.brands],
    categoryIds: [...filters.categoryIds],
    attributeFilters: attributeFilters.filter((f) => f.values.length),
    pageSize: 20,
  });
  if (mine !== searches) return;
  $("total").textContent = `(${found.totalSize || 0})`;
  $("results").replaceChildren(
    ...(found.results || []).map(({ product, fromPrice }) =>
      el("li", { "data-product-id": product.id },
        el("a", { href: `#product=${product.id}` }, text(product.titles, product.title, language())),
        " ", el("span", { class: "muted" }, product.brand || ""),
        " ", el("strong", {}, fromPrice ? money(fromPrice.amount) : ""))),
  );
  renderFacets(found.facets || []);
  Object.assign($("results").dataset, { state: "ready", query });
}

function facetSet(field) {
  if (field === "brand") return filters.brands;
  if (field === "category") return filters.categoryIds;
  if (!filters.attributes.has(field)) filters.attributes.set(field, new Set());
  return filters.attributes.get(field);
}

function renderFacets(facets) {
  $("facets").replaceChildren(
    ...facets.map((facet) =>
      el("div", { class: "facet" }, el("strong", {}, `${facet.field}: `),
        ...facet.values.map((value) => {
          const chosen = facetSet(facet.field);
          const box = el("input", { type: "checkbox", checked: chosen.has(value.value) });
          box.addEventListener("change", () => {
            if (box.checked) chosen.add(value.value);
            else chosen.delete(value.value);
            search().catch(fail);
          });
          return el("label", {}, box, ` ${value.label || value.value} (${value.count})`);
        }))),
  );
}

// --- product page ---------------------------------------------------------------------------

async function showProduct(productId) {
  const view = await api.get(`/v1/storefront/products/${productId}`, { near: TOKYO_SHIBUYA });
  const product = view.product;
  $("product-section").hidden = false;
  $("product-title").textContent = text(product.titles, product.title, language());
  $("product-description").textContent = text(product.descriptions, product.description, language());
  const prices = new Map((view.prices || []).map((p) => [p.sku, p]));
  $("sku").replaceChildren(
    ...(product.variants || []).map((v) =>
      el("option", { value: v.sku }, `${Object.values(v.options || {}).join(" / ")} (${v.sku})`)),
  );
  const onSize = () => {
    $("price").textContent = money(prices.get($("sku").value)?.amount);
    watchStock(productId, $("sku").value).catch(fail);
  };
  $("sku").onchange = onSize;
  onSize();
}

async function renderStores(productId, sku) {
  const view = await api.get(`/v1/storefront/products/${productId}`, { near: TOKYO_SHIBUYA, sku });
  const stores = (view.nearbyStores || []).filter((s) => (s.available || []).some((a) => a.sku === sku));
  $("stores").replaceChildren(
    ...stores.map((s) => {
      const line = s.available.find((a) => a.sku === sku);
      return el("li", { "data-store": s.location.id },
        `${s.location.displayName} · ${Number(s.distanceKm || 0).toFixed(1)} km · `,
        el("strong", {}, `${line.quantity} in stock`));
    }),
  );
  if (!stores.length) $("stores").replaceChildren(el("li", { class: "muted" }, "No store nearby has this size."));
  fillStores(stores.map((s) => s.location));
}

// Live: the network-wide stock of the chosen size over SSE; each change refreshes the stores.
async function watchStock(productId, sku) {
  if (stopStock) stopStock();
  $("network-stock").textContent = "—";
  delete $("network-stock").dataset.sku;
  await renderStores(productId, sku);
  stopStock = api.stream("/v1/stream/availability", { skus: sku }, (update) => {
    const node = $("network-stock");
    node.textContent = update.availableToPromise || "0";
    node.dataset.kind = update.kind;
    node.dataset.sku = update.sku;
    node.classList.add("changed");
    setTimeout(() => node.classList.remove("changed"), 1500);
    if (update.kind !== "AVAILABILITY_UPDATE_KIND_SNAPSHOT") renderStores(productId, sku).catch(fail);
  }, { onError: fail });
}

// --- cart -----------------------------------------------------------------------------------

async function currentCart({ create = false } = {}) {
  if (account.get()) return unwrap(await api.get("/v1/carts:active"));
  const guest = guestCart.get();
  if (guest) {
    try {
      const cart = unwrap(await api.get(`/v1/carts/${guest.id}`, { cartToken: guest.token }));
      if (cart.status === "CART_STATUS_ACTIVE") return cart;
    } catch (error) {
      if (error.status !== 404 && error.status !== 403) throw error;
    }
    guestCart.clear(); // expired, merged or gone: start a new one when needed
  }
  if (!create) return null;
  const created = await api.post("/v1/carts", { requestId: requestId() });
  guestCart.set({ id: created.cart.id, token: created.cartToken });
  return created.cart;
}
const unwrap = (response) => response.cart || response;
const cartToken = () => (account.get() ? undefined : guestCart.get()?.token);

async function addToCart() {
  const cart = await currentCart({ create: true });
  const updated = await api.post(`/v1/carts/${cart.id}/lineItems`, {
    sku: $("sku").value, quantity: 1, cartToken: cartToken(), requestId: requestId(),
  });
  renderCart(unwrap(updated));
}

function renderCart(cart) {
  const lines = cart?.lineItems || [];
  $("cart-lines").replaceChildren(
    ...lines.map((line) => el("li", {}, `${line.title} (${line.sku}) × ${line.quantity} — `, money(line.total))),
  );
  $("cart-total").textContent = cart ? money(cart.totals?.total) : "—";
  $("cart-total").dataset.lines = String(lines.reduce((n, l) => n + l.quantity, 0));
}

function fillStores(locations) {
  const known = new Set([...$("store").options].map((o) => o.value));
  for (const location of locations) {
    if (!known.has(location.id)) $("store").append(el("option", { value: location.id }, location.displayName));
  }
}

async function checkout(event) {
  event.preventDefault();
  if (!account.get()) throw new Error("Sign in to check out (guest carts are merged into yours).");
  let cart = await currentCart();
  const method = $("fulfillment").value;
  const fulfillment = { method };
  if (method !== "FULFILLMENT_METHOD_DELIVERY") fulfillment.storeId = $("store").value;
  if (method !== "FULFILLMENT_METHOD_PICKUP") {
    const { addresses = [] } = await api.get("/v1/customers/me/addresses");
    if (!addresses.length) throw new Error("Add an address to your profile first.");
    fulfillment.address = (addresses.find((a) => a.defaultShipping) || addresses[0]).postalAddress;
  }
  cart = unwrap(await api.patch(`/v1/carts/${cart.id}`, {
    cart: { fulfillment }, updateMask: "fulfillment", requestId: requestId(),
  }));
  const payment = $("payment").value === "PAYMENT_METHOD_CARD"
    ? { method: "PAYMENT_METHOD_CARD", cardToken: "4242424242424242" }
    : { method: "PAYMENT_METHOD_PAY_AT_STORE" };
  const placed = await api.post("/v1/orders", {
    cartId: cart.id, cartEtag: cart.etag, payment, requestId: requestId(),
  });
  await followOrder(placed.order || placed);
  renderCart(await currentCart());
}

// The order page, live: the order stream (SSE) sends the order at once and again at every
// change of it or its fulfilments — ready for pickup with the code, picked up, shipped.
function followOrder(order) {
  if (stopOrder) stopOrder();
  renderOrder(order);
  stopOrder = api.stream("/v1/stream/order", { orderId: order.id }, (update) => {
    const before = $("order").dataset.status;
    renderOrder(update.order || update);
    if (before !== $("order").dataset.status) listOrders().catch(fail);
  }, { onError: fail });
  return listOrders();
}

const FULFILMENT = {
  FULFILLMENT_TYPE_CLICK_AND_COLLECT: "click & collect",
  FULFILLMENT_TYPE_DELIVERY: "delivery",
  FULFILLMENT_TYPE_SAME_DAY: "same day",
  FULFILLMENT_TYPE_CARRY_OUT: "carried out",
};

function renderOrder(order) {
  if (!order?.id || !order.status) return; // not an order (a stream's closing message)
  $("order-section").hidden = false;
  $("order").textContent = `Order ${order.orderNumber}: ${order.status.replace("ORDER_STATUS_", "")}`;
  $("order").dataset.status = order.status;
  $("order").dataset.orderId = order.id;
  $("order-total").textContent = `${money(order.totals?.total)} · ${(order.paymentState || "").replace("PAYMENT_STATE_", "").toLowerCase()}`;
  $("order-fulfilments").replaceChildren(...(order.fulfillments || []).map((f) =>
    el("li", { "data-fulfilment": f.id, "data-status": f.status },
      `${f.number} · ${FULFILMENT[f.type] || f.type} · ${(f.storeId || f.locationId || "")} · `,
      el("strong", {}, (f.status || "").replace("FULFILLMENT_STATUS_", "").replaceAll("_", " ").toLowerCase()),
      f.shipment?.trackingNumber ? ` · ${f.shipment.carrier} ${f.shipment.trackingNumber}` : "")));
  // The pickup code is shown to her only (the order service gives it to no one else): at the
  // store she types it on the kiosk, or shows its QR code to the POS.
  const ready = (order.fulfillments || []).find((f) => f.status === "FULFILLMENT_STATUS_READY_FOR_PICKUP" && f.pickup?.pickupCode);
  $("pickup").hidden = !ready;
  if (ready) {
    $("pickup-code").textContent = ready.pickup.pickupCode;
    $("pickup-hold").textContent = ready.pickup.holdUntil ? `until ${ready.pickup.holdUntil.slice(0, 10)}` : "";
    drawQr(ready.pickup.qrPayload).catch(() => $("pickup-qr").replaceChildren(ready.pickup.qrPayload));
  }
  const returnable = (order.fulfillments || []).some((f) =>
    ["FULFILLMENT_STATUS_PICKED_UP", "FULFILLMENT_STATUS_DELIVERED", "FULFILLMENT_STATUS_HANDED_OVER"].includes(f.status));
  $("order-return").hidden = !returnable;
}

// The QR code of the pickup payload, drawn by the pinned encoder `make examples` fetches.
async function drawQr(payload) {
  const { default: qrcode } = await import("../vendor/qrcode.mjs");
  const code = qrcode(0, "M");
  code.addData(payload);
  code.make();
  $("pickup-qr").replaceChildren(el("img", { src: code.createDataURL(4, 4), alt: payload, "data-payload": payload }));
}

// --- account --------------------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const signedIn = await api.post("/v1/identity:signIn", { email: $("email").value, password: $("password").value });
  account.set({ accessToken: signedIn.tokens.accessToken, customerId: signedIn.tokens.subject });
  const guest = guestCart.get();
  if (guest) {
    await api.post("/v1/carts:merge", { guestCartId: guest.id, guestCartToken: guest.token, requestId: requestId() });
    guestCart.clear();
  }
  await showAccount();
}

// Sign-up with the channel's key, then signed in at once (the welcome mail goes out).
async function register(event) {
  event.preventDefault();
  const email = $("register-email").value;
  const password = $("register-password").value;
  await api.post("/v1/identity:register", {
    email, password, name: { familyName: $("register-family").value, givenName: $("register-given").value },
  });
  $("email").value = email;
  $("password").value = password;
  $("register-password").value = "";
  $("register-box").open = false;
  await signIn(event);
}

async function showAccount() {
  const signedIn = Boolean(account.get());
  $("sign-in").hidden = signedIn;
  $("register-box").hidden = signedIn;
  $("signed-in").hidden = !signedIn;
  if (stopPoints) stopPoints();
  if (!signedIn) {
    $("who").textContent = "guest";
    return renderCart(await currentCart());
  }
  const me = await api.get("/v1/customers/me");
  $("who").textContent = `${me.name?.familyName || ""} ${me.name?.givenName || ""}`.trim() || me.email;
  // The balance, live: the stream's first event is the current balance.
  stopPoints = api.stream("/v1/stream/loyalty-balance", { customerId: "me" }, (balance) => {
    $("points").textContent = `${balance.available || 0} pt`;
  }, { onError: fail });
  renderCart(await currentCart());
  await listOrders();
}

async function listOrders() {
  // A customer sees her own orders (no customerId needed).
  const { orders = [] } = await api.get("/v1/orders", { pageSize: 10 });
  $("orders").replaceChildren(
    ...orders.map((o) => el("li", { "data-order": o.id },
      el("a", { href: "#", onclick: (e) => { e.preventDefault(); followOrder(o).catch(fail); } }, o.orderNumber),
      ` · ${o.status.replace("ORDER_STATUS_", "")} · `,
      money(o.totals?.total), ` · ${o.fulfillment?.method?.replace("FULFILLMENT_METHOD_", "") || ""}`)),
  );
}

async function approve(event) {
  event.preventDefault();
  const approved = await api.post("/v1/deviceSessions:approve", { userCode: $("user-code").value.trim() });
  $("approved").textContent = `Approved: ${approved.deviceName} (${approved.storeId})`;
}

async function exportData() {
  const exported = await api.get("/v1/customers/me:export");
  $("export-out").hidden = false;
  $("export-out").textContent = JSON.stringify(JSON.parse(exported.json), null, 2);
}

async function erase() {
  if (!confirm("Erase your account and personal data? This cannot be undone.")) return;
  await api.post("/v1/customers/me:erase", {});
  account.clear();
  await showAccount();
}

// --- wiring ---------------------------------------------------------------------------------

function on(id, event, handler) {
  $(id).addEventListener(event, (e) => {
    if (event === "submit") e.preventDefault();
    $("error").hidden = true;
    Promise.resolve(handler(e)).catch(fail);
  });
}

function route() {
  const match = location.hash.match(/^#product=([\w-]+)$/);
  if (match) showProduct(match[1]).catch(fail);
}

$("language").value = localStorage.getItem("tenpo.shop.language") || "ja";
on("language", "change", () => {
  localStorage.setItem("tenpo.shop.language", language());
  return search();
});
on("search", "submit", search);
on("add", "click", addToCart);
on("checkout", "submit", checkout);
on("sign-in", "submit", signIn);
on("register", "submit", register);
on("sign-out", "click", async () => {
  if (stopOrder) stopOrder();
  $("order-section").hidden = true;
  account.clear();
  await showAccount();
});
on("approve", "submit", approve);
on("export", "click", exportData);
on("erase", "click", erase);
window.addEventListener("hashchange", route);
const code = new URLSearchParams(location.search).get("code"); // from the kiosk's QR code
if (code) $("user-code").value = code;
route();
showAccount().catch(fail);
