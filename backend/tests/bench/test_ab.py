"""`make bench BENCH_BASELINE_REF=...`: the ratios and their summary, and which commit a ref
names (no load, no build)."""

import subprocess
from typing import Any

import pytest

from app.core.db import REPO_DIR
from bench.ab import (
    ceiling_warnings,
    current_migrations,
    migrations_at,
    resolve_ref,
    spread,
    summarize,
    table,
)


def _row(
    server: str, round_: int, rps: float, p99: float = 10.0, errors: int = 0
) -> dict[str, Any]:
    return {
        "server": server,
        "round": round_,
        "scenario": "get_trip",
        "connections": 32,
        "rps": rps,
        "p99_ms": p99,
        "errors": errors,
        "peak_rss_mb": [100.0 + round_],
    }


def test_the_ratio_is_current_over_baseline_round_by_round_as_median_min_max() -> None:
    rows = [
        _row("current", 1, 300.0, p99=20.0),
        _row("baseline", 1, 200.0, p99=40.0, errors=1),
        _row("raw", 1, 600.0),
        _row("current", 2, 330.0, p99=22.0),
        _row("baseline", 2, 100.0, p99=50.0),
        _row("raw", 2, 660.0),
        _row("current", 3, 400.0, p99=30.0, errors=2),
        _row("baseline", 3, 250.0, p99=45.0),
        _row("raw", 3, 500.0),
    ]
    [found] = summarize(rows)
    # Rounds: 1.5, 3.3, 1.6: the median of the ratios, not the ratio of the medians (1.65).
    assert found["ratio"] == pytest.approx({"median": 1.6, "min": 1.5, "max": 3.3})
    assert found["rounds"] == 3
    assert found["current"]["rps"]["median"] == 330.0
    assert found["baseline"]["p99_ms"]["median"] == 45.0
    assert (found["current"]["errors"], found["baseline"]["errors"]) == (2, 1)
    assert found["current"]["peak_rss_mb"] == 103.0
    assert found["current_over_raw"] == pytest.approx({"median": 0.5, "min": 0.5, "max": 0.8})
    assert not found["beat_ceiling"]
    assert ceiling_warnings([found]) == []
    text = table({"summary": [found], "scenarios": {"get_trip": "get one trip"}})
    assert "| get one trip | 32 | 1.60 [1.50-3.30] | 330.0 | 200.0 | 22.0 / 45.0 | 2 / 1 |" in text
    assert text.rstrip().endswith("| 0.50 [0.50-0.80] |")


def test_beating_the_ceiling_in_any_round_is_a_warning() -> None:
    rows = [_row("current", 1, 300.0), _row("raw", 1, 290.0), _row("current", 2, 300.0)]
    rows += [_row("raw", 2, 600.0)]
    [found] = summarize(rows)
    assert found["beat_ceiling"]
    assert found["ratio"] is None  # no baseline ran: no ratio, rather than a made-up one
    [warning] = ceiling_warnings([found])
    assert "beat the raw ceiling on get_trip" in warning
    assert "the baseline is wrong" in warning


def test_rounds_pair_by_number_and_skip_a_zero_baseline() -> None:
    rows = [_row("current", 1, 100.0), _row("baseline", 1, 0.0), _row("current", 2, 100.0)]
    rows += [_row("baseline", 2, 50.0), _row("baseline", 3, 10.0)]
    [found] = summarize(rows)
    assert found["ratio"] == {"median": 2.0, "min": 2.0, "max": 2.0}
    assert found["rounds"] == 1
    assert spread([3.0, 1.0, 2.0, 10.0]) == {"median": 2.5, "min": 1.0, "max": 10.0}


def _git_head() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_DIR, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.skip("not a git checkout")
    return done.stdout.strip()


def test_a_ref_resolves_to_its_full_sha() -> None:
    head = _git_head()
    assert resolve_ref("HEAD") == head
    assert resolve_ref(head[:10]) == head


@pytest.mark.parametrize(
    "ref", ["no-such-branch-anywhere", "0000000", "", "--all", "HEAD:README.md"]
)
def test_an_unknown_ref_is_a_clear_error(ref: str) -> None:
    _git_head()
    with pytest.raises(SystemExit, match="BENCH_BASELINE_REF"):
        resolve_ref(ref)


def test_the_migrations_of_a_commit_are_read_from_git() -> None:
    head = resolve_ref(_git_head())
    committed = migrations_at(head)
    assert committed
    assert all(name.endswith(".py") for name in committed)
    assert committed <= current_migrations()


def test_the_sides_take_turns_within_each_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """A, B (and the raw ceiling where it answers), A, B...: never a side's rounds in a row."""
    from bench import ab
    from bench.run import Result, Scenario

    calls: list[tuple[str, str, int]] = []

    def measure(
        server: str, workers: int, base: str, pid: int, scenario: Scenario, connections: int
    ) -> Result:
        calls.append((server, scenario.name, connections))
        return Result(
            server, workers, scenario.name, connections, 1.0, 1, 1.0, 1, 1, 1, 1, 0, {}, []
        )

    monkeypatch.setattr(ab, "_measure", measure)
    read, write = Scenario("get_trip", "read", []), Scenario("create_item", "write", [])
    servers = {side: (f"http://127.0.0.1:{n}", n) for n, side in enumerate(ab.SIDES)}
    plans = {"current": [read, write], "baseline": [read, write], "raw": [read]}
    rows = list(ab._interleaved(servers, plans, [32], rounds=3))
    one_round = [
        ("current", "get_trip", 32),
        ("baseline", "get_trip", 32),
        ("raw", "get_trip", 32),
        ("current", "create_item", 32),
        ("baseline", "create_item", 32),
    ]
    assert calls == one_round * 3
    assert [row["round"] for row in rows] == [1] * 5 + [2] * 5 + [3] * 5
