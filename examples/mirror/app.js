// The smart mirror: an item recognised by its tag (RFID or JAN), the try-on recorded,
// suggestions in sizes this store has, and buy on the spot with same-day delivery home.
import { client, el, money, report, requestId, text } from "../lib/api.js";
import { deviceState, handOff, rfidTag, signInDevice } from "../lib/device.js";

const $ = (id) => document.getElementById(id);
const state = deviceState("mirror");
const current = () => state.get() || {};
const deviceApi = client({ key: null, token: () => current().token });
const customerApi = client({ key: null, token: () => current().customerToken });
// Try-ons are the customer's once she handed her session over, anonymous before.
const recorder = () => (current().customerToken ? customerApi : deviceApi);
const fail = (error) => report($("error"), error);
let tried = null; // { product, variant }

async function setUp(event) {
  event.preventDefault();
  state.set(await signInDevice(deviceApi, $("client-id").value.trim(), $("client-secret").value));
  $("client-secret").value = "";
  await ready();
}

async function ready() {
  const on = state.valid(current().token);
  $("setup").hidden = on;
  $("recognise").hidden = !on;
  $("buy-section").hidden = !on;
  if (!on) return;
  const location = await deviceApi.get(`/v1/locations/${current().store}`);
  $("store-name").textContent = location.displayName;
  $("device").textContent = `${current().channel} · ${current().store}`;
  $("buy").hidden = !current().customerToken;
}

// What this store can sell now, per SKU.
async function stockHere(skus) {
  if (!skus.length) return new Map();
  const { availabilities = [] } = await deviceApi.get("/v1/availability", { skus, locationIds: current().store });
  return new Map(availabilities.map((a) => [a.sku, Number(a.locations?.[0]?.availableToPromise || 0)]));
}

async function recognise(event) {
  event.preventDefault();
  const tag = $("tag").value.trim();
  const found = await deviceApi.get(`/v1/barcodes/${encodeURIComponent(tag)}`);
  tried = found;
  const { product, variant } = found;
  // An RFID tag names this very pair: the hand-off then makes the shelf's pick-up of it hers.
  const itemTag = rfidTag(tag);
  $("title").textContent = `${text(product.titles, "", "ja")} / ${text(product.titles, "", "en")}`;
  $("size").textContent = `size ${variant.options?.size || "—"} · ${variant.sku}`;
  const recorded = await recorder().post(`/v1/interactions?requestId=${requestId()}`, {
    kind: "INTERACTION_KIND_MIRROR_TRY_ON", sku: variant.sku, size: variant.options?.size || "",
    ...(itemTag ? { itemTag } : {}),
  });
  const interaction = recorded.interaction || recorded;
  $("try-on").textContent = `Try-on recorded${interaction.customerId ? " for you" : ""}: ${interaction.summary || variant.sku}`;
  const view = await deviceApi.get(`/v1/storefront/products/${product.id}`);
  const price = (view.prices || []).find((p) => p.sku === variant.sku);
  $("price").textContent = money(price?.amount);
  const here = await stockHere(product.variants.map((v) => v.sku));
  $("sizes").replaceChildren(...product.variants.map((v) =>
    el("li", { "data-sku": v.sku }, `${v.options?.size || v.sku}: `,
      here.get(v.sku) > 0 ? el("strong", {}, `${here.get(v.sku)} here`) : el("span", { class: "muted" }, "not here"))));
  await suggest(view.related || []);
}

async function suggest(related) {
  const products = related.map((r) => r.product).slice(0, 4);
  const here = await stockHere(products.flatMap((p) => p.variants.map((v) => v.sku)));
  $("suggestions").replaceChildren(...products.map((p) => {
    const sizes = p.variants.filter((v) => here.get(v.sku) > 0).map((v) => v.options?.size || v.sku);
    return el("li", {}, `${text(p.titles, p.title, "ja")} — `,
      sizes.length ? `sizes here: ${sizes.join(", ")}` : el("span", { class: "muted" }, "none here"));
  }));
}

async function signInWithPhone() {
  const session = await handOff(current().token, {
    onCode: (started) => { $("user-code").textContent = started.userCode; },
  });
  state.set({ ...current(), ...session });
  $("user-code").textContent = "";
  await ready();
}

// Carry-out here, or same-day delivery home from this store: the cart, the fulfilment, then
// the order, all on the customer's handed-off session.
async function buyNow(method) {
  if (!tried) throw new Error("Recognise an item first.");
  let cart = await customerApi.get("/v1/carts:active");
  cart = cart.cart || cart;
  cart = await customerApi.post(`/v1/carts/${cart.id}/lineItems`, { sku: tried.variant.sku, quantity: 1, requestId: requestId() });
  cart = cart.cart || cart;
  const fulfillment = { method, storeId: current().store };
  if (method === "FULFILLMENT_METHOD_SAME_DAY") {
    const { addresses = [] } = await customerApi.get("/v1/customers/me/addresses");
    fulfillment.address = (addresses.find((a) => a.defaultShipping) || addresses[0])?.postalAddress;
    if (!fulfillment.address) throw new Error("No home address in your profile.");
  }
  cart = await customerApi.patch(`/v1/carts/${cart.id}`, { cart: { fulfillment }, updateMask: "fulfillment", requestId: requestId() });
  cart = cart.cart || cart;
  const placed = await customerApi.post("/v1/orders", {
    cartId: cart.id, cartEtag: cart.etag, requestId: requestId(),
    payment: { method: "PAYMENT_METHOD_CARD", cardToken: "4242424242424242" },
  });
  const order = placed.order || placed;
  const how = method === "FULFILLMENT_METHOD_SAME_DAY" ? "same-day delivery from this store" : "take it with you";
  $("order").textContent = `Order ${order.orderNumber}: ${order.status.replace("ORDER_STATUS_", "")} — ${how}`;
  $("order").dataset.status = order.status;
}

function on(id, event, handler) {
  $(id).addEventListener(event, (e) => {
    $("error").hidden = true;
    Promise.resolve(handler(e)).catch(fail);
  });
}

on("setup-form", "submit", setUp);
on("tag-form", "submit", recognise);
on("handoff", "click", signInWithPhone);
on("carry-out", "click", () => buyNow("FULFILLMENT_METHOD_CARRY_OUT"));
on("same-day", "click", () => buyNow("FULFILLMENT_METHOD_SAME_DAY"));
ready().catch(fail);
