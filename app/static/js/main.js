// The page's entry point: tabs, the model list, the token dialog.

import { callJson, forgetToken, setTokenPrompt, token } from "./api.js";
import { initDenoise } from "./denoise.js";
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

/** The model list, then the panels; on failure (no service, no token given) a way to try again. */
async function loadModels() {
  const status = $("service-status");
  show($("retry-button"), false);
  showError($("global-error"), null);
  status.textContent = "connecting…";
  status.classList.remove("bad");
  try {
    const { models } = await callJson("/v1/models");
    status.textContent = `${models.length} model${models.length === 1 ? "" : "s"}: ${models.map((m) => m.name).join(", ")}`;
    status.classList.add("ok");
    initDenoise(models);
    initVae(models);
    document.body.dataset.ready = "true";
  } catch (err) {
    status.textContent = "unavailable";
    status.classList.add("bad");
    showError($("global-error"), err);
    show($("retry-button"), true); // asks for the token again, if that was what was missing
  }
  refreshTokenButton();
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
  await loadModels();
}

start();
