// One trip: its days and items, new items and expenses, the expenses, balances and summary,
// invitations (owners), invite links (owners and editors), read-only share links (owners) and
// the calendar feed (every member).

import { allPages, api, API_BASE, ApiError, session, uuid } from "./api.js";
import { openEventStream } from "./live.js";
import { $, act, element, onSubmit, showError } from "./ui.js";
import { formatMoney, toMinor } from "./money.js";
import { dayGroup, expenseRow, formatDay } from "./rows.js";

// The trip on screen; loaders drop their answer if another trip was opened meanwhile.
// view.live follows the open trip page: its event stream and the versions it knows of.
const view = { trip: null, live: null };
const at = (trip, suffix) => `/trips/${trip.id}${suffix}`;
// How long opening a trip waits for its live stream's first event before reading anyway.
const FIRST_EVENT_WAIT_MS = 1000;
// What the page lists of a trip; emptied when it opens another or loses this one.
const TRIP_LISTS = [
  "#days", "#expenses", "#balances", "#settle-up", "#summary-by-category", "#summary-by-person", "#summary-by-day",
  "#sent-invitations", "#invite-links", "#share-links",
];

export async function showTrip(tripId) {
  leaveTrip();
  view.trip = null;
  for (const list of TRIP_LISTS) $(list).replaceChildren();
  $("#trip-title").textContent = "";
  $("#trip-meta").textContent = "";
  $("#balances-note").textContent = "";
  $("#expenses-empty").hidden = true;
  forgetSummary();
  for (const card of ["#item-form", "#expense-form", "#invite-card", "#invite-links-card", "#share-links-card", "#trip-gone"]) $(card).hidden = true;
  forgetNewInviteLink();
  forgetNewShareLink();
  $("#calendar-feed").hidden = true;
  $("#trip-body").hidden = false;
  // Subscribed before the first read, so that no version committed meanwhile goes unseen.
  const live = followTrip(tripId);
  let trip;
  try {
    trip = await api(`/trips/${tripId}`);
  } catch (err) {
    if (view.live === live) leaveTrip();
    throw err;
  }
  if (view.live !== live) return; // the user has moved on meanwhile
  showTripHeader(trip);
  $("#expense-form").elements.spent_on.value = trip.start_date;
  live.refreshing = true; // versions announced meanwhile wait for this first read
  try {
    // Read after the stream's first event (its version), or the page would read twice.
    await Promise.race([live.firstVersion, new Promise((resolve) => setTimeout(resolve, FIRST_EVENT_WAIT_MS))]);
    await loadSections(live, trip);
  } finally {
    live.refreshing = false;
  }
  refresh(live);
}

// Closes the open trip page's event stream (the user leaves the page or signs out).
export function leaveTrip() {
  view.live?.stream.close();
  view.live = null;
}

function showTripHeader(trip) {
  view.trip = trip;
  $("#trip-title").textContent = trip.name;
  const where = trip.destination ? `${trip.destination} · ` : "";
  $("#trip-meta").textContent = `${where}${trip.start_date} → ${trip.end_date} · ${trip.base_currency} · ${trip.role}`;
  const canWrite = trip.role !== "viewer";
  $("#item-form").hidden = !canWrite;
  $("#expense-form").hidden = !canWrite;
  $("#invite-card").hidden = trip.role !== "owner";
  $("#invite-links-card").hidden = !canWrite;
  $("#share-links-card").hidden = trip.role !== "owner";
  // A link gives at most its creator's role.
  $("#invite-link-form").elements.role.querySelector("option[value=owner]").hidden = trip.role !== "owner";
  $("#expense-currency").textContent = trip.base_currency;
}

// Everything below the header. `live.shown` becomes the newest version announced before the
// reads began: the data is at least that new (GET /trips/{id} does not say which version it
// read, so a page read before the stream's first event reads again once it comes).
async function loadSections(live, trip) {
  const announced = live.announced;
  await Promise.all([
    loadItinerary(),
    loadParticipants(),
    loadExpenses(),
    loadBalances(),
    loadSummary(),
    trip.role === "owner" ? loadSentInvitations() : null,
    trip.role !== "viewer" ? loadInviteLinks() : null,
    trip.role === "owner" ? loadShareLinks() : null,
  ]);
  live.shown = Math.max(live.shown, announced);
}

