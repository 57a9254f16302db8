// The live event stream (GET /sync/events): an EventSource opened with a short-lived stream
// token, and opened again, with a fresh token and the last event id, after any error.

import { API_BASE, api } from "./api.js";

const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 30_000;

// Opens the signed-in user's stream. handlers maps an event name (`version`, `access`) to a
// function given the event's data, parsed. Returns { close() }.
export function openEventStream(handlers) {
  const stream = { source: null, lastEventId: null, retryMs: FIRST_RETRY_MS, timer: null, closed: false };

  function retryLater() {
    if (stream.closed) return;
    // Jitter, so that the tabs a server restart cut off do not all come back at once.
    const delay = stream.retryMs * (0.5 + Math.random());
    stream.retryMs = Math.min(stream.retryMs * 2, MAX_RETRY_MS);
    stream.timer = setTimeout(connect, delay);
  }

  async function connect() {
    stream.timer = null;
    let token;
    try {
      // EventSource cannot send an Authorization header, and the access token must never be
      // in a URL: this token opens the stream and nothing else, for a few minutes.
      ({ token } = await api("/sync/stream-tokens", { method: "POST" }));
    } catch {
      retryLater(); // after a 401, api() has signed out, which closed this stream
      return;
    }
    if (stream.closed) return;
    const params = new URLSearchParams({ token });
    if (stream.lastEventId) params.set("last_event_id", stream.lastEventId); // resume, miss nothing
    const source = new EventSource(`${API_BASE}/sync/events?${params}`);
    stream.source = source;
    source.addEventListener("open", () => {
      stream.retryMs = FIRST_RETRY_MS;
    });
    for (const [name, handle] of Object.entries(handlers)) {
      source.addEventListener(name, (event) => {
        if (event.lastEventId) stream.lastEventId = event.lastEventId;
        handle(JSON.parse(event.data));
      });
    }
    // EventSource would retry by itself, but with the same stream token, which may have
    // expired (401 closes it for good): start over with a new one instead.
    source.addEventListener("error", () => {
      source.close();
      if (stream.source !== source) return;
      stream.source = null;
      retryLater();
    });
  }

  connect();
  return {
    close() {
      stream.closed = true;
      clearTimeout(stream.timer);
      stream.source?.close();
      stream.source = null;
    },
  };
}
