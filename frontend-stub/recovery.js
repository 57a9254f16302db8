// A forgotten password: ask for a reset link by email (on the login screen), and choose a new
// password on the page the mailed link opens (#/reset-password/<token>), signed in or not.

import { api } from "./api.js";
import { $, onSubmit } from "./ui.js";

const RESET_ROUTE = /^#\/reset-password\/([\w-]+)$/;

// The token of the reset link the page shows, or null when it shows none.
export function resetLinkToken() {
  return RESET_ROUTE.exec(window.location.hash)?.[1] ?? null;
}

// Called once a reset has succeeded: every session of the account has ended, this one too.
let onReset = () => {};
export function setResetHandler(handler) {
  onReset = handler;
}

export function clearRecovery() {
  $("#forgot-form").reset();
  $("#forgot-status").textContent = "";
  $("#forgot-card").open = false;
  $("#reset-form").reset();
}

// The answer is the same whether or not the address has an account: the page says what the
// API said, and cannot say more.
onSubmit("#forgot-form", async ({ email }, form) => {
  const answer = await api("/auth/password-reset", { method: "POST", json: { email }, auth: false });
  form.reset();
  $("#forgot-status").textContent = answer.message;
});

onSubmit("#reset-form", async ({ new_password, repeated }, form) => {
  const token = resetLinkToken();
  if (!token) throw new Error("Open the link from the reset mail again.");
  if (new_password !== repeated) throw new Error("The two passwords differ.");
  await api("/auth/password-reset/confirm", { method: "POST", json: { token, new_password }, auth: false });
  form.reset();
  // The token is used up: take it out of the address bar (and the history entry).
  window.history.replaceState(null, "", window.location.pathname + window.location.search);
  onReset();
});
