"""Run a callback on the event loop when the process is told to stop, before uvicorn waits.

uvicorn's graceful shutdown stops accepting connections, then waits for every open response
to finish before it runs the lifespan's shutdown. An event stream never finishes by itself, so
a worker with open streams would wait until killed. uvicorn takes SIGINT and SIGTERM with
`signal.signal` (so that it can restore the previous handlers) and does not tell the app;
`on_exit_signal` wraps its handler: uvicorn's runs first, as before, and then the callback is
scheduled on the loop, where it ends the streams (`Listener.close_streams`). Clients reconnect
to another worker with their last event id and lose nothing.
"""

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def on_exit_signal(callback: Callable[[], None]) -> Iterator[None]:
    """While inside, SIGINT/SIGTERM also schedule `callback` on the running loop."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread can handle signals (and a test client runs elsewhere)
        return
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def handle(signum: int, frame: FrameType | None) -> None:
        handler = previous.get(signum)
        if callable(handler):
            handler(signum, frame)
        loop.call_soon_threadsafe(callback)

    for signum in EXIT_SIGNALS:
        previous[signum] = signal.signal(signum, handle)
    try:
        yield
    finally:
        for number, handler in previous.items():
            if signal.getsignal(number) is handle:  # nobody replaced it since: put theirs back
                signal.signal(number, handler)
