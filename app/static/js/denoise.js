// The Denoise panel: choose or drop an image, optionally noise it first, send it to a model's
// /denoise, and compare the answer with the input.

import { Cancelled, upload } from "./api.js";
import { refusal } from "./fit.js";
import { addNoise, decode, encodePng, psnr } from "./imaging.js";
import { $, announce, bytes, exampleBlob, fillSelect, ms, setBlob, show, showError, supporting } from "./ui.js";

const NOISE_SEED = 1; // the same noise for the same image and σ, run after run

let models = [];
let limits = null; // the service's, from GET /v1/models
let source = null; // {blob, name, image: decoded pixels or null}
let controller = null; // the run on its way, if any
let choices = 0; // images chosen so far: a large one still being read gives way to a later one

/** Stop the run on its way (a new image was chosen): its answer, if it comes, is not shown. */
function stopRun() {
  if (!controller) return;
  controller.abort();
  controller = null;
  show($("denoise-cancel"), false);
  show($("denoise-progress"), false);
}

function model() {
  return models.find((m) => m.name === $("denoise-model").value);
}

function isDigitSized(image) {
  return image && image.width <= 64 && image.height <= 64;
}

function fixedSize(m) {
  // input_shape is [channels, height, width] for fixed-size models
  return m && !m.any_size ? { height: m.input_shape[1], width: m.input_shape[2] } : null;
}

function describeModel() {
  const m = model();
  const hint = $("denoise-model-hint");
  if (!m) {
    hint.textContent = "No model on this service can denoise.";
    show($("sigma-field"), false);
    return;
  }
  const size = fixedSize(m);
  hint.textContent = size
    ? `Trained on ${size.width}×${size.height} gray digits; other sizes are resized for the model ` +
      "and the answer comes back at the input's size."
    : "Any size, gray or colour. Blind: it estimates the noise level unless you give σ.";
  show($("sigma-field"), m.takes_sigma);
}

/** Show ``text`` in the warning above Denoise; hide it for null. */
function warn(text) {
  $("denoise-warning-text").textContent = text || "";
  show($("denoise-warning"), Boolean(text));
}

/** Warn, before anything is sent, about an image the service would refuse; enable Denoise when
 * there is a model and the image is not certain to be refused. */
function checkFit() {
  const refused = source && refusal(source.blob, source.image, model(), limits);
  warn(refused ? refused.text : null);
  $("denoise-run").disabled = !model() || !source || Boolean(refused && refused.certain);
}

function resetResult() {
  show($("denoise-empty"), true);
  for (const id of ["compare", "denoise-stats", "denoise-strip", "denoise-download"]) show($(id), false);
  showError($("denoise-error"), null);
}

/** Choose ``pending``: a file, or the promise of one (an example still being fetched). The last
 * choice wins, whichever arrives or is read first. */
async function choose(pending, name) {
  stopRun();
  resetResult();
  announce($("denoise-status"), "");
  const mine = ++choices;
  source = null; // nothing to send until this one is read
  $("denoise-input-info").textContent = `Reading ${name}…`;
  checkFit();
  let blob;
  try {
    blob = await pending;
  } catch (err) {
    if (mine !== choices) return; // a later choice took over: this one's failure is past news
    $("denoise-input-info").textContent = `Could not load ${name}.`;
    showError($("denoise-error"), err);
    return;
  }
  if (mine !== choices) return; // another image was chosen while this one was fetched
  let image = null;
  try {
    image = await decode(blob);
  } catch {
    image = null; // the service may still read it; it answers for itself
  }
  if (mine !== choices) return; // another image was chosen while this one was read
  source = { blob, name, image };
  const info = image
    ? `${name} · ${image.width}×${image.height} ${image.gray ? "gray" : "colour"}${image.alpha ? " with alpha" : ""} · ${bytes(blob.size)}`
    : `${name} · ${bytes(blob.size)} · this browser cannot preview it; the service will try`;
  $("denoise-input-info").textContent = info;
  // a gray digit to a fixed-size model; anything else (colour, larger, or an image this browser
  // cannot read, such as a TIFF) to a model of any size
  const digit = Boolean(image && image.gray && isDigitSized(image));
  const fit = models.find((m) => m.any_size !== digit);
  if (fit) $("denoise-model").value = fit.name;
  describeModel();
  checkFit();
  $("denoise-empty").textContent = "Ready: press Denoise.";
}

