// Calls to the service: the bearer token (asked for once, kept in sessionStorage), the API's
// error shape {"error": {"code", "message"}}, and uploads with progress and cancel.

const TOKEN_KEY = "aeserve.token";

/** An error answer from the service, worded as the API words it; ``retryAfter`` in seconds. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

const unreachable = () => new ApiError(0, "network", "the service could not be reached");

/** The user pressed Cancel. */
export class Cancelled extends Error {
  constructor() {
    super("cancelled");
  }
}

let askToken = async () => null; // replaced by the page: shows the token dialog
let heard = () => {}; // told of every call's fate: (reached: boolean)

/** The function told whether each call reached the service: (reached) => void. */
export function setReachListener(fn) {
  heard = fn;
}

/** The function the page uses to ask for a token: (apiError) => Promise<string | null>. */
export function setTokenPrompt(fn) {
  askToken = fn;
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

function authHeaders() {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

function seconds(value) {
  const n = Number.parseInt(value, 10);
  return Number.isFinite(n) && n >= 0 ? n : null;
}

export function errorFrom(status, text, retryAfter = null) {
  const wait = seconds(retryAfter);
  try {
    const body = JSON.parse(text);
    if (body && body.error && body.error.message) {
      return new ApiError(status, body.error.code || "error", body.error.message, wait);
    }
  } catch {
    // not the API's JSON: fall through
  }
  return new ApiError(status, `http_${status}`, text.trim() || `HTTP ${status}`, wait);
}

/** On a 401, ask for a token (showing the API's message) and say whether to retry. */
async function retryAfter401(err) {
  if (err.status !== 401) return false;
  forgetToken();
  const given = await askToken(err);
  if (!given) return false;
  sessionStorage.setItem(TOKEN_KEY, given);
  return true;
}

/**
 * fetch() against the service with the token; resolves to the Response of a 2xx answer and
 * rejects with ApiError for any other (after asking for a token on a 401).
 */
export async function call(path, { method = "GET", body, headers = {}, signal } = {}) {
  for (;;) {
    let response;
    try {
      response = await fetch(path, { method, body, signal, headers: { ...headers, ...authHeaders() } });
    } catch (err) {
      if (signal && signal.aborted) throw new Cancelled();
      heard(false);
      throw unreachable();
    }
    heard(true);
    if (response.ok) return response;
    const err = errorFrom(response.status, await response.text(), response.headers.get("Retry-After"));
    if (!(await retryAfter401(err))) throw err;
  }
}

export async function callJson(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options = { ...options, body: JSON.stringify(options.json) };
  }
  const response = await call(path, { ...options, headers });
  return response.json();
}

/**
 * POST a FormData with XMLHttpRequest, for upload progress. ``onProgress(fraction)`` follows the
 * upload (null once it is sent and the service works); ``controller.signal`` aborts it.
 * Resolves to {blob, headers: (name) => value}; rejects with ApiError or Cancelled.
 */
export function upload(path, form, { onProgress = () => {}, signal, accept = "image/png" } = {}) {
  const once = () =>
    new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", path);
      xhr.responseType = "blob";
      xhr.setRequestHeader("Accept", accept);
      for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
      xhr.upload.onprogress = (e) => onProgress(e.lengthComputable ? e.loaded / e.total : null);
      xhr.upload.onload = () => onProgress(null);
      xhr.onload = async () => {
        heard(true);
        if (xhr.status >= 200 && xhr.status < 300) {
          resolve({ blob: xhr.response, headers: (name) => xhr.getResponseHeader(name) });
        } else {
          const text = await xhr.response.text();
          reject(errorFrom(xhr.status, text, xhr.getResponseHeader("Retry-After")));
        }
      };
      xhr.onerror = () => {
        heard(false);
        reject(unreachable());
      };
      xhr.onabort = () => reject(new Cancelled());
      if (signal) {
        if (signal.aborted) return xhr.abort();
        signal.addEventListener("abort", () => xhr.abort(), { once: true });
      }
      xhr.send(form);
    });
  return (async () => {
    for (;;) {
      try {
        return await once();
      } catch (err) {
        if (!(err instanceof ApiError) || !(await retryAfter401(err))) throw err;
      }
    }
  })();
}

/** An error's code and the API's own message. */
export function describe(err) {
  if (err instanceof ApiError) return { code: err.code, message: err.message };
  return { code: "error", message: String(err && err.message ? err.message : err) };
}
