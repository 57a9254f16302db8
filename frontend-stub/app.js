// TripSync frontend stub: a tiny, dependency-free client for the TripSync API.
// Loaded as an ES module (see index.html); no build step. This module signs in and out and
// picks the screen from the URL: #/trips/<id> is a trip, anything else the home screen.

import { API_BASE, api, clearTokens, getToken, session, setTokens, setUnauthorizedHandler } from "./api.js";
import { clearHome, showHome } from "./home.js";
import { leaveTrip, showTrip } from "./trip.js";
import { $, act, clearError, onSubmit } from "./ui.js";

const TRIP_ROUTE = /^#\/trips\/([0-9a-f-]{36})$/i;

function showLoggedOut() {
  leaveTrip();
  clearTokens();
  session.me = null;
  clearHome();
  $("#whoami").textContent = "";
  $("#session").hidden = true;
  $("#app-view").hidden = true;
  $("#trip-view").hidden = true;
  $("#auth-view").hidden = false;
}

async function route() {
  if (!session.me) return;
  const match = TRIP_ROUTE.exec(window.location.hash);
  $("#app-view").hidden = Boolean(match);
  $("#trip-view").hidden = !match;
  if (match) await showTrip(match[1]);
  else {
    leaveTrip(); // closes the trip page's event stream
    await showHome();
  }
}

async function showLoggedIn() {
  const me = await api("/users/me");
  session.me = me;
  $("#whoami").textContent = me.full_name ? `${me.full_name} <${me.email}>` : me.email;
  $("#whoami").dataset.userId = me.id;
  $("#auth-view").hidden = true;
  $("#session").hidden = false;
  await route();
}

async function logIn(email, password) {
  // A new session of this browser; GET /users/me/sessions labels it with the User-Agent.
  const tokens = await api("/auth/login", { method: "POST", form: { username: email, password }, auth: false });
  setTokens(tokens);
  await showLoggedIn();
}

setUnauthorizedHandler(showLoggedOut);

onSubmit("#login-form", async ({ email, password }, form) => {
  await logIn(email, password);
  form.reset();
});

onSubmit("#register-form", async ({ email, password, full_name }, form) => {
  await api("/auth/register", { method: "POST", json: { email, password, full_name }, auth: false });
  await logIn(email, password); // sign straight in with the new account
  form.reset();
});

// Ends the session on the server (its tokens stop working at once), then forgets them here.
$("#logout").addEventListener("click", (event) =>
  act(event.currentTarget, async () => {
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
    try {
      await api("/auth/logout", { method: "POST" });
    } catch (err) {
      if (err.problem?.status !== 401) throw err; // 401: the session had already ended
    } finally {
      showLoggedOut(); // signed out here even if the API could not be reached
    }
  }),
);

window.addEventListener("hashchange", () => act(null, route));

// ---------------------------------------------------------------- start

$("#api-base").textContent = API_BASE;

if (getToken()) {
  act(null, async () => {
    try {
      await showLoggedIn();
    } catch (err) {
      if (!session.me) $("#auth-view").hidden = false; // e.g. API unreachable
      throw err;
    }
  });
} else {
  showLoggedOut();
}