/** Tell screen readers a step of the run once (its status region reads out every change). */
function step(text) {
  if ($("denoise-status").textContent !== text) announce($("denoise-status"), text);
}

/** The visible progress follows each tick; screen readers hear the upload start and the model
 * start, not every percent. */
function progress(fraction, total, name) {
  const bar = $("denoise-progress-bar");
  if (fraction === null) {
    bar.removeAttribute("value"); // indeterminate while the model works
    $("denoise-progress-text").textContent = "Denoising on the service…";
    step("Denoising on the service…");
  } else {
    bar.value = Math.round(fraction * 100);
    $("denoise-progress-text").textContent = `Uploading ${Math.round(fraction * 100)} % of ${bytes(total)}`;
    step(`Uploading ${name}, ${bytes(total)}…`);
  }
}

function setImage(img, blob, small) {
  setBlob(img, blob);
  img.classList.toggle("pixelated", small);
}

/** The noise σ to send: null when not given, undefined when the box holds no σ the service takes. */
function givenSigma(m) {
  if (!m.takes_sigma || !$("sigma-on").checked) return null;
  const value = $("sigma").valueAsNumber; // NaN when empty or not a number
  return value >= 0 && value <= 255 ? value : undefined;
}

async function run() {
  const m = model();
  const src = source; // the image of this run, whatever is chosen meanwhile
  if (!src || !m) return;
  const sigma = givenSigma(m);
  if (sigma === undefined) {
    warn("Give the noise σ as a number from 0 to 255, or uncheck “Tell the model the noise σ” " +
      "to have the model estimate it.");
    $("sigma").focus();
    return;
  }
  stopRun();
  const mine = new AbortController();
  controller = mine;
  const current = () => controller === mine;
  resetResult();
  $("denoise-empty").textContent = "Working…";
  show($("denoise-cancel"), true);
  show($("denoise-progress"), true);
  $("denoise-run").disabled = true;
  const noisy = $("noise-on").checked && src.image;
  let note = null; // why nothing was sent, when the page stopped it
  try {
    let sent = src.blob;
    let input = src.image;
    if (noisy) {
      // a large image takes seconds: say what is going on, and let Cancel stop it
      $("denoise-progress-bar").removeAttribute("value");
      $("denoise-progress-text").textContent = "Adding noise in your browser…";
      step("Adding noise in your browser…");
      await new Promise((shown) => setTimeout(shown)); // the words show before the work blocks
      input = addNoise(src.image, Number($("noise-sigma").value), NOISE_SEED);
      sent = await encodePng(input);
      if (mine.signal.aborted) throw new Cancelled();
      if (!current()) return;
      if (limits && sent.size > limits.max_upload_bytes) { // noise does not compress: check again
        note = `With noise added, this image is ${bytes(sent.size)} as a PNG; the service accepts ` +
          `uploads of up to ${bytes(limits.max_upload_bytes)}. Turn the noise off or use a ` +
          "smaller image, then try again.";
        $("denoise-empty").textContent = "No result.";
        return;
      }
    }
    const params = new URLSearchParams();
    const size = fixedSize(m);
    if (size && (!input || input.width !== size.width || input.height !== size.height)) {
      params.set("resize", "true");
    }
    if (sigma !== null) params.set("sigma", $("sigma").value);
    const form = new FormData();
    form.append("image", sent, noisy ? "noisy.png" : src.name);
    progress(0, sent.size, src.name);
    const started = performance.now();
    const query = params.size ? `?${params}` : "";
    const answer = await upload(`/v1/models/${encodeURIComponent(m.name)}/denoise${query}`, form, {
      signal: mine.signal,
      onProgress: (f) => current() && progress(f, sent.size, src.name),
    });
    const took = performance.now() - started;
    if (current()) await showResult(answer, m, src, sent, input, noisy ? src.image : null, took, current);
  } catch (err) {
    if (current()) {
      showError($("denoise-error"), err); // an alert
      $("denoise-empty").textContent = err instanceof Cancelled ? "Cancelled." : "No result.";
      announce($("denoise-status"), err instanceof Cancelled ? "Cancelled." : "");
    }
  } finally {
    if (current()) { // else another image or run took over, and set the page for itself
      controller = null;
      show($("denoise-cancel"), false);
      show($("denoise-progress"), false);
      checkFit();
      if (note) warn(note);
      // the button (or Cancel, now hidden) had the focus: give it back rather than to the page
      if (document.activeElement === document.body) $("denoise-run").focus();
    }
  }
}

