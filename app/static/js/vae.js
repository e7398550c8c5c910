// The VAE panel: a sample grid (seed, temperature), a digit's latent μ and σ, and the decoded path
// between two digits.

import { call, callJson } from "./api.js";
import { latentChart } from "./chart.js";
import { decode } from "./imaging.js";
import { $, announce, exampleBlob, fillSelect, ms, setBlob, show, showError } from "./ui.js";

const OPS = ["sample", "encode", "interpolate"];
const BUTTONS = { sample: "sample-run", encode: "encode-run", interpolate: "interp-run" };

let models = [];
const inputs = {
  encode: { src: "/static/examples/digit-3.png", blob: null },
  a: { src: "/static/examples/digit-2.png", blob: null },
  b: { src: "/static/examples/digit-7.png", blob: null },
};
let path = []; // Blobs of the decoded interpolation path
let modelChanges = 0; // an answer that comes after the model changed is not shown
const running = new Set(); // the operations on their way
const again = new Set(); // the operations asked for again while on their way

function model() {
  return models.find((m) => m.name === $("vae-model").value);
}

function url(op, params) {
  const query = params && params.size ? `?${params}` : "";
  return `/v1/models/${encodeURIComponent(model().name)}/${op}${query}`;
}

/** Hide what an earlier model or request left on screen. */
function clearResults(...ids) {
  for (const id of ids) show($(id), false);
}

function refreshModel() {
  clearResults("sample-figure", "sample-download", "latent-chart", "interp-view");
  $("encode-meta").textContent = "";
  for (const id of ["sample-error", "encode-error", "interp-error"]) showError($(id), null);
  modelChanges += 1;
  refreshButtons();
  const m = model();
  const missing = m ? OPS.filter((op) => !m.operations.includes(op)) : OPS;
  $("vae-model-hint").textContent = !m
    ? "No model on this service samples, encodes or interpolates."
    : missing.length
      ? `${m.name} does not ${missing.join(" or ")}.`
      : `${m.name}: latent size ${m.latent_dim}.`;
}

/** Each operation's button: enabled when the model has it and it is not on its way. */
function refreshButtons() {
  const m = model();
  for (const op of OPS) $(BUTTONS[op]).disabled = !m || !m.operations.includes(op) || running.has(op);
}

/**
 * Run ``op`` with its button disabled and marked busy; the focus it lost comes back to it. Asked
 * for again while on its way, it runs once more when done, with the inputs chosen meanwhile.
 * ``fn(current)``: ``current()`` is false once the model changed, and its answer is not shown.
 */
async function perform(op, fn) {
  if (running.has(op)) {
    again.add(op);
    return;
  }
  const m = model();
  if (!m || !m.operations.includes(op)) return;
  const button = $(BUTTONS[op]);
  const mine = modelChanges;
  running.add(op);
  button.setAttribute("aria-busy", "true");
  refreshButtons();
  try {
    await fn(() => mine === modelChanges);
  } finally {
    running.delete(op);
    button.removeAttribute("aria-busy");
    refreshButtons();
    if (document.activeElement === document.body && !button.disabled) button.focus();
  }
  if (again.delete(op)) await perform(op, fn);
}

async function blobOf(key) {
  const input = inputs[key];
  if (!input.blob) input.blob = await exampleBlob(input.src);
  return input.blob;
}

/** resize=true when an image's size differs from the model's fixed one, or this browser cannot
 * tell it. */
async function resizeParams(...blobs) {
  const m = model();
  const params = new URLSearchParams();
  if (m.any_size) return params;
  for (const blob of blobs) {
    try {
      const { width, height } = await decode(blob);
      if (width !== m.input_shape[2] || height !== m.input_shape[1]) params.set("resize", "true");
    } catch {
      params.set("resize", "true"); // the browser cannot read it (a TIFF): its size is unknown
    }
  }
  return params;
}

function b64Blob(b64) {
  const raw = atob(b64);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return new Blob([out], { type: "image/png" });
}

