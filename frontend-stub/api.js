// Talking to the TripSync API: base URL, tokens (refreshed once on a 401), busy indicator and
// problem+json errors.

const TOKEN_KEY = "tripsync.token"; // sessionStorage: the access token
const REFRESH_KEY = "tripsync.refresh"; // sessionStorage: the refresh token (works once)
const API_KEY = "tripsync.api"; // localStorage

// ---------------------------------------------------------------- API base URL

// Precedence: ?api=... (remembered in localStorage) > remembered value > page origin.
// An empty ?api= forgets the remembered value.
function resolveApiBase() {
  const param = new URLSearchParams(window.location.search).get("api");
  if (param !== null) {
    if (param.trim()) localStorage.setItem(API_KEY, param.trim());
    else localStorage.removeItem(API_KEY);
  }
  const base = localStorage.getItem(API_KEY) || window.location.origin;
  // A page opened from file:// has no usable origin; assume the dev server.
  const usable = base && base !== "null" ? base : "http://127.0.0.1:8000";
  return usable.replace(/\/+$/, "");
}

export const API_BASE = resolveApiBase();

// ---------------------------------------------------------------- tokens

export const getToken = () => sessionStorage.getItem(TOKEN_KEY);

// Keeps the pair of a login or refresh answer (the OAuth2 token response).
export function setTokens({ access_token, refresh_token }) {
  sessionStorage.setItem(TOKEN_KEY, access_token);
  sessionStorage.setItem(REFRESH_KEY, refresh_token);
}

export function clearTokens() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(REFRESH_KEY);
}

// Who is logged in (GET /users/me), shared by the views.
export const session = { me: null };

// Called when the API answers 401 to an authenticated request and a refresh did not help
// (the session has ended).
let onUnauthorized = () => {};
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

// A refresh token works once: requests that get a 401 together share one refresh, since a
// second one with the same token would count as reuse and end the session.
let refreshing = null;

async function refreshOnce() {
  const refresh_token = sessionStorage.getItem(REFRESH_KEY);
  if (!refresh_token) return false;
  try {
    const response = await fetch(API_BASE + "/auth/refresh", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json, application/problem+json" },
      body: JSON.stringify({ refresh_token }),
    });
    if (!response.ok) return false; // the session has ended
    setTokens(await response.json());
    return true;
  } catch {
    return false; // its answer may be lost, and the new token with it: sign in again
  }
}

function refreshTokens() {
  refreshing ??= refreshOnce().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

// ---------------------------------------------------------------- busy indicator (#spinner + aria-busy)

let inFlight = 0;

function setBusy(delta) {
  inFlight = Math.max(0, inFlight + delta);
  const busy = inFlight > 0;
  document.querySelector("#main").setAttribute("aria-busy", String(busy));
  document.querySelector("#spinner").hidden = !busy;
}

// ---------------------------------------------------------------- ids

// A random (version 4) UUID. crypto.randomUUID() exists only in secure contexts (https,
// localhost); getRandomValues() works everywhere, e.g. behind nginx on plain http.
export function uuid() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// ---------------------------------------------------------------- errors

// Wraps an application/problem+json body (or something shaped like one).
export class ApiError extends Error {
  constructor(problem) {
    super(problem.detail || problem.title || `HTTP ${problem.status}`);
    this.problem = problem;
  }
}

// ---------------------------------------------------------------- HTTP

async function readBody(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { detail: text };
  }
}

// One request; with `auth`, the current access token.
async function send(path, method, headers, body, auth) {
  const token = auth ? getToken() : null;
  const sent = token ? { ...headers, Authorization: `Bearer ${token}` } : headers;
  let response;
  try {
    // A fresh body per attempt: a retry after a refresh sends it again.
    response = await fetch(API_BASE + path, { method, headers: sent, body: body?.() });
  } catch (err) {
    throw new ApiError({ title: "Network error", detail: `Could not reach ${API_BASE}: ${err.message}` });
  }
  return { response, token };
}

// options: { method, json, form, auth, raw } — json is sent as JSON, form as
// x-www-form-urlencoded; with raw, a successful answer is returned as the Response itself
// (a download: read it with .blob()).
// Every write carries a fresh Idempotency-Key, so the API may answer a resent one as a replay.
// A 401 to an authenticated request is retried once with a refreshed access token; if the
// session has ended, the page signs out.
export async function api(path, { method = "GET", json, form, auth = true, raw = false } = {}) {
  const headers = { Accept: "application/json, application/problem+json" };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = () => JSON.stringify(json);
  } else if (form !== undefined) {
    body = () => new URLSearchParams(form); // fetch sets the urlencoded Content-Type
  }
  if (method !== "GET") headers["Idempotency-Key"] = uuid(); // the same key for the retry

  setBusy(+1);
  try {
    const first = await send(path, method, headers, body, auth);
    let response = first.response;
    if (response.status === 401 && first.token) {
      // Another request may have refreshed meanwhile: then its new token is enough.
      if (getToken() !== first.token || (await refreshTokens())) {
        response = (await send(path, method, headers, body, auth)).response;
      }
    }
    if (raw && response.ok) return response;
    const data = await readBody(response);
    if (!response.ok) {
      if (response.status === 401 && auth) onUnauthorized();
      throw new ApiError({ status: response.status, title: response.statusText, ...(data ?? {}) });
    }
    return data;
  } finally {
    setBusy(-1);
  }
}

// Every item of a cursor-paged list (`{items, next_cursor}`), following next_cursor.
export async function allPages(path, limit = 100) {
  const items = [];
  let cursor = null;
  do {
    const params = new URLSearchParams({ limit: String(limit) });
    if (cursor) params.set("cursor", cursor);
    const separator = path.includes("?") ? "&" : "?";
    const page = await api(`${path}${separator}${params}`);
    items.push(...page.items);
    cursor = page.next_cursor ?? null;
  } while (cursor);
  return items;
}
