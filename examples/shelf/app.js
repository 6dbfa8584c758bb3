// The smart shelf: a lifted item recognised by its tag (RFID or JAN), the pick-up recorded
// (anonymous: a shelf knows no one; a mirror's hand-off later makes it hers when she tries
// on that very pair), and the item's sizes in stock in this store.
import { client, el, money, report, requestId, text } from "../lib/api.js";
import { deviceState, rfidTag, signInDevice } from "../lib/device.js";

const $ = (id) => document.getElementById(id);
const state = deviceState("shelf");
const current = () => state.get() || {};
const api = client({ key: null, token: () => current().token });
const fail = (error) => report($("error"), error);

async function setUp(event) {
  event.preventDefault();
  state.set(await signInDevice(api, $("client-id").value.trim(), $("client-secret").value));
  $("client-secret").value = "";
  await ready();
}

async function ready() {
  const on = state.valid(current().token);
  $("setup").hidden = on;
  $("lifted").hidden = !on;
  if (!on) return;
  const location = await api.get(`/v1/locations/${current().store}`);
  $("store-name").textContent = location.displayName;
  $("device").textContent = `${current().channel} · ${current().store}`;
}

async function lifted(event) {
  event.preventDefault();
  const tag = $("tag").value.trim();
  const { product, variant } = await api.get(`/v1/barcodes/${encodeURIComponent(tag)}`);
  $("title").textContent = `${text(product.titles, "", "ja")} / ${text(product.titles, "", "en")}`;
  $("size").textContent = `size ${variant.options?.size || "—"} · ${variant.sku}`;
  // Only an RFID tag names the physical item; a JAN names every pair of the size.
  const interaction = { kind: "INTERACTION_KIND_SHELF_SCAN", sku: variant.sku };
  if (rfidTag(tag)) interaction.itemTag = rfidTag(tag);
  const recorded = await api.post(`/v1/interactions?requestId=${requestId()}`, interaction);
  $("pick-up").textContent = `Pick-up recorded: ${(recorded.interaction || recorded).sku}`;
  const view = await api.get(`/v1/storefront/products/${product.id}`);
  $("price").textContent = money((view.prices || []).find((p) => p.sku === variant.sku)?.amount);
  const skus = product.variants.map((v) => v.sku);
  const { availabilities = [] } = await api.get("/v1/availability", { skus, locationIds: current().store });
  const here = new Map(availabilities.map((a) => [a.sku, Number(a.locations?.[0]?.availableToPromise || 0)]));
  $("sizes").replaceChildren(...product.variants.map((v) =>
    el("li", { "data-sku": v.sku }, `${v.options?.size || v.sku}: `,
      here.get(v.sku) > 0 ? el("strong", {}, `${here.get(v.sku)} here`) : el("span", { class: "muted" }, "not here"))));
}

function on(id, event, handler) {
  $(id).addEventListener(event, (e) => {
    $("error").hidden = true;
    Promise.resolve(handler(e)).catch(fail);
  });
}

on("setup-form", "submit", setUp);
on("tag-form", "submit", lifted);
ready().catch(fail);
