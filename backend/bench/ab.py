"""`make bench BENCH_BASELINE_REF=<git ref>`: this checkout against another commit, interleaved.

    BENCH_BASELINE_REF=9378a84 make bench
    BENCH_BASELINE_REF=main BENCH_SECONDS=5 BENCH_ROUNDS=3 BENCH_CONNECTIONS=32 make bench

The baseline is built once per commit: a detached git worktree under
.data/bench-refs/<sha>, with its own virtual environment (`pip install -e` of that commit's
backend, holding its dependencies to this environment's versions where it allows), reused
while its `.bench-ready` file exists. It runs against the same seeded database when its
migrations are this checkout's; otherwise against a second database of the same server,
migrated by its own migrations and seeded by its own `bench.seed` (the same deterministic
data set, in its schema). Its access token comes from its own POST /auth/login.

Each round runs every scenario once per side, in turn (current, baseline, and for the reads
the raw ceiling of bench/raw_app.py), on one uvicorn worker each, all started once; each
run is BENCH_SECONDS (4) after a BENCH_WARMUP (1s) warm-up. A scenario's ratio is
current / baseline requests/s, per round, reported as the median [min-max] of the rounds.
Results: bench-results/ab.json and ab.md. Only 127.0.0.1 is ever sent a request.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg2

from alembic import command
from app.core.db import REPO_DIR, alembic_config
from bench import profile
from bench.run import (
    OUT,
    READ_SCENARIOS,
    SECRET,
    WRITE_SCENARIOS,
    Request,
    Result,
    Scenario,
    _call,
    _measure,
    _psycopg_url,
    _scenarios,
    _start,
    _stop,
    compare_bodies,
    duration,
    same_body,
)
from bench.seed import PASSWORD, Seeded, ensure_seeded
from devtools.local_postgres import ensure_database

REFS_DIR = REPO_DIR / ".data" / "bench-refs"
# Where a commit keeps its migrations: before and after they moved into the app package.
MIGRATION_DIRS = ("backend/alembic/versions", "backend/app/migrations/versions")
MIN_ROUNDS = 3
SIDES = ("current", "baseline", "raw")

# Run by the baseline's own interpreter in its own backend folder: its migrations, its seed.
_MIGRATE_AND_SEED = """
import sys
from alembic import command
from app.core.db import alembic_config
from app.core.security import hash_password
from bench.seed import PASSWORD, ensure_seeded

url, scale = sys.argv[1], float(sys.argv[2])
command.upgrade(alembic_config(url), "head")
url = url.replace("postgresql+psycopg2://", "postgresql://")
ensure_seeded(url, scale, hash_password(PASSWORD))
"""


def _git(*args: str, repo: Path = REPO_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (git, arguments of ours)
        ["git", *args],  # noqa: S607
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )


def resolve_ref(ref: str, repo: Path = REPO_DIR) -> str:
    """The full sha of the commit `ref` names in this repository; SystemExit if none."""
    name = ref.strip()
    if not name or name.startswith("-"):
        raise SystemExit(f"BENCH_BASELINE_REF={ref!r} is not a git ref")
    done = _git(
        "rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}", repo=repo
    )
    if done.returncode != 0:
        raise SystemExit(
            f"BENCH_BASELINE_REF={ref!r} names no commit of {repo}"
            " (give a sha, branch or tag; fetch it first if it is only on a remote)"
        )
    return done.stdout.strip()


def migrations_at(sha: str, repo: Path = REPO_DIR) -> set[str]:
    """The migration files (names) a commit has."""
    done = _git("ls-tree", "-r", "--name-only", sha, "--", *MIGRATION_DIRS, repo=repo)
    return {Path(path).name for path in done.stdout.split() if path.endswith(".py")}


def current_migrations(root: Path = REPO_DIR) -> set[str]:
    """The migration files (names) of this checkout, as it is on disk."""
    return {path.name for folder in MIGRATION_DIRS for path in (root / folder).glob("*.py")}


@dataclass(frozen=True)
class Baseline:
    ref: str
    sha: str
    root: Path

    @property
    def backend(self) -> Path:
        return self.root / "backend"

    @property
    def python(self) -> str:
        return str(self.root / ".venv" / "bin" / "python")


def _constraints() -> str:
    """This environment's versions (`name==version` lines), for the baseline's pip."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=False,
    )
    return "".join(line + "\n" for line in done.stdout.splitlines() if "==" in line)


