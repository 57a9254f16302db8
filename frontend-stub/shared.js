// The public page of a share link (#/shared/<token>): the trip read-only, for anyone holding
// the link, signed in or not. It reads GET /shared/<token> without the access token and keeps
// nothing (no storage): the link is the only key.

import { api, ApiError } from "./api.js";
import { $, element } from "./ui.js";
import { dayGroup, expenseRow, formatDay } from "./rows.js";

const SHARED_ROUTE = /^#\/shared\/([\w-]+)$/;
const MS_PER_DAY = 24 * 60 * 60 * 1000;

// The token of the share link the page shows, or null when it shows none.
export function sharedLinkToken() {
  return SHARED_ROUTE.exec(window.location.hash)?.[1] ?? null;
}

// The page opened since; an answer for an earlier one is dropped.
let shown = null;

export function clearShared() {
  shown = null;
  $("#shared-view").hidden = true;
  $("#shared-title").textContent = "";
  $("#shared-meta").textContent = "";
  $("#shared-days").replaceChildren();
  $("#shared-expenses").replaceChildren();
  $("#shared-expenses-card").hidden = true;
  $("#shared-amounts-note").hidden = true;
  $("#shared-body").hidden = true;
  $("#shared-gone").hidden = true;
}

export async function showShared(token) {
  clearShared();
  const opened = (shown = {});
  $("#shared-view").hidden = false;
  let shared;
  try {
    shared = await api(`/shared/${encodeURIComponent(token)}`, { auth: false });
  } catch (err) {
    // Revoked, expired or never issued are one 404; a token of the wrong shape is a 422.
    const status = err instanceof ApiError ? err.problem.status : null;
    if (shown === opened && (status === 404 || status === 422)) $("#shared-gone").hidden = false;
    else throw err;
    return;
  }
  if (shown !== opened) return;
  drawShared(shared);
}

// The answer is a viewer's snapshot cut to the link's scope: a `trip` row, `item` rows and,
// for itinerary_and_expenses, `participant`, `expense` and `settlement` rows.
function drawShared(shared) {
  const rows = (entity) => shared.rows.filter((row) => row.entity === entity && row.data).map((row) => row.data);
  const [trip] = rows("trip");
  if (!trip) {
    $("#shared-gone").hidden = false;
    return;
  }
  $("#shared-title").textContent = trip.name;
  const where = trip.destination ? `${trip.destination} · ` : "";
  $("#shared-meta").textContent = `${where}${trip.start_date} → ${trip.end_date} · read-only`;

  $("#shared-days").replaceChildren(...dayGroups(trip, rows("item")));

  const showsExpenses = shared.scope === "itinerary_and_expenses";
  $("#shared-expenses-card").hidden = !showsExpenses;
  if (showsExpenses) {
    const expenses = rows("expense").sort(
      (a, b) => b.spent_on.localeCompare(a.spent_on) || a.title.localeCompare(b.title),
    );
    $("#shared-expenses").replaceChildren(
      ...(expenses.length ? expenses.map(expenseRow) : [element("li", "No expenses yet.", "muted")]),
    );
    $("#shared-amounts-note").hidden = !shared.amounts_hidden;
  }
  $("#shared-body").hidden = false;
}

// Every day of the trip (numbered from its start, as GET /trips/{id}/days does) with its
// items in their order, then the unscheduled ones.
function dayGroups(trip, items) {
  const byDay = new Map();
  for (const item of items.sort((a, b) => (a.order_key < b.order_key ? -1 : a.order_key > b.order_key ? 1 : 0))) {
    const key = item.day ?? "";
    if (!byDay.has(key)) byDay.set(key, []);
    byDay.get(key).push(item);
  }
  const groups = [];
  const start = Date.parse(`${trip.start_date}T00:00:00Z`);
  const end = Date.parse(`${trip.end_date}T00:00:00Z`);
  for (let time = start, number = 1; time <= end; time += MS_PER_DAY, number += 1) {
    const day = new Date(time).toISOString().slice(0, 10);
    groups.push(dayGroup(`Day ${number} · ${formatDay(day)}`, day, byDay.get(day) ?? [], trip.timezone));
    byDay.delete(day);
  }
  // Items on a day outside the trip's dates (its dates moved since) still show, by date.
  for (const [day, dayItems] of [...byDay].sort(([a], [b]) => a.localeCompare(b))) {
    if (day) groups.push(dayGroup(formatDay(day), day, dayItems, trip.timezone));
  }
  if (byDay.has("")) groups.push(dayGroup("Unscheduled", "", byDay.get(""), trip.timezone));
  return groups;
}