// Runs a loader for the trip on screen; returns null if the user has moved on meanwhile.
async function forCurrentTrip(load) {
  const trip = view.trip;
  if (!trip) return null;
  const result = await load(trip);
  return view.trip === trip ? result : null;
}

// ---------------------------------------------------------------- live updates

// The stream pokes, the page pulls: on a newer version of this trip it reads again what it
// shows (the same requests as opening it, so there is one way to draw the page; the change
// feed's rows would need the balances and day numbers worked out again here).
function followTrip(tripId) {
  const live = { tripId, announced: 0, shown: 0, stale: false, refreshing: false, stream: null };
  let announce;
  live.firstVersion = new Promise((resolve) => (announce = resolve));
  view.live = live;
  live.stream = openEventStream({
    version: ({ trip_id, version }) => {
      if (trip_id !== tripId) return; // the stream covers all of the user's trips
      live.announced = Math.max(live.announced, version);
      announce();
      refresh(live);
    },
    access: ({ trip_id, change }) => {
      if (trip_id !== tripId || change === "added") return;
      if (change === "removed" || change === "deleted") showTripGone(live);
      else {
        live.stale = true; // role or visibility: what the page may show changed
        refresh(live);
      }
    },
  });
  return live;
}

// Reads the page again while it is behind; one refresh at a time, the last one catches up.
async function refresh(live) {
  if (live.refreshing) return;
  live.refreshing = true;
  try {
    while (view.live === live && view.trip && (live.stale || live.announced > live.shown)) {
      live.stale = false;
      const trip = await api(`/trips/${live.tripId}`);
      if (view.live !== live) return;
      showTripHeader(trip);
      await loadSections(live, trip);
    }
  } catch (err) {
    if (err instanceof ApiError && err.problem.status === 404) showTripGone(live);
    else showError(err);
  } finally {
    live.refreshing = false;
  }
}

// Removed from the trip, or it was deleted: say so, and show none of its data any more.
function showTripGone(live) {
  if (view.live !== live) return;
  leaveTrip();
  view.trip = null;
  for (const list of TRIP_LISTS) $(list).replaceChildren();
  forgetNewInviteLink();
  forgetNewShareLink();
  forgetSummary();
  $("#trip-title").textContent = "";
  $("#trip-meta").textContent = "";
  $("#trip-body").hidden = true;
  $("#trip-gone").hidden = false;
}

// ---------------------------------------------------------------- days and items

async function loadItinerary() {
  const result = await forCurrentTrip(async (trip) => {
    const days = await allPages(at(trip, "/days"));
    // Only days that have items are asked for them.
    const [perDay, unscheduled] = await Promise.all([
      Promise.all(days.map((day) => (day.item_count ? allPages(at(trip, `/items?day=${day.day}`)) : []))),
      allPages(at(trip, "/items?unscheduled=true")),
    ]);
    return { days, perDay, unscheduled, zone: trip.timezone };
  });
  if (!result) return;
  const { days, perDay, unscheduled, zone } = result;
  const groups = days.map((day, i) => dayGroup(`Day ${day.day_number} · ${formatDay(day.day)}`, day.day, perDay[i], zone));
  if (unscheduled.length) groups.push(dayGroup("Unscheduled", "", unscheduled, zone));
  $("#days").replaceChildren(...groups);

  const select = $("#item-form").elements.day;
  const chosen = select.value;
  select.replaceChildren(
    ...days.map((day) => new Option(`Day ${day.day_number} · ${formatDay(day.day)}`, day.day)),
    new Option("No day (unscheduled)", ""),
  );
  if ([...select.options].some((option) => option.value === chosen)) select.value = chosen;
}

onSubmit("#item-form", async (values, form) => {
  const item = { id: uuid(), kind: values.kind, title: values.title, day: values.day || null };
  if (values.time) {
    if (!values.day) throw new Error("Pick a day to give the item a time.");
    item.start_local = `${values.day}T${values.time.slice(0, 5)}:00`; // local wall-clock time
  }
  await api(at(view.trip, "/items"), { method: "POST", json: item });
  form.reset();
  form.elements.day.value = values.day; // keep adding to the same day
  await loadItinerary();
});

// ---------------------------------------------------------------- expenses and balances

// Who shares an expense: current members and guests (former members keep their history only).
async function loadParticipants() {
  const participants = await forCurrentTrip((trip) => allPages(at(trip, "/participants")));
  if (!participants) return null;
  const sharing = participants.filter((p) => p.is_member || p.is_guest);
  const names = sharing.map((p) => (p.user_id === session.me.id ? "you" : p.name));
  $("#expense-split").textContent = `Paid by you, split equally between ${names.join(", ")}.`;
  return sharing;
}

