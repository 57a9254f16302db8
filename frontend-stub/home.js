// The home screen once logged in: verify my email, invitations I received, my trips, new trip,
// and the devices signed in to my account.

import { allPages, api, session, uuid } from "./api.js";
import { $, act, element, onSubmit } from "./ui.js";

const PAGE_SIZE = 20;
const trips = { cursor: null };

export async function showHome() {
  const me = session.me;
  $("#verify-form").hidden = me.email_verified;
  $("#verify-address").textContent = me.email;
  await Promise.all([loadTrips({ reset: true }), loadInvitations()]);
}

export function clearHome() {
  trips.cursor = null;
  $("#trips").replaceChildren();
  $("#invitations").replaceChildren();
  $("#devices").replaceChildren();
  $("#devices-card").open = false;
  $("#invitations-card").hidden = true;
  $("#verify-status").textContent = "";
}

// ---------------------------------------------------------------- my trips

function tripItem(trip) {
  const li = document.createElement("li");
  li.dataset.tripId = trip.id;
  li.dataset.testid = "trip";
  const link = element("a", trip.name, "trip-name");
  link.href = `#/trips/${trip.id}`;
  const role = element("span", trip.role, "trip-role");
  role.dataset.role = trip.role;
  li.append(
    link,
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

$("#load-more").addEventListener("click", (event) => act(event.currentTarget, () => loadTrips()));

onSubmit("#trip-form", async (values, form) => {
  const trip = {
    id: uuid(), // a client-chosen id: sending the same create again is a harmless replay
    name: values.name,
    destination: values.destination,
    start_date: values.start_date,
    end_date: values.end_date,
    timezone: values.timezone || "UTC",
    base_currency: values.base_currency.trim().toUpperCase() || "EUR",
  };
  if (values.description.trim()) trip.description = values.description;
  await api("/trips", { method: "POST", json: trip });
  form.reset(); // time zone and currency go back to their defaults
  await loadTrips({ reset: true });
});

// ---------------------------------------------------------------- invitations I received

function invitationItem(invitation) {
  const li = document.createElement("li");
  li.dataset.testid = "invitation";
  li.dataset.invitationId = invitation.id;
  const from = invitation.invited_by_name || "Someone";
  const accept = element("button", "Accept");
  accept.type = "button";
  accept.dataset.testid = "accept-invitation";
  accept.addEventListener("click", () =>
    act(accept, async () => {
      await api(`/invitations/${invitation.id}/accept`, { method: "POST" });
      await Promise.all([loadTrips({ reset: true }), loadInvitations()]);
    }),
  );
  const decline = element("button", "Decline", "secondary");
  decline.type = "button";
  decline.dataset.testid = "decline-invitation";
  decline.addEventListener("click", () =>
    act(decline, async () => {
      await api(`/invitations/${invitation.id}/decline`, { method: "POST" });
      await loadInvitations();
    }),
  );
  const actions = element("div", "", "actions");
  actions.append(accept, decline);
  li.append(
    element("span", invitation.trip_name, "trip-name"),
    element("span", `${invitation.trip_start_date} → ${invitation.trip_end_date}`, "trip-dates"),
    element("span", `${from} invited you as ${invitation.role}.`, "muted"),
    actions,
  );
  return li;
}

// Invitations reach verified addresses only (the API answers 403 before that).
async function loadInvitations() {
  if (!session.me.email_verified) return;
  const invitations = await allPages("/invitations");
  $("#invitations").replaceChildren(...invitations.map(invitationItem));
  $("#invitations-card").hidden = invitations.length === 0;
}

// ---------------------------------------------------------------- verify my email

onSubmit("#verify-form", async ({ token }, form) => {
  await api("/auth/verify-email", { method: "POST", json: { token: token.trim() }, auth: false });
  form.reset();
  session.me = await api("/users/me");
  await showHome();
});

$("#resend-verification").addEventListener("click", (event) =>
  act(event.currentTarget, async () => {
    await api("/users/me/verification-email", { method: "POST" });
    $("#verify-status").textContent = `A new token is on its way to ${session.me.email}.`;
  }),
);

// ---------------------------------------------------------------- signed-in devices

const when = (iso) => new Date(iso).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });

function deviceItem(device) {
  const li = document.createElement("li");
  li.dataset.testid = "device";
  li.dataset.sessionId = device.id;
  const label = element("span", device.device_label, "device-label");
  li.append(label);
  if (device.current) {
    li.dataset.current = "true";
    label.append(" ", element("span", "this device", "badge"));
  }
  li.append(
    element("span", `Signed in ${when(device.created_at)} · last active ${when(device.last_used_at)}`, "muted"),
  );
  if (!device.current) {
    // Ends that session: its tokens stop working at once (a lost phone). This one: "Log out".
    const revoke = element("button", "Sign out", "secondary");
    revoke.type = "button";
    revoke.dataset.testid = "revoke-device";
    revoke.addEventListener("click", () =>
      act(revoke, async () => {
        await api(`/users/me/sessions/${device.id}`, { method: "DELETE" });
        await loadDevices();
      }),
    );
    li.append(revoke);
  }
  return li;
}

async function loadDevices() {
  const devices = await allPages("/users/me/sessions");
  $("#devices").replaceChildren(...devices.map(deviceItem));
}

$("#devices-card").addEventListener("toggle", (event) => {
  if (event.currentTarget.open) act(null, loadDevices);
});
