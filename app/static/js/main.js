// The page's entry point: tabs, the model list, the token dialog.

import { callJson, forgetToken, setTokenPrompt, token } from "./api.js";
import { initDenoise } from "./denoise.js";
import { check, watchService } from "./health.js";
import { $, show, showError } from "./ui.js";
import { initVae } from "./vae.js";

function initTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const select = (tab) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !on;
    }
    history.replaceState(null, "", `#${tab.id.replace("tab-", "")}`);
  };
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (e) => {
      const move = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (!move) return;
      const next = tabs[(i + move + tabs.length) % tabs.length];
      next.focus();
      select(next);
    });
  });
  const wanted = tabs.find((t) => t.id === `tab-${location.hash.slice(1)}`);
  if (wanted) select(wanted);
}

/** Ask for the token in a modal dialog; resolves to the token, or null if dismissed. */
function promptToken(err) {
  const dialog = $("token-dialog");
  const input = $("token-input");
  // the first ask explains; a later one means the token was refused: show the API's words
  showError($("token-error"), dialog.dataset.asked ? err : null);
  dialog.dataset.asked = "yes";
  input.value = "";
  return new Promise((resolve) => {
    const form = $("token-form");
    const done = (value) => {
      form.removeEventListener("submit", submit);
      dialog.removeEventListener("cancel", cancel);
      $("token-cancel").removeEventListener("click", cancel);
      if (dialog.open) dialog.close();
      refreshTokenButton(Boolean(value));
      resolve(value);
    };
    const submit = (e) => {
      e.preventDefault();
      done(input.value.trim() || null);
    };
    const cancel = () => done(null);
    form.addEventListener("submit", submit);
    dialog.addEventListener("cancel", cancel);
    $("token-cancel").addEventListener("click", cancel);
    dialog.showModal();
    input.focus();
  });
}

function refreshTokenButton(has = Boolean(token())) {
  show($("token-button"), has);
}

let listed = null; // the pill's text once the model list came
let failure = null; // why the model list did not come

const PILL = {
  offline: ["offline", "The service cannot be reached. The page checks again every few seconds."],
  not_ready: ["not ready", "The service is starting, restarting or not serving every model."],
};

/** The status pill: the models when the service is ready, else what is wrong. */
function renderStatus({ state, err }, before) {
  const pill = $("service-status");
  const up = state === "ready";
  const problem = up ? failure : null; // ready, but the model list did not come: say why
  const [text, title] = !up
    ? PILL[state]
    : problem
      ? [problem.status === 401 ? "token needed" : "unavailable", problem.message]
      : [listed || "ready", "The service is up and ready."];
  if (pill.textContent !== text) pill.textContent = text; // a live region: no repeats
  pill.title = err ? `${title} (${err.message})` : title;
  pill.dataset.state = state;
  pill.classList.toggle("ok", up && !problem);
  pill.classList.toggle("bad", !up || Boolean(problem));
  // the list failed for want of the service: fetch it again once the service is back
  if (up && before && before !== "ready" && !listed && failure && failure.status !== 401) loadModels();
}

/** The model list, then the panels; on failure (no service, no token given) a way to try again. */
async function loadModels() {
  const status = $("service-status");
  show($("retry-button"), false);
  showError($("global-error"), null);
  status.textContent = "connecting…";
  status.classList.remove("bad", "ok");
  failure = null;
  try {
    const { models, limits } = await callJson("/v1/models");
    listed = `${models.length} model${models.length === 1 ? "" : "s"}: ${models.map((m) => m.name).join(", ")}`;
    initDenoise(models, limits);
    initVae(models);
    document.body.dataset.ready = "true";
  } catch (err) {
    failure = err;
    showError($("global-error"), err);
    show($("retry-button"), true); // asks for the token again, if that was what was missing
  }
  refreshTokenButton();
  await check();
}

async function start() {
  initTabs();
  setTokenPrompt(promptToken);
  refreshTokenButton();
  $("token-button").addEventListener("click", () => {
    forgetToken();
    location.reload();
  });
  $("retry-button").addEventListener("click", loadModels);
  watchService(renderStatus);
  await loadModels();
}

start();
