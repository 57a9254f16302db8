// How a trip's days, items and expenses are drawn: the same on the trip page and on the
// public page of a share link.

import { formatMoney } from "./money.js";
import { element } from "./ui.js";

// "2027-05-01" -> "Sat, May 1" (a calendar day: no time zone moves it).
export function formatDay(isoDate) {
  const date = new Date(`${isoDate}T00:00:00Z`);
  return date.toLocaleDateString(undefined, { weekday: "short", day: "numeric", month: "short", timeZone: "UTC" });
}

// One item: its start as the API gives it, the wall-clock time in the item's own zone (named
// when it is not the trip's), title, kind and place.
function itemRow(item, tripZone) {
  const li = document.createElement("li");
  li.dataset.testid = "item";
  li.dataset.itemId = item.id;
  let time = item.start_local ? item.start_local.slice(11, 16) : "";
  if (time && item.start_timezone && item.start_timezone !== tripZone) time += ` ${item.start_timezone}`;
  li.append(element("span", time, "item-time"), element("span", item.title, "item-title"), element("span", item.kind, "badge"));
  if (item.place) {
    const where = item.place.address ? `${item.place.name}, ${item.place.address}` : item.place.name;
    li.append(element("span", where, "item-place muted"));
  }
  return li;
}

// A day (or "Unscheduled", dayValue "") with its items, in the order given.
export function dayGroup(title, dayValue, items, tripZone) {
  const li = document.createElement("li");
  li.dataset.testid = "day";
  li.dataset.day = dayValue;
  const list = element("ul", "", "items");
  list.append(...items.map((item) => itemRow(item, tripZone)));
  li.append(element("h4", title), items.length ? list : element("p", "Nothing planned yet.", "muted"));
  return li;
}

// One expense: title, category, day, amount (null when amounts are hidden from the reader),
// and where its exchange rate came from when the server looked it up (`rate_source` "ecb";
// a server without that field shows nothing).
export function expenseRow(expense) {
  const li = document.createElement("li");
  li.dataset.testid = "expense";
  li.dataset.expenseId = expense.id;
  li.append(element("span", expense.title, "expense-title"));
  if (expense.category) li.append(element("span", expense.category, "badge expense-category"));
  li.append(element("span", formatDay(expense.spent_on), "expense-day muted"));
  let amount = "amount hidden";
  if (expense.amount_minor !== null && expense.amount_minor !== undefined) {
    amount = formatMoney(expense.amount_minor, expense.currency);
    const base = expense.base_amount_minor;
    if (expense.currency !== expense.base_currency && base !== null && base !== undefined) {
      amount += ` (${formatMoney(base, expense.base_currency)})`;
    }
  }
  li.append(element("span", amount, "amount expense-amount"));
  if (expense.rate_source === "ecb") {
    const date = expense.rate_date ? ` of ${expense.rate_date}` : "";
    li.append(element("span", `ECB rate${date}`, "expense-rate muted"));
  }
  return li;
}
