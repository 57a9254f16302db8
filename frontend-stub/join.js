// Joining a trip with an invite link (#/join/<token>): signed in (after logging in or
// registering, if need be), the page joins and opens the trip.

import { api } from "./api.js";

const JOIN_ROUTE = /^#\/join\/([\w-]+)$/;

// The token of the invite link the page was opened with, or null.
export function joinLinkToken() {
  return JOIN_ROUTE.exec(window.location.hash)?.[1] ?? null;
}

// Joins with the link's role (someone already a member keeps theirs) and returns what the API
// answered: the trip and the membership. The token leaves the address bar either way.
export async function joinWithLink(token) {
  const here = window.location.pathname + window.location.search;
  try {
    const joined = await api(`/join/${encodeURIComponent(token)}`, { method: "POST" });
    window.history.replaceState(null, "", `${here}#/trips/${joined.trip.id}`);
    return joined;
  } catch (err) {
    window.history.replaceState(null, "", `${here}#/`);
    throw err;
  }
}
