"""Live-sync clients for the fault tests, on raw asyncio sockets to 127.0.0.1: long polls and
event streams, each keeping its own copy of one trip by pulling changes as a device does.

A subscriber never raises: a refused connection, a dropped stream or a 503 is counted and
tried again shortly, as a client would.
"""

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

RETRY = 0.3  # seconds before a failed request or a dropped stream is tried again
LONG_POLL_WAIT = 20
Failure = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError)


def request_bytes(
    method: str, path: str, token: str, body: Any = None, headers: dict[str, str] | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {token}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    payload = b""
    if body is not None:
        payload = json.dumps(body).encode()
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *lines = head.split("\r\n")
    headers = {}
    for line in lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ", 2)[1]), headers


class Http:
    """One keep-alive connection; reopened after any failure."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> tuple[int, Any]:
        """Raises one of `Failure` when no answer came; the connection is then closed."""
        try:
            return await asyncio.wait_for(self._call(method, path, body, headers), timeout)
        except Failure:
            self.close()
            raise

    async def _call(
        self, method: str, path: str, body: Any, headers: dict[str, str] | None
    ) -> tuple[int, Any]:
        if self.streams is not None and self.streams[0].at_eof():
            self.close()
        if self.streams is None:
            self.streams = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.streams
        writer.write(request_bytes(method, path, self.token, body, headers))
        status, received = await read_head(reader)
        raw = await reader.readexactly(int(received.get("content-length", "0")))
        if received.get("connection") == "close":
            self.close()
        return status, json.loads(raw) if raw else None

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


@dataclass
class Subscriber:
    """One device following one trip: its copy (entity, id) → data, and what it was told."""

    kind: str  # "sse" or "long_poll"
    port: int
    token: str
    trip_id: str
    cursor: int
    rows: dict[tuple[str, str], Any]
    change_versions: set[int] = field(default_factory=set)  # of every change it applied
    event_versions: list[int] = field(default_factory=list)  # SSE version events
    announced: int = 0  # the newest version it was told of
    errors: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0
    last_event_id: str | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def error(self, label: str) -> None:
        self.errors[label] = self.errors.get(label, 0) + 1

    def apply(self, page: dict[str, Any]) -> None:
        for change in page["changes"]:
            key = (change["entity"], str(change["id"]))
            self.change_versions.add(int(change["version"]))
            if change["op"] == "delete":
                self.rows.pop(key, None)
            else:
                self.rows[key] = change["data"]
        self.cursor = int(page["version"])

    # --- long poll ---------------------------------------------------------------------------

    async def long_poll(self) -> None:
        http = Http(self.port, self.token)
        while True:
            path = f"/trips/{self.trip_id}/changes?since={self.cursor}&wait={LONG_POLL_WAIT}"
            try:
                status, body = await http.call("GET", path, timeout=LONG_POLL_WAIT + 30)
            except Failure as error:
                self.error(type(error).__name__)
                await asyncio.sleep(RETRY)
                continue
            if status == 200:
                self.apply(body)
                self.announced = max(self.announced, self.cursor)
            else:
                self.error(str(status))
                await asyncio.sleep(RETRY)

    # --- event stream ------------------------------------------------------------------------

    async def pull(self, http: Http) -> None:
        """Pull changes until the copy reaches the newest version announced."""
        while self.cursor < self.announced:
            path = f"/trips/{self.trip_id}/changes?since={self.cursor}&limit=1000"
            try:
                status, body = await http.call("GET", path)
            except Failure as error:
                self.error(f"pull {type(error).__name__}")
                await asyncio.sleep(RETRY)
                continue
            if status == 200:
                self.apply(body)
            else:
                self.error(f"pull {status}")
                await asyncio.sleep(RETRY)

    async def puller(self) -> None:
        http = Http(self.port, self.token)
        while True:
            await self.wake.wait()
            self.wake.clear()
            await self.pull(http)

    async def stream(self) -> None:
        """`GET /sync/events`, again with Last-Event-ID whenever the stream ends."""
        first = True
        while True:
            if not first:
                self.reconnects += 1
            first = False
            writer: asyncio.StreamWriter | None = None
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                headers = {"Accept": "text/event-stream"}
                if self.last_event_id is not None:
                    headers["Last-Event-ID"] = self.last_event_id
                writer.write(request_bytes("GET", "/sync/events", self.token, headers=headers))
                status, _ = await asyncio.wait_for(read_head(reader), 30)
                if status != 200:
                    self.error(f"stream {status}")
                else:
                    await self._read_events(reader)
                    self.error("stream ended")
            except Failure as error:
                self.error(f"stream {type(error).__name__}")
            finally:
                if writer is not None:
                    writer.close()
            await asyncio.sleep(RETRY)

    async def _read_events(self, reader: asyncio.StreamReader) -> None:
        text = ""
        while True:
            line = await reader.readline()
            if not line:
                return  # the server closed the connection
            size = int(line.split(b";")[0], 16)
            if size == 0:
                return
            text += (await reader.readexactly(size + 2))[:-2].decode().replace("\r\n", "\n")
            while "\n\n" in text:
                block, text = text.split("\n\n", 1)
                self._event(block)

    def _event(self, block: str) -> None:
        kind, data = "message", ""
        for line in block.split("\n"):
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
            elif line.startswith("id:"):
                self.last_event_id = line[3:].strip()
        if kind == "version":
            event = json.loads(data)
            if event["trip_id"] == self.trip_id:
                version = int(event["version"])
                self.event_versions.append(version)
                self.announced = max(self.announced, version)
                self.wake.set()
        elif kind == "access":
            self.error(f"access {json.loads(data)['change']}")

    def tasks(self) -> list[asyncio.Task[None]]:
        if self.kind == "long_poll":
            return [asyncio.create_task(self.long_poll())]
        return [asyncio.create_task(self.stream()), asyncio.create_task(self.puller())]


def snapshot_rows(snapshot: dict[str, Any]) -> dict[tuple[str, str], Any]:
    return {(row["entity"], str(row["id"])): row["data"] for row in snapshot["rows"]}


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def new_key() -> str:
    return str(uuid.uuid4())
