// TripSync frontend stub: a tiny, dependency-free client for the TripSync API.
// Loaded as an ES module (see index.html); no build step. This module signs in (with the
// second step of two-factor sign-in when the account asks for it) and out and picks the
// screen from the URL: #/trips/<id> is a trip, #/verify-email/<token> (the link in the
// verification mail) confirms the address, #/reset-password/<token> (the link in a reset
// mail) asks for a new password, #/join/<token> (an invite link) joins a trip once signed in,
// #/shared/<token> (a share link) shows a trip read-only to anyone, signed in or not, and
// anything else (such as #/invitations/<id>, the link in an invitation mail) is the home
// screen, which lists the invitations.

import { API_BASE, ApiError, api, clearTokens, getToken, session, setTokens, setUnauthorizedHandler } from "./api.js";
import { clearHome, showHome } from "./home.js";
import { joinLinkToken, joinWithLink } from "./join.js";
import { clearRecovery, resetLinkToken, setResetHandler } from "./recovery.js";
import { clearShared, sharedLinkToken, showShared } from "./shared.js";
import { leaveTrip, showTrip } from "./trip.js";
import { clearTwoFactor } from "./twofactor.js";
import { $, act, onSubmit } from "./ui.js";

const TRIP_ROUTE = /^#\/trips\/([0-9a-f-]{36})$/i;
const VERIFY_ROUTE = /^#\/verify-email\/([\w.-]+)$/;

function notify(text) {
  $("#notice").textContent = text;
  $("#notice").hidden = !text;
}

// The link mailed to a new address: confirm it, then take the token out of the address bar.
// Needs no sign-in (the token is the proof); returns whether the page was opened from one.
async function verifyFromLink() {
  const match = VERIFY_ROUTE.exec(window.location.hash);
  if (!match) return false;
  window.history.replaceState(null, "", window.location.pathname + window.location.search);
  await api("/auth/verify-email", { method: "POST", json: { token: match[1] }, auth: false });
  notify("Your email address is confirmed.");
  return true;
}

// The login waiting for its second step: the mfa_token of its first (never stored).
let secondStep = null;

function showSecondStep(mfaToken) {
  secondStep = mfaToken;
  $("#login-form").hidden = true;
  $("#register-form").hidden = true;
  $("#mfa-form").hidden = false;
  $("#mfa-form").querySelector("input").focus();
}

function hideSecondStep() {
  secondStep = null;
  $("#mfa-form").reset();
  $("#mfa-form").hidden = true;
  $("#login-form").hidden = false;
  $("#register-form").hidden = false;
}

function showLoggedOut() {
  leaveTrip();
  clearTokens();
  session.me = null;
  hideSecondStep();
  clearHome();
  clearTwoFactor();
  $("#whoami").textContent = "";
  $("#session").hidden = true;
  $("#app-view").hidden = true;
  $("#trip-view").hidden = true;
  $("#reset-view").hidden = true;
  clearRecovery();
  $("#auth-view").hidden = false;
}

// The public page of a share link: none of the signed-in screens (nor who is signed in)
// shows, and it reads nothing with the access token; whether the page is one.
async function showSharedPage() {
  const token = sharedLinkToken();
  if (!token) {
    if (!$("#shared-view").hidden) {
      clearShared();
      $("#session").hidden = !session.me;
    }
    return false;
  }
  leaveTrip();
  for (const view of ["#session", "#auth-view", "#app-view", "#trip-view", "#reset-view"]) $(view).hidden = true;
  await showShared(token);
  return true;
}

// The page a reset link opens, signed in or not (the other screens hide); whether it is one.
function showResetPage() {
  const open = resetLinkToken() !== null;
  $("#reset-view").hidden = !open;
  if (open) {
    leaveTrip();
    for (const view of ["#auth-view", "#app-view", "#trip-view"]) $(view).hidden = true;
  }
  return open;
}

async function route() {
  if (showResetPage()) return;
  if (!session.me) {
    $("#auth-view").hidden = false;
    if (joinLinkToken()) notify("Log in or create an account to join the trip.");
    return;
  }
  const joining = joinLinkToken();
  if (joining) {
    let joined;
    try {
      joined = await joinWithLink(joining); // on to #/trips/<id>, or #/ if it failed
    } catch (err) {
      await route(); // the home screen, with the error shown
      throw err;
    }
    notify(`You are in ${joined.trip.name}, as ${joined.membership.role}.`);
  }
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
  let tokens;
  try {
    tokens = await api("/auth/login", { method: "POST", form: { username: email, password }, auth: false });
  } catch (err) {
    // The password was right and the account asks for a code: no tokens yet (docs/api.md).
    if (!(err instanceof ApiError) || err.problem.code !== "mfa_required") throw err;
    showSecondStep(err.problem.mfa_token);
    return;
  }
  setTokens(tokens);
  await showLoggedIn();
}

onSubmit("#mfa-form", async ({ code }) => {
  let tokens;
  try {
    tokens = await api("/auth/login/2fa", {
      method: "POST",
      json: { mfa_token: secondStep, code: code.trim() },
      auth: false,
    });
  } catch (err) {
    // Expired or spent: back to the password (a wrong code may simply be typed again).
    if (err instanceof ApiError && err.problem.code === "invalid_mfa_token") hideSecondStep();
    throw err;
  }
  hideSecondStep();
  setTokens(tokens);
  await showLoggedIn();
});

$("#mfa-cancel").addEventListener("click", () => hideSecondStep());

setUnauthorizedHandler(showLoggedOut);

// A reset ends every session of the account, this browser's too.
setResetHandler(() => {
  showLoggedOut();
  notify("Your password is changed and every device was signed out: log in with the new one.");
});

onSubmit("#login-form", async ({ email, password }, form) => {
  await logIn(email, password);
  form.reset();
});

onSubmit("#register-form", async ({ email, password, full_name }, form) => {
  // The answer (202) is the same whether or not the address already had an account.
  const accepted = await api("/auth/register", { method: "POST", json: { email, password, full_name }, auth: false });
  try {
    await logIn(email, password); // sign straight in with the new account
  } catch (err) {
    if (!(err instanceof ApiError) || err.problem.status !== 401) throw err;
    // Not a new account after all: the address had one, and this is not its password.
    throw new Error(`${accepted.message} If the address already had an account, log in with its password.`);
  }
  form.reset();
});

// Ends the session on the server (its tokens stop working at once), then forgets them here.
$("#logout").addEventListener("click", (event) =>
  act(event.currentTarget, async () => {
    notify("");
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

window.addEventListener("hashchange", () =>
  act(null, async () => {
    if (await showSharedPage()) return;
    if (await verifyFromLink()) {
      if (session.me) await showLoggedIn(); // the home screen, now without the token form
    } else if (!session.me && getToken()) await showLoggedIn(); // left a shared page it opened on
    else await route();
  }),
);

// ---------------------------------------------------------------- start

$("#api-base").textContent = API_BASE;

act(null, async () => {
  if (await showSharedPage()) return; // signed in or not, the page shows only the shared trip
  if (!getToken()) showLoggedOut();
  try {
    await verifyFromLink();
  } finally {
    if (getToken()) {
      try {
        await showLoggedIn();
      } catch (err) {
        if (!session.me) $("#auth-view").hidden = false; // e.g. API unreachable
        throw err;
      }
    } else await route(); // the login, or the page of a reset link
  }
});