def build(ref: str) -> Baseline:
    """The baseline's worktree and virtual environment, built unless cached (by sha)."""
    sha = resolve_ref(ref)
    baseline = Baseline(ref=ref, sha=sha, root=REFS_DIR / sha)
    ready = baseline.root / ".bench-ready"
    if ready.exists():
        print(f"baseline {ref} ({sha[:12]}): reusing {baseline.root}")
        return baseline
    started = time.perf_counter()
    if baseline.root.exists():  # a build that did not finish
        _git("worktree", "remove", "--force", str(baseline.root))
        shutil.rmtree(baseline.root, ignore_errors=True)
    REFS_DIR.mkdir(parents=True, exist_ok=True)
    # --force: also when a deleted .data left the worktree registered (no prune: the
    # repository's other worktrees are not ours to tidy).
    added = _git("worktree", "add", "--force", "--detach", str(baseline.root), sha)
    if added.returncode != 0:
        raise SystemExit(f"git worktree add {sha} failed: {added.stderr}")
    print(f"baseline {ref} ({sha[:12]}): building a virtual environment in {baseline.root}")
    subprocess.run([sys.executable, "-m", "venv", str(baseline.root / ".venv")], check=True)  # noqa: S603
    constraints = baseline.root / ".bench-constraints.txt"
    constraints.write_text(_constraints())
    pip = [baseline.python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    held = subprocess.run([*pip, "-c", str(constraints), "-e", str(baseline.backend)], check=False)  # noqa: S603
    if held.returncode != 0:
        print("its dependencies do not fit this environment's versions: installing its own")
        subprocess.run([*pip, "-e", str(baseline.backend)], check=True)  # noqa: S603
    ready.write_text(f"{sha}\nbuilt in {time.perf_counter() - started:.0f} s\n")
    return baseline


def seeded_at(url: str) -> Seeded:
    """What the bench seed recorded in the database at `url` (its marker row)."""
    connection = psycopg2.connect(_psycopg_url(url))
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("SELECT meta FROM bench_marker")
            row = cursor.fetchone()
    finally:
        connection.close()
    if row is None:
        raise SystemExit(f"no bench data in {url}")
    return Seeded(**row[0])


def baseline_database(url: str, scale: float, baseline: Baseline) -> tuple[str, str]:
    """The baseline's database and why: "shared" when its migrations are this checkout's
    (same schema), else "own": a second database, its migrations, its seed."""
    if migrations_at(baseline.sha) == current_migrations():
        return url, "shared"
    name = f"tripsync_bench_{str(scale).replace('.', '_')}_{baseline.sha[:12]}"
    own = ensure_database(url, name)
    print(f"baseline {baseline.ref}: other migrations, so its own database {name}")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    seeded = subprocess.run(  # noqa: S603 (the baseline's interpreter)
        [baseline.python, "-c", _MIGRATE_AND_SEED, own, str(scale)],
        cwd=baseline.backend,
        env={**env, "DATABASE_URL": own, "SECRET_KEY": SECRET},
        check=False,
    )
    if seeded.returncode != 0:
        raise SystemExit(f"migrating and seeding {name} with {baseline.ref}'s code failed")
    return own, "own"


def login(base: str, email: str) -> str:
    """An access token of the bench user, from the server's own POST /auth/login."""
    form = f"username={urllib.parse.quote(email)}&password={PASSWORD}"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    status, body = _call(base, Request("POST", "/auth/login", form, headers))
    if status != 200:
        raise SystemExit(f"login on {base}: {status} {body[:300]!r}")
    token: str = json.loads(body)["access_token"]
    return token


# --- the summary ---------------------------------------------------------------------------


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max (of at least one value)."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def _side(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not rows:
        return None
    return {
        "rps": spread([r["rps"] for r in rows]),
        "p99_ms": spread([r["p99_ms"] for r in rows]),
        "errors": sum(r["errors"] for r in rows),
        "peak_rss_mb": max((m for r in rows for m in r["peak_rss_mb"]), default=0.0),
    }


def _paired(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[float]:
    """Our requests/s over theirs, round by round (rounds both sides ran)."""
    by_round = {r["round"]: r for r in theirs}
    return [
        r["rps"] / by_round[r["round"]]["rps"]
        for r in ours
        if r["round"] in by_round and by_round[r["round"]]["rps"] > 0
    ]


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per scenario and connection count: current / baseline requests/s per round as median
    [min-max], each side's requests/s, p99, errors and peak RSS, and current / raw ceiling
    (with whether the current code ever beat the ceiling in a round)."""
    keys = list(dict.fromkeys((r["scenario"], r["connections"]) for r in rows))
    summary = []
    for scenario, connections in keys:
        mine = [r for r in rows if (r["scenario"], r["connections"]) == (scenario, connections)]
        side = {
            name: sorted((r for r in mine if r["server"] == name), key=lambda r: r["round"])
            for name in SIDES
        }
        ratios = _paired(side["current"], side["baseline"])
        ceiling = _paired(side["current"], side["raw"])
        summary.append(
            {
                "scenario": scenario,
                "connections": connections,
                "rounds": len(ratios),
                "ratio": spread(ratios) if ratios else None,
                "current": _side(side["current"]),
                "baseline": _side(side["baseline"]),
                "raw": _side(side["raw"]),
                "current_over_raw": spread(ceiling) if ceiling else None,
                "beat_ceiling": any(value > 1 for value in ceiling),
            }
        )
    return summary


def _ratio_text(found: dict[str, float] | None) -> str:
    if found is None:
        return "-"
    return f"{found['median']:.2f} [{found['min']:.2f}-{found['max']:.2f}]"


def table(report: dict[str, Any]) -> str:
    """The summary as a Markdown table."""
    lines = [
        "| scenario | conns | current / baseline req/s, median [min-max] | current req/s"
        " | baseline req/s | p99 ms current / baseline | errors current / baseline"
        " | current / raw ceiling |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["summary"]:
        current, baseline = row["current"], row["baseline"]
        title = report["scenarios"].get(row["scenario"], row["scenario"])
        lines.append(
            f"| {title} | {row['connections']} | {_ratio_text(row['ratio'])}"
            f" | {current['rps']['median']:.1f} | {baseline['rps']['median']:.1f}"
            f" | {current['p99_ms']['median']:.1f} / {baseline['p99_ms']['median']:.1f}"
            f" | {current['errors']} / {baseline['errors']}"
            f" | {_ratio_text(row['current_over_raw'])} |"
        )
    return "\n".join(lines) + "\n"


def ceiling_warnings(summary: list[dict[str, Any]]) -> list[str]:
    return [
        f"WARNING: TripSync beat the raw ceiling on {row['scenario']} (c={row['connections']})"
        " in a round: the baseline is wrong"
        for row in summary
        if row["beat_ceiling"]
    ]


# --- the run --------------------------------------------------------------------------------


def _env_list(name: str, default: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


def _rounds() -> int:
    rounds = int(os.environ.get("BENCH_ROUNDS", str(MIN_ROUNDS)))
    if rounds == 0 and os.environ.get("BENCH_PROFILE"):
        return 0  # profiles only
    if rounds < MIN_ROUNDS:
        raise SystemExit(f"BENCH_ROUNDS={rounds}: an A/B run takes at least {MIN_ROUNDS} rounds")
    return rounds


def _check_status(label: str, base: str, scenarios: list[Scenario]) -> dict[str, bytes]:
    """Each scenario's first request once: the expected status, else stop. Its bodies."""
    bodies = {}
    for scenario in scenarios:
        status, body = _call(base, scenario.requests[0])
        if status != scenario.expected:
            raise SystemExit(f"{label} {scenario.name}: {status} {body[:300]!r}")
        bodies[scenario.name] = body
    return bodies


def _interleaved(
    servers: dict[str, tuple[str, int]],
    plans: dict[str, list[Scenario]],
    connections: list[int],
    rounds: int,
) -> Iterator[dict[str, Any]]:
    """Round by round, scenario by scenario: each side in turn (current, baseline, raw)."""
    names = [s.name for s in plans["current"]]
    for number in range(1, rounds + 1):
        print(f"--- round {number} of {rounds}", flush=True)
        for index, name in enumerate(names):
            for count in connections:
                for side in SIDES:
                    scenario = next((s for s in plans.get(side, []) if s.name == name), None)
                    if scenario is None or side not in servers:
                        continue
                    base, pid = servers[side]
                    result: Result = _measure(side, 1, base, pid, scenario, count)
                    yield {**asdict(result), "round": number, "order": index}


def _profiles(
    servers: dict[str, tuple[str, int]], plans: dict[str, list[Scenario]], seconds: int
) -> list[profile.Profile]:
    """BENCH_PROFILE=<seconds>: each scenario profiled on each commit's worker, in turn."""
    found = []
    for name in (s.name for s in plans["current"]) if seconds > 0 else ():
        for side in ("current", "baseline"):
            scenario = next(s for s in plans[side] if s.name == name)
            base, pid = servers[side]
            print(f"--- profiling {side} {name} ({seconds} s)", flush=True)
            found.append(profile.record(side, pid, base, scenario, seconds))
    return found


def run(url: str, ref: str) -> dict[str, Any]:
    from app.core.config import get_settings
    from app.core.security import hash_password

    os.environ["SECRET_KEY"] = SECRET
    os.environ.setdefault("BENCH_SECONDS", "4")
    os.environ.setdefault("BENCH_WARMUP", "1s")
    get_settings.cache_clear()
    rounds = _rounds()
    baseline = build(ref)
    scale = float(os.environ.get("BENCH_SCALE", "1"))
    command.upgrade(alembic_config(url), "head")
    data = ensure_seeded(_psycopg_url(url), scale, hash_password(PASSWORD))
    baseline_url, database = baseline_database(url, scale, baseline)
    baseline_data = data if database == "shared" else seeded_at(baseline_url)
    wanted = _env_list("BENCH_SCENARIOS", ",".join(READ_SCENARIOS + WRITE_SCENARIOS))
    connections = [int(c) for c in _env_list("BENCH_CONNECTIONS", "32,256")]
    current = [s for s in _scenarios(data, url) if s.name in wanted]
    reads = [s for s in current if s.name in READ_SCENARIOS]
    (OUT / "lua").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with ExitStack() as stack:

        def serve(app: str, database_url: str, **where: Any) -> tuple[str, int]:
            server, base = _start(app, 1, database_url, **where)
            stack.callback(_stop, server)
            return base, server.pid

        servers = {
            "current": serve("app.main:app", url),
            "baseline": serve(
                "app.main:app", baseline_url, python=baseline.python, cwd=baseline.backend
            ),
        }
        if reads:
            servers["raw"] = serve("bench.raw_app:app", url)
        token = login(servers["baseline"][0], baseline_data.user_email)
        plans = {
            "current": current,
            "baseline": [
                s for s in _scenarios(baseline_data, baseline_url, token) if s.name in wanted
            ],
        }
        bodies = compare_bodies(servers["raw"][0], servers["current"][0], reads) if reads else {}
        plans["raw"] = [s for s in reads if bodies[s.name] != "differ"]
        ours = _check_status("current", servers["current"][0], current)
        theirs = _check_status("baseline", servers["baseline"][0], plans["baseline"])
        # Informative: how both commits answer the reads (an API change shows here; with its
        # own database, seeded at another time, the baseline's timestamps differ anyway).
        alike = {
            s.name: {
                "same": same_body(theirs[s.name], ours[s.name]),
                "bytes": [len(ours[s.name]), len(theirs[s.name])],
            }
            for s in reads
            if s.name in theirs
        }
        rows = list(_interleaved(servers, plans, connections, rounds))
        profiles = _profiles(servers, plans, int(os.environ.get("BENCH_PROFILE") or 0))
    summary = summarize(rows)
    return {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "cores": os.cpu_count(),
        "scale": scale,
        "seconds_per_run": duration(),
        "warmup": os.environ.get("BENCH_WARMUP"),
        "rounds": rounds,
        "connections": connections,
        "measured_seconds": round(time.perf_counter() - started, 1),
        "current": {"commit": _git("rev-parse", "HEAD").stdout.strip(), "dirty": _dirty()},
        "baseline": {"ref": ref, "commit": baseline.sha, "database": database},
        "scenarios": {s.name: s.title for s in current},
        "raw_bodies": bodies,
        "baseline_bodies": alike,
        "summary": summary,
        "results": rows,
        "profiles": [asdict(p) for p in profiles],
        "profile_text": profile.markdown(profiles, {s.name: s.title for s in current}),
    }


def _dirty() -> bool:
    return bool(_git("status", "--porcelain", "--", "backend").stdout.strip())


def main(url: str) -> None:
    report = run(url, os.environ["BENCH_BASELINE_REF"])
    OUT.mkdir(exist_ok=True)
    (OUT / "ab.json").write_text(json.dumps(report, indent=2))
    text = table(report) if report["rounds"] else ""
    if report["profile_text"]:
        text += "\n### Profiles (py-spy --gil, 32 connections)\n\n" + report["profile_text"]
    (OUT / "ab.md").write_text(text)
    base = report["baseline"]
    modified = ", modified" if report["current"]["dirty"] else ""
    print(
        f"\ncurrent ({report['current']['commit'][:12]}{modified})"
        f" against {base['ref']} ({base['commit'][:12]}, {base['database']} database),"
        f" {report['rounds']} rounds of {report['seconds_per_run']} per run, 1 worker each:\n"
    )
    print(text)
    for warning in ceiling_warnings(report["summary"]):
        print(warning)
    print(f"written: {OUT}/ab.json, ab.md")
