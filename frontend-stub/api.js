// Talking to the TripSync API: base URL, bearer token, busy indicator and problem+json errors.

const TOKEN_KEY = "tripsync.token"; // sessionStorage
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

// ---------------------------------------------------------------- token

export const getToken = () => sessionStorage.getItem(TOKEN_KEY);
export const setToken = (token) => sessionStorage.setItem(TOKEN_KEY, token);
export const clearToken = () => sessionStorage.removeItem(TOKEN_KEY);

// Who is logged in (GET /users/me), shared by the views.
export const session = { me: null };

// Called when the API answers 401 to an authenticated request (token expired or invalid).
let onUnauthorized = () => {};
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
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

// options: { method, json, form, auth } — json is sent as JSON, form as x-www-form-urlencoded.
// Every write carries a fresh Idempotency-Key, so the API may answer a resent one as a replay.
export async function api(path, { method = "GET", json, form, auth = true } = {}) {
  const headers = { Accept: "application/json, application/problem+json" };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = new URLSearchParams(form); // fetch sets the urlencoded Content-Type
  }
  if (method !== "GET") headers["Idempotency-Key"] = uuid();
  const token = getToken();
  if (auth && token) headers.Authorization = `Bearer ${token}`;

  setBusy(+1);
  try {
    let response;
    try {
      response = await fetch(API_BASE + path, { method, headers, body });
    } catch (err) {
      throw new ApiError({ title: "Network error", detail: `Could not reach ${API_BASE}: ${err.message}` });
    }
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