onSubmit("#expense-form", async (values, form) => {
  const currency = view.trip.base_currency;
  const amountMinor = toMinor(values.amount, currency);
  const sharing = await loadParticipants(); // fresh: someone may have joined since
  const payer = sharing?.find((p) => p.user_id === session.me.id);
  if (!payer) throw new Error("Only participants of this trip can add expenses.");
  await api(at(view.trip, "/expenses"), {
    method: "POST",
    json: {
      id: uuid(),
      title: values.title,
      category: values.category,
      amount_minor: amountMinor,
      currency,
      spent_on: values.spent_on,
      payers: [{ participant_id: payer.id, amount_minor: amountMinor }],
      split_mode: "equal",
      splits: sharing.map((p) => ({ participant_id: p.id })),
    },
  });
  form.reset();
  form.elements.spent_on.value = values.spent_on;
  await Promise.all([loadExpenses(), loadBalances(), loadSummary()]);
});

// Every live expense, latest date first (amounts null for viewers when the trip hides them).
async function loadExpenses() {
  const expenses = await forCurrentTrip((trip) => allPages(at(trip, "/expenses")));
  if (!expenses) return;
  $("#expenses").replaceChildren(...expenses.map(expenseRow));
  $("#expenses-empty").hidden = expenses.length > 0;
}

async function loadBalances() {
  let result;
  try {
    result = await forCurrentTrip((trip) => api(at(trip, "/balances")));
  } catch (err) {
    if (!(err instanceof ApiError && err.problem.code === "amounts_hidden")) throw err;
    $("#balances-note").textContent = "This trip hides amounts from viewers.";
    return;
  }
  if (!result) return;
  const { currency, balances, settle_up: transfers } = result;
  const money = (minor, signed) => formatMoney(minor, currency, { signed });
  $("#balances").replaceChildren(
    ...balances.map((b) => {
      const row = document.createElement("tr");
      row.dataset.testid = "balance";
      row.dataset.participantId = b.participant_id;
      const sign = b.balance_minor > 0 ? "positive" : b.balance_minor < 0 ? "negative" : "";
      row.append(element("td", b.name), element("td", money(b.balance_minor, true), `amount ${sign}`));
      return row;
    }),
  );
  const name = new Map(balances.map((b) => [b.participant_id, b.name]));
  $("#settle-up").replaceChildren(
    ...transfers.map((t) => {
      const li = element("li", `${name.get(t.from_participant_id)} pays ${name.get(t.to_participant_id)} ${money(t.amount_minor)}`);
      li.dataset.testid = "transfer";
      return li;
    }),
  );
  $("#balances-note").textContent = transfers.length ? "To settle up:" : "All square.";
}

function forgetSummary() {
  $("#summary-card").hidden = true;
  $("#summary-tables").hidden = true;
  $("#summary-note").hidden = true;
  $("#summary-total").textContent = "";
}

function summaryRow(testid, label, amounts, currency) {
  const row = document.createElement("tr");
  row.dataset.testid = testid;
  row.append(element("td", label), ...amounts.map((minor) => element("td", formatMoney(minor, currency), "amount")));
  return row;
}

// Totals by category, by person (paid and consumed) and by day, in the trip's currency. Read
// with the balances, so it follows every change the page follows (live events included).
async function loadSummary() {
  let summary;
  try {
    summary = await forCurrentTrip((trip) => api(at(trip, "/summary")));
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    if (err.problem.code === "amounts_hidden") {
      forgetSummary();
      $("#summary-note").textContent = "Amounts are hidden for viewers.";
      $("#summary-note").hidden = false;
      $("#summary-card").hidden = false;
      return;
    }
    // An API without the route answers 404: no card. (A trip that is gone is noticed by
    // GET /trips/{id}, which every refresh reads first.)
    if (err.problem.status === 404) {
      forgetSummary();
      return;
    }
    throw err;
  }
  if (!summary) return;
  const { currency } = summary;
  $("#summary-total").textContent = formatMoney(summary.total_minor, currency);
  $("#summary-by-category").replaceChildren(
    ...summary.by_category.map((c) => summaryRow("summary-category", c.category, [c.total_minor], currency)),
  );
  $("#summary-by-person").replaceChildren(
    ...summary.by_participant.map((p) => {
      const row = summaryRow("summary-person", p.name, [p.paid_minor, p.consumed_minor], currency);
      row.dataset.participantId = p.participant_id;
      return row;
    }),
  );
  $("#summary-by-day").replaceChildren(
    ...summary.by_day.map((d) => {
      const row = summaryRow("summary-day", formatDay(d.day), [d.total_minor], currency);
      row.dataset.day = d.day;
      return row;
    }),
  );
  $("#summary-note").hidden = true;
  $("#summary-tables").hidden = false;
  $("#summary-card").hidden = false;
}

