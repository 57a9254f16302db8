// Two-factor sign-in, in the home screen's settings: turn it on (the password, then the key
// for the authenticator app and a first code from it, then the recovery codes, shown once)
// or off (the password and a code). The login's second step is in app.js.

import { api } from "./api.js";
import { $, act, element, onSubmit } from "./ui.js";

const when = (iso) => new Date(iso).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });

function showStatus(status) {
  $("#two-factor-status").textContent = status.enabled
    ? `On since ${when(status.enabled_at)}: logging in asks for a code from your app. ` +
      `${status.recovery_codes_left} recovery codes left.`
    : "Off: logging in asks for your password only.";
  $("#two-factor-start").hidden = status.enabled;
  $("#two-factor-disable").hidden = !status.enabled;
  $("#two-factor-enrol").hidden = true;
}

async function loadTwoFactor() {
  showStatus(await api("/users/me/2fa"));
}

// Forgets what the card showed (a key, recovery codes): called when signing out.
export function clearTwoFactor() {
  for (const id of ["#two-factor-start", "#two-factor-confirm", "#two-factor-disable"]) $(id).reset();
  $("#two-factor-secret").textContent = "";
  $("#two-factor-uri").textContent = "";
  $("#recovery-codes").replaceChildren();
  $("#two-factor-status").textContent = "";
  for (const id of ["#two-factor-start", "#two-factor-enrol", "#two-factor-codes", "#two-factor-disable"]) {
    $(id).hidden = true;
  }
  $("#two-factor-card").open = false;
}

$("#two-factor-card").addEventListener("toggle", (event) => {
  // Recovery codes on screen stay there until "I have kept them".
  if (event.currentTarget.open && $("#two-factor-codes").hidden) act(null, loadTwoFactor);
});

onSubmit("#two-factor-start", async ({ password }, form) => {
  const enrolment = await api("/users/me/2fa", { method: "POST", json: { password } });
  form.reset();
  $("#two-factor-secret").textContent = enrolment.secret;
  $("#two-factor-uri").textContent = enrolment.otpauth_uri;
  $("#two-factor-start").hidden = true;
  $("#two-factor-enrol").hidden = false;
});

onSubmit("#two-factor-confirm", async ({ code }, form) => {
  const { recovery_codes } = await api("/users/me/2fa/confirm", { method: "POST", json: { code: code.trim() } });
  form.reset();
  $("#two-factor-secret").textContent = "";
  $("#two-factor-uri").textContent = "";
  $("#two-factor-enrol").hidden = true;
  $("#two-factor-status").textContent = "On: your other devices were signed out.";
  $("#recovery-codes").replaceChildren(...recovery_codes.map((recovery) => element("li", recovery)));
  $("#two-factor-codes").hidden = false;
});

$("#two-factor-codes-done").addEventListener("click", (event) =>
  act(event.currentTarget, async () => {
    $("#recovery-codes").replaceChildren();
    $("#two-factor-codes").hidden = true;
    await loadTwoFactor();
  }),
);

onSubmit("#two-factor-disable", async ({ password, code }, form) => {
  await api("/users/me/2fa", { method: "DELETE", json: { password, code: code.trim() } });
  form.reset();
  await loadTwoFactor();
});
