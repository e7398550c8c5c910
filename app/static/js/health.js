// Whether the service is up, for the status pill: a light readiness check (GET /readyz) every
// EVERY_MS while it is ready, every DOWN_EVERY_MS while it is not, none while the tab is hidden
// (one at once when it shows again), and the pill turned "offline" as soon as a call cannot reach
// the service.

import { errorFrom, setReachListener } from "./api.js";

export const EVERY_MS = 15000;
export const DOWN_EVERY_MS = 3000;

let state = null; // {state: "ready" | "offline" | "not_ready", err}
let probed = null; // the state the last readiness check found
let render = () => {};
let timer = null;
let running = null; // the check on its way

function schedule() {
  clearTimeout(timer);
  timer = null;
  if (document.hidden) return; // paused: visibilitychange checks again
  timer = setTimeout(check, state && state.state === "ready" ? EVERY_MS : DOWN_EVERY_MS);
}

function set(next, before = probed) {
  state = next;
  render(next, before);
}

async function probe() {
  try {
    const response = await fetch("/readyz", { cache: "no-store", headers: { Accept: "application/json" } });
    if (response.ok) return { state: "ready", err: null };
    const err = errorFrom(response.status, await response.text(), response.headers.get("Retry-After"));
    // a proxy's 502/503 "unavailable": nothing behind it answers
    return { state: err.code === "unavailable" || response.status === 502 ? "offline" : "not_ready", err };
  } catch {
    return { state: "offline", err: null };
  }
}

/** Check readiness now (one check at a time), then schedule the next. */
export function check() {
  if (!running) {
    running = probe()
      .then((next) => {
        const before = probed;
        probed = next.state;
        set(next, before);
      })
      .finally(() => {
        running = null;
        schedule();
      });
  }
  return running;
}

/** Watch the service: ``onState({state, err}, before)`` after every check, ``before`` being the
 * state the check before found (null at first); a call that cannot reach the service turns it
 * offline at once, without changing what the checks found. */
export function watchService(onState) {
  render = onState;
  document.addEventListener("visibilitychange", () => (document.hidden ? schedule() : check()));
  setReachListener((reached) => {
    if (!reached) {
      set({ state: "offline", err: null });
      schedule();
    } else if (state && state.state !== "ready") {
      check(); // an answer came: see whether the service is ready again
    }
  });
}