// The ledger as a CSV file: fetched with the bearer token (a plain link could not send it),
// then handed to the browser as a Blob to save under the server's file name.
$("#export-csv").addEventListener("click", (event) =>
  act(event.currentTarget, async () => {
    const response = await api(at(view.trip, "/export?format=csv"), { raw: true });
    const named = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") ?? "");
    const url = URL.createObjectURL(await response.blob());
    const link = element("a", "");
    link.href = url;
    link.download = named ? named[1] : "ledger.csv";
    link.click();
    URL.revokeObjectURL(url);
  }),
);

// ---------------------------------------------------------------- invitations (owners)

async function loadSentInvitations() {
  const invitations = await forCurrentTrip((trip) => allPages(at(trip, "/invitations")));
  if (!invitations) return;
  $("#sent-invitations").replaceChildren(
    ...invitations.map((invitation) => {
      const li = element("li", `${invitation.email} · ${invitation.role} · `);
      li.dataset.testid = "sent-invitation";
      li.append(element("span", invitation.status, `badge status-${invitation.status}`));
      return li;
    }),
  );
}

onSubmit("#invite-form", async (values, form) => {
  await api(at(view.trip, "/invitations"), { method: "POST", json: { email: values.email, role: values.role } });
  form.reset();
  await loadSentInvitations();
});

// ---------------------------------------------------------------- invite links (owners and editors)

// An address of this page (the API's PUBLIC_URL when the API or nginx serves it), plus ?api=
// when the API lives elsewhere, then the route, e.g. #/join/<token>.
function pageUrl(route) {
  const page = new URL(window.location.pathname, window.location.origin);
  if (API_BASE !== window.location.origin) page.searchParams.set("api", API_BASE);
  return `${page}${route}`;
}

const joinUrl = (token) => pageUrl(`#/join/${token}`);

function forgetNewInviteLink() {
  $("#invite-link-url").value = "";
  $("#new-invite-link").hidden = true;
}

const shortDate = (iso) => new Date(iso).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });

function inviteLinkItem(link) {
  const li = document.createElement("li");
  li.dataset.testid = "invite-link";
  li.dataset.linkId = link.id;
  const by = link.created_by === session.me.id ? "by you" : "by another member";
  const what = element("span", `${link.role} · ${link.uses} of ${link.max_uses} used · ${by} · `);
  what.append(element("span", link.status.replace("_", " "), `badge status-${link.status}`));
  li.append(what, element("span", `Until ${shortDate(link.expires_at)}`, "muted"));
  if (!link.revoked) {
    // Revoking stops the link at once; people who joined with it stay members.
    const revoke = element("button", "Revoke", "secondary");
    revoke.type = "button";
    revoke.dataset.testid = "revoke-invite-link";
    revoke.addEventListener("click", () =>
      act(revoke, async () => {
        await api(at(view.trip, `/invite-links/${link.id}`), { method: "DELETE" });
        await loadInviteLinks();
      }),
    );
    li.append(revoke);
  }
  return li;
}

// Owners see every link of the trip, editors the ones they made (never a token: not kept).
async function loadInviteLinks() {
  const links = await forCurrentTrip((trip) => allPages(at(trip, "/invite-links")));
  if (!links) return;
  $("#invite-links").replaceChildren(...links.map(inviteLinkItem));
}

onSubmit("#invite-link-form", async (values) => {
  const created = await api(at(view.trip, "/invite-links"), {
    method: "POST",
    json: { role: values.role, max_uses: Number(values.max_uses), expires_in_hours: Number(values.expires_in_hours) },
  });
  // The only time the token is shown: the API keeps its hash only.
  $("#invite-link-url").value = joinUrl(created.token);
  $("#new-invite-link").hidden = false;
  await loadInviteLinks();
});

