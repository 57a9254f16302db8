// TripSync frontend stub: a tiny, dependency-free client for the TripSync API.
// Loaded as an ES module (see index.html); no build step.

const TOKEN_KEY = "tripsync.token"; // sessionStorage
const API_KEY = "tripsync.api"; // localStorage
const PAGE_SIZE = 20;

const $ = (selector) => document.querySelector(selector);

function element(tag, text, className = "") {
  const el = document.createElement(tag);
  el.textContent = text;
  if (className) el.className = className;
  return el;
}

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

const API_BASE = resolveApiBase();

// ---------------------------------------------------------------- token

const getToken = () => sessionStorage.getItem(TOKEN_KEY);
const setToken = (token) => sessionStorage.setItem(TOKEN_KEY, token);
const clearToken = () => sessionStorage.removeItem(TOKEN_KEY);

// ---------------------------------------------------------------- busy indicator (#spinner + aria-busy)

let inFlight = 0;

function setBusy(delta) {
  inFlight = Math.max(0, inFlight + delta);
  const busy = inFlight > 0;
  $("#main").setAttribute("aria-busy", String(busy));
  $("#spinner").hidden = !busy;
}

// ---------------------------------------------------------------- errors

// Wraps an application/problem+json body (or something shaped like one).
class ApiError extends Error {
  constructor(problem) {
    super(problem.detail || problem.title || `HTTP ${problem.status}`);
    this.problem = problem;
  }
}

function problemLines(problem) {
  // FastAPI's default 422 puts the error list in `detail`; accept that shape too.
  const errors = problem.errors ?? (Array.isArray(problem.detail) ? problem.detail : []);
  const detail = typeof problem.detail === "string" ? problem.detail : problem.title;
  const fieldErrors = errors.map((err) => {
    const field = Array.isArray(err.loc) && err.loc.length ? err.loc.at(-1) : "?";
    return `${field}: ${err.msg}`;
  });
  return { detail: detail || `Request failed (HTTP ${problem.status ?? "?"})`, fieldErrors };
}

function showError(error) {
  const problem = error instanceof ApiError ? error.problem : { detail: String(error?.message ?? error) };
  const { detail, fieldErrors } = problemLines(problem);
  const summary = element("p", detail);
  const box = $("#error");
  box.replaceChildren(summary);
  if (fieldErrors.length) {
    const list = document.createElement("ul");
    list.append(...fieldErrors.map((text) => element("li", text)));
    box.append(list);
  }
  box.hidden = false;
}

function clearError() {
  $("#error").replaceChildren();
  $("#error").hidden = true;
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
async function api(path, { method = "GET", json, form, auth = true } = {}) {
  const headers = { Accept: "application/json, application/problem+json" };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = new URLSearchParams(form); // fetch sets the urlencoded Content-Type
  }
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
      if (response.status === 401 && auth) showLoggedOut(); // token expired or invalid
      throw new ApiError({ status: response.status, title: response.statusText, ...(data ?? {}) });
    }
    return data;
  } finally {
    setBusy(-1);
  }
}

// ---------------------------------------------------------------- views

const trips = { cursor: null };

function showLoggedOut() {
  clearToken();
  trips.cursor = null;
  $("#trips").replaceChildren();
  $("#whoami").textContent = "";
  $("#session").hidden = true;
  $("#app-view").hidden = true;
  $("#auth-view").hidden = false;
}

async function showLoggedIn() {
  const me = await api("/users/me");
  $("#whoami").textContent = me.full_name ? `${me.full_name} <${me.email}>` : me.email;
  $("#whoami").dataset.userId = me.id;
  $("#auth-view").hidden = true;
  $("#session").hidden = false;
  $("#app-view").hidden = false;
  await loadTrips({ reset: true });
}

function tripItem(trip) {
  const li = document.createElement("li");
  li.dataset.tripId = trip.id;
  li.dataset.testid = "trip";
  const role = element("span", trip.role, "trip-role");
  role.dataset.role = trip.role;
  li.append(
    element("span", trip.name, "trip-name"),
    element("span", trip.destination, "trip-destination"),
    element("span", `${trip.start_date} → ${trip.end_date}`, "trip-dates"),
    role,
  );
  return li;
}

async function loadTrips({ reset = false } = {}) {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (!reset && trips.cursor) params.set("cursor", trips.cursor);
  const page = await api(`/trips?${params}`);
  const list = $("#trips");
  if (reset) list.replaceChildren();
  list.append(...page.items.map(tripItem));
  trips.cursor = page.next_cursor ?? null;
  $("#load-more").hidden = trips.cursor === null;
  $("#trips-empty").hidden = list.children.length > 0;
}

// ---------------------------------------------------------------- actions

// Runs a user action: clears old errors, disables the trigger, reports failures.
async function act(trigger, work) {
  clearError();
  if (trigger) trigger.disabled = true;
  try {
    await work();
  } catch (err) {
    showError(err);
  } finally {
    if (trigger) trigger.disabled = false;
  }
}

async function logIn(email, password) {
  const token = await api("/auth/login", { method: "POST", form: { username: email, password }, auth: false });
  setToken(token.access_token);
  await showLoggedIn();
}

function onSubmit(selector, handler) {
  const form = $(selector);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const values = Object.fromEntries(new FormData(form));
    act(form.querySelector("button[type=submit]"), () => handler(values, form));
  });
}

onSubmit("#login-form", async ({ email, password }, form) => {
  await logIn(email, password);
  form.reset();
});

onSubmit("#register-form", async ({ email, password, full_name }, form) => {
  await api("/auth/register", { method: "POST", json: { email, password, full_name }, auth: false });
  await logIn(email, password); // sign straight in with the new account
  form.reset();
});

onSubmit("#trip-form", async (values, form) => {
  const trip = {
    name: values.name,
    destination: values.destination,
    start_date: values.start_date,
    end_date: values.end_date,
    timezone: values.timezone || "UTC",
  };
  if (values.description.trim()) trip.description = values.description;
  await api("/trips", { method: "POST", json: trip });
  form.reset(); // timezone goes back to its default, "UTC"
  await loadTrips({ reset: true });
});

$("#load-more").addEventListener("click", (event) => act(event.currentTarget, () => loadTrips()));

$("#logout").addEventListener("click", () => {
  clearError();
  showLoggedOut();
});

// ---------------------------------------------------------------- start

$("#api-base").textContent = API_BASE;

if (getToken()) {
  act(null, async () => {
    try {
      await showLoggedIn();
    } catch (err) {
      if ($("#app-view").hidden) $("#auth-view").hidden = false; // e.g. API unreachable
      throw err;
    }
  });
} else {
  showLoggedOut();
}
