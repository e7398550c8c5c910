// Small DOM helpers shared by the panels.

import { Cancelled, describe } from "./api.js";
import { friendly } from "./messages.js";

export const $ = (id) => document.getElementById(id);

export function show(el, visible = true) {
  el.hidden = !visible;
}

function node(tag, className, text) {
  const el = document.createElement(tag);
  el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

/**
 * Show an error in ``el``; hide on null. A common error code gets a sentence for people, with the
 * API's own words (its message, then its code) under "Details"; any other is shown as the API
 * words it.
 */
export function showError(el, err) {
  if (!err || err instanceof Cancelled) {
    el.hidden = true;
    el.textContent = "";
    return;
  }
  const { code, message } = describe(err);
  const api = [node("span", "error-message", message), " ", node("code", "error-code", code)];
  const plain = friendly(err);
  if (plain) {
    const details = node("details", "error-details");
    details.append(node("summary", "", "Details"), ...api);
    el.replaceChildren(node("p", "error-friendly", plain), details);
  } else {
    el.replaceChildren(...api);
  }
  el.hidden = false;
}

/** Tell screen readers, through the live region ``el``, what just happened (a result shown). */
export function announce(el, text) {
  el.textContent = text;
}

const urls = new Map();

/** Point ``img`` (or a link) at ``blob``, revoking the object URL it had from an earlier call. */
export function setBlob(el, blob, attr = "src") {
  const old = urls.get(el);
  if (old) URL.revokeObjectURL(old);
  const url = URL.createObjectURL(blob);
  urls.set(el, url);
  el.setAttribute(attr, url);
  return url;
}

/** Fetch one of the bundled example images (same origin, no token needed). */
export async function exampleBlob(src) {
  const response = await fetch(src);
  if (!response.ok) throw new Error(`cannot load ${src}: HTTP ${response.status}`);
  return response.blob();
}

export function ms(t) {
  return t >= 1000 ? `${(t / 1000).toFixed(2)} s` : `${Math.round(t)} ms`;
}

export function bytes(n) {
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(0)} KiB`;
  return `${n} B`;
}

/** Models that support ``op``, from GET /v1/models. */
export function supporting(models, op) {
  return models.filter((m) => m.operations.includes(op));
}

// The options of a model <select>; the first model that `preferred(model)` holds for is chosen,
// else the first model.
export function fillSelect(select, models, preferred) {
  select.replaceChildren(
    ...models.map((m) => {
      const option = document.createElement("option");
      option.value = m.name;
      option.textContent = `${m.name} (${m.kind})`;
      return option;
    }),
  );
  const pick = models.find(preferred) || models[0];
  if (pick) select.value = pick.name;
}