async function showResult(answer, m, src, sent, input, clean, took, current) {
  // an input this browser cannot show (a TIFF): the answer alone, at the answer's shape
  const shape = input || (await decode(answer.blob));
  if (!current()) return; // another image or run took over while the answer was decoded
  const small = isDigitSized(shape);
  const compare = $("compare");
  compare.style.setProperty("--ar", String(shape.width / shape.height));
  compare.classList.toggle("single", !input);
  show($("strip-input").closest("figure"), Boolean(input));
  if (input) {
    setImage($("compare-before"), sent, small);
    setImage($("strip-input"), sent, small);
  }
  setImage($("compare-after"), answer.blob, small);
  setImage($("strip-result"), answer.blob, small);
  show($("strip-clean"), Boolean(clean));
  if (clean) setImage($("strip-clean").querySelector("img"), src.blob, small);

  // only a model that takes σ reports one; the digit models are blind and say none
  const sigma = answer.headers("X-Noise-Sigma");
  $("stat-sigma").textContent = sigma === null ? "—" : Number(sigma).toFixed(2);
  $("stat-sigma").title = sigma === null ? "the image is too small to estimate its noise level" : "the noise σ the model used, on 0–255";
  $("stat-time").textContent = ms(took);
  $("stat-psnr-in").textContent = "–";
  $("stat-psnr-out").textContent = "–";
  if (clean) {
    const out = await decode(answer.blob);
    if (!current()) return;
    $("stat-psnr-in").textContent = `${psnr(clean, input).toFixed(2)} dB`;
    $("stat-psnr-out").textContent = `${psnr(clean, out).toFixed(2)} dB`;
  }
  const said = [`Denoised ${src.name} with ${m.name} in ${ms(took)}.`];
  if (sigma !== null) said.push(`Noise σ ${Number(sigma).toFixed(2)}.`);
  if (clean) said.push(`PSNR ${$("stat-psnr-in").textContent} noisy, ${$("stat-psnr-out").textContent} denoised.`);
  announce($("denoise-status"), said.join(" "));
  const link = $("denoise-download");
  setBlob(link, answer.blob, "href");
  link.download = `${src.name.replace(/\.[^.]+$/, "")}-denoised.png`;
  show($("denoise-empty"), false);
  for (const id of ["compare", "denoise-stats", "denoise-strip", "denoise-download"]) show($(id), true);
  show($("stat-sigma-box"), m.takes_sigma);
}

function wireDrop() {
  const zone = $("dropzone");
  // a file dropped beside the zone would otherwise replace the page with itself
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (e) => e.preventDefault());
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", (e) => {
    if (!zone.contains(e.relatedTarget)) zone.classList.remove("over"); // not into a child
  });
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) choose(file, file.name);
  });
  $("denoise-file").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (file) choose(file, file.name);
    e.target.value = "";
  });
}

export function initDenoise(allModels, serviceLimits = null) {
  models = supporting(allModels, "denoise");
  limits = serviceLimits;
  fillSelect($("denoise-model"), models, (m) => m.any_size); // a photo model, when there is one
  describeModel();
  wireDrop();
  for (const button of document.querySelectorAll("#panel-denoise .example")) {
    // the choice counts from the click, not from when the example arrives
    button.addEventListener("click", () => choose(exampleBlob(button.dataset.src), button.dataset.name));
  }
  $("denoise-model").addEventListener("change", () => {
    describeModel();
    checkFit();
  });
  $("sigma-on").addEventListener("change", (e) => {
    $("sigma").disabled = !e.target.checked;
    checkFit(); // clears a warning about the σ
  });
  $("sigma").addEventListener("input", checkFit);
  const noiseLabel = () => {
    const s = Number($("noise-sigma").value);
    $("noise-sigma-out").textContent = `σ ${s} (${(s / 255).toFixed(2)} on 0–1)`;
  };
  $("noise-on").addEventListener("change", (e) => ($("noise-sigma").disabled = !e.target.checked));
  $("noise-sigma").addEventListener("input", noiseLabel);
  noiseLabel();
  $("denoise-run").addEventListener("click", run);
  $("denoise-cancel").addEventListener("click", () => controller && controller.abort());
  $("compare-slider").addEventListener("input", (e) => {
    $("compare").style.setProperty("--pos", `${e.target.value}%`);
  });
}