$("#copy-invite-link").addEventListener("click", (event) =>
  act(event.currentTarget, async () => {
    const input = $("#invite-link-url");
    input.select(); // selected either way, for copying by hand
    await navigator.clipboard?.writeText(input.value); // only in secure contexts (https, localhost)
  }),
);

// ---------------------------------------------------------------- share links (owners)

// The address a share link's token opens: this page's #/shared/<token> (plus ?api= when the
// API lives elsewhere), which reads GET /shared/<token> with no account and shows the trip
// read-only (shared.js).
const sharedUrl = (token) => pageUrl(`#/shared/${token}`);

function forgetNewShareLink() {
  $("#share-link-url").value = "";
  $("#new-share-link").hidden = true;
}

function shareLinkItem(link) {
  const li = document.createElement("li");
  li.dataset.testid = "share-link";
  li.dataset.linkId = link.id;
  const scope = link.scope === "itinerary" ? "itinerary" : "itinerary and expenses";
  const amounts = link.hide_amounts ? " · amounts hidden" : "";
  const what = element("span", `${scope}${amounts} · `);
  what.append(element("span", link.status, `badge status-${link.status}`));
  li.append(what, element("span", `Until ${shortDate(link.expires_at)}`, "muted"));
  if (!link.revoked) {
    // Revoking stops the link at once: it answers 404 from then on.
    const revoke = element("button", "Revoke", "secondary");
    revoke.type = "button";
    revoke.dataset.testid = "revoke-share-link";
    revoke.addEventListener("click", () =>
      act(revoke, async () => {
        await api(at(view.trip, `/share-links/${link.id}`), { method: "DELETE" });
        await loadShareLinks();
      }),
    );
    li.append(revoke);
  }
  return li;
}

// Every share link of the trip (never a token: not kept).
async function loadShareLinks() {
  const links = await forCurrentTrip((trip) => allPages(at(trip, "/share-links")));
  if (!links) return;
  $("#share-links").replaceChildren(...links.map(shareLinkItem));
}

onSubmit("#share-link-form", async (values, form) => {
  const created = await api(at(view.trip, "/share-links"), {
    method: "POST",
    json: {
      scope: values.scope,
      hide_amounts: form.elements.hide_amounts.checked,
      expires_in_hours: Number(values.expires_in_hours),
    },
  });
  // The only time the token is shown: the API keeps its hash only.
  $("#share-link-url").value = sharedUrl(created.token);
  $("#new-share-link").hidden = false;
  await loadShareLinks();
});

$("#copy-share-link").addEventListener("click", (event) =>
  act(event.currentTarget, async () => {
    const input = $("#share-link-url");
    input.select(); // selected either way, for copying by hand
    await navigator.clipboard?.writeText(input.value); // only in secure contexts (https, localhost)
  }),
);

// ---------------------------------------------------------------- calendar feed (every member)

// The API shows a feed token once and keeps only its hash: this browser remembers the one it
// was given (one token per user serves all their trips), and asks for one only when it has none.
const CALENDAR_TOKEN_KEY = "tripsync.calendar-token"; // localStorage, per user id
const calendarTokenKey = () => `${CALENDAR_TOKEN_KEY}.${session.me.id}`;

async function calendarToken() {
  let token = localStorage.getItem(calendarTokenKey());
  if (!token) {
    token = (await api("/users/me/calendar-token", { method: "POST" })).token;
    localStorage.setItem(calendarTokenKey(), token);
  }
  return token;
}

$("#subscribe-calendar").addEventListener("click", (event) =>
  act(event.currentTarget, async () => {
    const feed = new URL(`${API_BASE}${at(view.trip, "/calendar.ics")}`);
    feed.searchParams.set("token", await calendarToken());
    $("#calendar-url").value = feed.href;
    // webcal:// makes the device offer to subscribe (the same address, fetched over https).
    $("#calendar-webcal").href = feed.href.replace(/^https?:/, "webcal:");
    $("#calendar-feed").hidden = false;
  }),
);

// Revoking stops every address holding the token at once, on every device and trip.
$("#revoke-calendar").addEventListener("click", (event) =>
  act(event.currentTarget, async () => {
    await api("/users/me/calendar-token", { method: "DELETE" });
    localStorage.removeItem(calendarTokenKey());
    $("#calendar-url").value = "";
    $("#calendar-feed").hidden = true;
  }),
);
