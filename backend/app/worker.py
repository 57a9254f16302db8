"""`python -m app.worker`: the process that sends the outbox's mail (see app.outbox.worker) and,
when FX_SOURCE_URL is set, fetches ECB's reference rates once a day (see app.fx.daily).

Stops cleanly on SIGTERM or Ctrl-C: the message being sent is settled, the rest of its batch
handed back. `--once` sends what is due now (and fetches the rates if they are due) and exits
(e.g. from cron or a test).
"""

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from app.core.config import get_settings
from app.core.logs import configure_logging
from app.fx.daily import DailyRates
from app.outbox.worker import OutboxWorker, drain


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.worker", description=__doc__)
    parser.add_argument("--once", action="store_true", help="send what is due, then exit")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings)  # LOG_FORMAT=json: the worker's lines are JSON too
    worker = OutboxWorker(settings)
    rates = DailyRates(settings)
    if args.once:
        rates.run_once()
        result = drain(worker)
        print(f"sent {result.sent}, retrying {result.retried}, dead {result.dead}")
        return 1 if result.outage else 0

    def stop(signum: int, _: FrameType | None) -> None:
        worker.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if settings.FX_SOURCE_URL is not None:
        # A daemon beside the mail loop: it only waits on the network and its own transaction.
        threading.Thread(target=rates.run, args=(worker.stop,), name="fx", daemon=True).start()
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
