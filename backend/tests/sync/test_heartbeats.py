"""A stream's one timer: a heartbeat after a quiet period, and a client that stopped reading
dropped; spread over the period rather than in step after a commit."""

import asyncio
import contextlib
import uuid

import pytest

from app.feed import events
from app.sync.live import Subscription, VersionNotice

PERIOD = 0.05


@pytest.fixture(autouse=True)
def short_period(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "HEARTBEAT_SECONDS", PERIOD)


def test_a_quiet_stream_is_nudged_once_a_period_and_a_busy_one_is_not() -> None:
    async def scenario() -> tuple[int, int]:
        quiet, busy = Subscription(uuid.uuid4()), Subscription(uuid.uuid4())
        loop = asyncio.get_running_loop()
        quiet_ticker = events._Ticker(quiet, None, loop)
        busy_ticker = events._Ticker(busy, None, loop)
        nudges = {"quiet": 0, "busy": 0}
        deadline = loop.time() + PERIOD * 6
        while loop.time() < deadline:
            busy_ticker.sends += 1  # the busy one sends all the time
            for name, subscription in (("quiet", quiet), ("busy", busy)):
                if subscription.nudged:
                    nudges[name] += 1
                    subscription.nudged = False
            await asyncio.sleep(PERIOD / 10)
        quiet_ticker.stop()
        busy_ticker.stop()
        return nudges["quiet"], nudges["busy"]

    quiet, busy = asyncio.run(scenario())
    assert 4 <= quiet <= 12  # every period from a first tick within the first period
    assert busy == 0


def test_the_first_heartbeats_are_spread_over_the_period() -> None:
    # When each ticker's first tick is due, not when it was observed: on a loaded machine the
    # loop can wake late and run many due timers at once, which says nothing of their spread.
    async def first_ticks() -> list[float]:
        loop = asyncio.get_running_loop()
        subscriptions = [Subscription(uuid.uuid4()) for _ in range(200)]
        tickers, due = [], []
        for subscription in subscriptions:  # each one's delay from its own start
            created = loop.time()
            ticker = events._Ticker(subscription, None, loop)
            tickers.append(ticker)
            due.append(ticker._timer.when() - created)
        deadline = loop.time() + PERIOD * 40
        while not all(s.nudged for s in subscriptions) and loop.time() < deadline:
            await asyncio.sleep(PERIOD / 50)
        assert all(s.nudged for s in subscriptions)  # and each of them did tick
        for ticker in tickers:
            ticker.stop()
        return sorted(due)

    ticks = asyncio.run(first_ticks())
    assert ticks[0] >= PERIOD * 0.5 - 0.005
    assert ticks[-1] <= PERIOD + 0.005
    assert ticks[-1] - ticks[0] >= PERIOD * 0.3  # not all at once


def test_a_send_stuck_for_two_periods_cancels_the_writer_and_a_slow_one_does_not() -> None:
    async def scenario() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        stuck_forever = asyncio.Event()

        async def writer(ticker_box: list[events._Ticker], progress: bool) -> None:
            ticker = ticker_box[0]
            ticker.sending = True
            while progress and loop.time() < started + PERIOD * 6:
                await asyncio.sleep(PERIOD / 5)
                ticker.sends += 1  # slow, but moving
            if not progress:
                await stuck_forever.wait()

        started = loop.time()
        results = []
        for progress in (False, True):
            box: list[events._Ticker] = []
            task = loop.create_task(writer(box, progress))
            box.append(events._Ticker(Subscription(uuid.uuid4()), task, loop))
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), PERIOD * 8)
            box[0].stop()
            results.append(box[0].dropped and task.cancelled())
        return results[0], results[1]

    stuck_dropped, slow_dropped = asyncio.run(scenario())
    assert stuck_dropped
    assert not slow_dropped


def test_a_nudge_wakes_the_stream_with_nothing_to_tell_and_notices_win() -> None:
    subscription = Subscription(uuid.uuid4())
    woken: list[str] = []
    subscription.on_wake = lambda: woken.append("woken")
    subscription.nudge()
    assert woken == ["woken"]
    assert subscription.nudged
    assert subscription.take() == []
    assert not subscription.nudged  # one heartbeat per nudge

    notice = VersionNotice(uuid.uuid4(), 3)
    subscription.put(notice)
    subscription.nudge()
    assert subscription.take() == [notice]
    assert not subscription.nudged  # something is written anyway: no heartbeat besides
    assert len(woken) == 3