async function runSample(current) {
  showError($("sample-error"), null);
  const seedText = $("sample-seed").value.trim();
  const body = { n: Number($("sample-n").value), temperature: Number($("sample-temp").value) };
  // a seed goes as its digits: a JavaScript number loses the last ones of a large seed (the
  // service draws 63-bit ones); a negative one too, for the service to say it is below 0;
  // anything else goes as it is, for the service to refuse
  const seedJson = /^-?\d+$/.test(seedText) ? seedText : JSON.stringify(seedText === "" ? null : seedText);
  const started = performance.now();
  try {
    const response = await call(url("sample"), {
      method: "POST",
      body: `${JSON.stringify(body).slice(0, -1)},"seed":${seedJson}}`,
      headers: { "Content-Type": "application/json", Accept: "image/png" },
    });
    const blob = await response.blob();
    if (!current()) return;
    const took = performance.now() - started;
    const seed = response.headers.get("X-Seed");
    setBlob($("sample-grid"), blob);
    setBlob($("sample-download"), blob, "href");
    $("sample-download").download = `samples-seed${seed}.png`;
    $("sample-meta").textContent =
      `${body.n} samples · seed ${seed} · temperature ${body.temperature.toFixed(2)} · ${ms(took)}`;
    show($("sample-figure"), true);
    show($("sample-download"), true);
    announce($("vae-status"), `Drew ${body.n} samples with seed ${seed}.`);
  } catch (err) {
    if (!current()) return;
    clearResults("sample-figure", "sample-download");
    showError($("sample-error"), err);
  }
}

async function runEncode(current) {
  showError($("encode-error"), null);
  const input = inputs.encode; // a digit chosen meanwhile is encoded next: this answer is not shown
  const shown = () => current() && inputs.encode === input;
  const started = performance.now();
  try {
    const blob = await blobOf("encode");
    const form = new FormData();
    form.append("image", blob, "digit.png");
    const answer = await callJson(url("encode", await resizeParams(blob)), { method: "POST", body: form });
    if (!shown()) return;
    const took = performance.now() - started;
    const { mu, sigma } = answer.results[0];
    if (!sigma) {
      show($("latent-chart"), false);
      $("encode-meta").textContent = "This model is not a VAE: it gives one code z, without σ.";
      announce($("vae-status"), `Encoded the digit. ${$("encode-meta").textContent}`);
      return;
    }
    latentChart($("latent-chart"), mu, sigma);
    show($("latent-chart"), true);
    const used = sigma.filter((s) => s < 0.5).length;
    $("encode-meta").textContent =
      `${mu.length} dimensions · ${used} with σ < 0.5 carry this digit (filled bars) · ${ms(took)}`;
    announce($("vae-status"), `Encoded the digit: ${used} of its ${mu.length} latent dimensions ` +
      "have σ under 0.5; the values are in a table under the chart.");
  } catch (err) {
    if (!shown()) return;
    clearResults("latent-chart");
    $("encode-meta").textContent = "";
    showError($("encode-error"), err);
  }
}

function showStep(i) {
  if (!path.length) return;
  setBlob($("interp-current"), path[i]);
  $("interp-current").alt = `Decoded point ${i + 1} of ${path.length} on the path`;
  for (const [j, b] of [...$("interp-strip").children].entries()) b.classList.toggle("current", j === i);
}

async function runInterpolate(current) {
  showError($("interp-error"), null);
  const ends = [inputs.a, inputs.b]; // an end chosen meanwhile: this path is not shown
  const shown = () => current() && inputs.a === ends[0] && inputs.b === ends[1];
  try {
    const a = await blobOf("a");
    const b = await blobOf("b");
    const form = new FormData();
    form.append("image", a, "start.png");
    form.append("image", b, "end.png");
    const params = await resizeParams(a, b);
    params.set("steps", $("interp-steps").value);
    const answer = await callJson(url("interpolate", params), { method: "POST", body: form });
    if (!shown()) return;
    path = answer.images.map(b64Blob);
    const strip = $("interp-strip");
    strip.replaceChildren(
      ...path.map((blob, i) => {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "step";
        button.setAttribute("aria-label", `Show step ${i + 1}`);
        const img = document.createElement("img");
        img.className = "pixelated";
        img.alt = "";
        setBlob(img, blob);
        button.append(img);
        button.addEventListener("click", () => {
          $("interp-slider").value = String(i);
          showStep(i);
        });
        return button;
      }),
    );
    const slider = $("interp-slider");
    slider.max = String(path.length - 1);
    slider.value = "0";
    showStep(0);
    show($("interp-view"), true);
    announce($("vae-status"), `Decoded the path between the two digits in ${path.length} steps.`);
  } catch (err) {
    if (!shown()) return;
    clearResults("interp-view");
    showError($("interp-error"), err);
  }
}

// in a thumbnail's place when the browser cannot show the file (a TIFF): the service may read it
const UNSHOWN = "data:image/svg+xml," + encodeURIComponent(
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 28 28"><rect width="28" height="28" fill="#000"/>' +
  '<text x="14" y="19" fill="#9ca3af" font-family="sans-serif" font-size="14" text-anchor="middle">?</text></svg>');

/** The file input ``fileInput`` chooses the image of ``key``, shown in the thumbnail ``thumb``
 * with its name in the thumbnail's text; then ``chosen()``. */
function wirePicker(key, fileInput, thumb, chosen) {
  const img = $(thumb);
  const what = img.alt; // "Start digit", ...
  $(fileInput).addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (!file) return;
    inputs[key] = { src: null, blob: file };
    img.alt = img.title = `${what}: ${file.name}`;
    setBlob(img, file);
    e.target.value = "";
    chosen();
  });
  img.addEventListener("error", () => {
    if (img.src === UNSHOWN) return;
    img.alt = img.title += " (this browser cannot show it; the service reads PNG, JPEG, WebP, BMP and TIFF)";
    img.src = UNSHOWN;
  });
}

export function initVae(allModels) {
  models = allModels.filter((m) => OPS.some((op) => m.operations.includes(op)));
  fillSelect($("vae-model"), models, (m) => m.operations.includes("sample")); // a VAE first
  refreshModel();
  $("vae-model").addEventListener("change", refreshModel);
  $("sample-temp").addEventListener("input", (e) => {
    $("sample-temp-out").textContent = Number(e.target.value).toFixed(2);
  });
  $("sample-dice").addEventListener("click", () => {
    $("sample-seed").value = String(Math.floor(Math.random() * 1e9));
    perform("sample", runSample);
  });
  $("interp-steps").addEventListener("input", (e) => ($("interp-steps-out").textContent = e.target.value));
  $("interp-slider").addEventListener("input", (e) => showStep(Number(e.target.value)));
  // a digit chosen is encoded at once, as an example digit is; a new end of the path hides the
  // path between the old ones
  wirePicker("encode", "encode-file", "encode-thumb", () => perform("encode", runEncode));
  const newEnd = () => {
    clearResults("interp-view");
    showError($("interp-error"), null);
  };
  wirePicker("a", "interp-file-a", "interp-thumb-a", newEnd);
  wirePicker("b", "interp-file-b", "interp-thumb-b", newEnd);
  for (const button of document.querySelectorAll("#encode-card .mini")) {
    button.addEventListener("click", () => {
      inputs.encode = { src: button.dataset.src, blob: null };
      $("encode-thumb").src = button.dataset.src;
      $("encode-thumb").alt = `Digit to encode: the example ${button.textContent}`;
      perform("encode", runEncode);
    });
  }
  $("sample-run").addEventListener("click", () => perform("sample", runSample));
  $("encode-run").addEventListener("click", () => perform("encode", runEncode));
  $("interp-run").addEventListener("click", () => perform("interpolate", runInterpolate));
}
