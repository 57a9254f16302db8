"""Where a worker's time goes: `py-spy record --gil` while wrk runs a scenario.

With `BENCH_PROFILE=<seconds>`, `make bench BENCH_BASELINE_REF=...` ends with one profiled run
per scenario and side (current, baseline): wrk at 32 connections for that many seconds while
py-spy samples the one worker, only the thread holding the GIL (`--gil`): what the process
spends its Python time on, not threads waiting for the database. Each profile is kept as
collapsed stacks (`bench-results/profiles/<side>-<scenario>.txt`, for flame-graph tools) and
summarised: the frames with the largest share of the samples, inclusive (the frame or anything
it called) and on their own (self).
"""

import shutil
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.run import OUT, Scenario, _wrk

PROFILES = OUT / "profiles"
TOP = 12
# Files whose frames are on nearly every stack (the interpreter's start, uvicorn's and the
# event loop's run, a worker thread's loop): left out of the inclusive ranking, which would
# otherwise list only them.
_RUNTIME = (
    "<frozen runpy>",
    "threading.py",
    "click/core.py",
    "uvicorn/main.py",
    "uvicorn/server.py",
    "uvicorn/_compat.py",
    "asyncio/runners.py",
    "asyncio/base_events.py",
    "asyncio/events.py",
)
_RUNTIME_FRAMES = tuple(f"{name})" for name in _RUNTIME)  # how `_frame` ends for them


@dataclass(frozen=True)
class Profile:
    side: str
    scenario: str
    samples: int
    inclusive: list[tuple[str, float]]  # frame, share of the samples (0..1)
    own: list[tuple[str, float]]
    packages: list[tuple[str, float]]  # own time by package


def _path(raw: str) -> str:
    """The file of a py-spy frame, `name (path/to/file.py:12)`."""
    return raw.rsplit(" (", 1)[-1].rstrip(")").rsplit(":", 1)[0]


def _frame(raw: str) -> str:
    """`name (path/to/file.py:12)` as `name (to/file.py)`: one entry per function, not per
    line."""
    path = _path(raw)
    tail = "/".join(Path(path).parts[-2:]) if path else "?"
    return f"{raw.partition(' (')[0]} ({tail})"


def _package(raw: str) -> str:
    """The package of a frame's file, as py-spy names it (`sqlalchemy/orm/loading.py`,
    `app/core/db.py`; the standard library's `threading.py`, `asyncio/tasks.py`)."""
    path = _path(raw)
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    first = path.lstrip("/").split("/", 1)[0]
    return first.removesuffix(".py") or "?"


def summarize(collapsed: str, side: str, scenario: str, top: int = TOP) -> Profile:
    """Collapsed stacks (`frame;frame;frame count` per line) to the top frames."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        raw = [f for f in stack.split(";") if f]
        if not raw:
            continue
        frames = [_frame(f) for f in raw]
        for frame in {f for f in frames if not f.endswith(_RUNTIME_FRAMES)}:
            inclusive[frame] += count
        own[frames[-1]] += count
        packages[_package(raw[-1])] += count
    share = (lambda n: n / total) if total else (lambda n: 0.0)
    return Profile(
        side=side,
        scenario=scenario,
        samples=total,
        inclusive=[(f, share(n)) for f, n in inclusive.most_common(top)],
        own=[(f, share(n)) for f, n in own.most_common(top)],
        packages=[(p, share(n)) for p, n in packages.most_common()],
    )


def record(side: str, pid: int, base: str, scenario: Scenario, seconds: int) -> Profile:
    """Profile the worker `pid` while wrk runs `scenario` at 32 connections for `seconds`."""
    beside = Path(sys.executable).parent / "py-spy"  # installed in this environment
    py_spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("BENCH_PROFILE needs py-spy: pip install py-spy")
    PROFILES.mkdir(parents=True, exist_ok=True)
    out = PROFILES / f"{side}-{scenario.name}.txt"
    sampler = subprocess.Popen(  # noqa: S603
        [
            py_spy,
            "record",
            "--gil",
            "--format",
            "raw",
            "--rate",
            "250",
            "--nonblocking",
            "--duration",
            str(seconds),
            "--pid",
            str(pid),
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    failure: list[BaseException] = []

    def load() -> None:  # wrk outlasts the sampler; no warm-up, the rounds did that
        try:
            _wrk(base, scenario, 32, pid, seconds=f"{seconds + 1}s", warmup="0s")
        except BaseException as error:
            failure.append(error)

    loader = threading.Thread(target=load)
    loader.start()
    _, errors = sampler.communicate(timeout=seconds + 60)
    loader.join(timeout=seconds + 60)
    if sampler.returncode != 0 or not out.exists():
        raise SystemExit(f"py-spy failed on {side} {scenario.name}: {errors.decode()[-500:]}")
    if failure:
        raise failure[0]
    return summarize(out.read_text(), side, scenario.name)


def markdown(profiles: list[Profile], titles: dict[str, str]) -> str:
    """Each scenario's top frames, current beside baseline."""
    lines: list[str] = []
    for scenario in dict.fromkeys(p.scenario for p in profiles):
        lines.append(f"#### {titles.get(scenario, scenario)}\n")
        for profile in (p for p in profiles if p.scenario == scenario):
            lines.append(f"{profile.side} ({profile.samples} samples with the GIL held):\n")
            by_package = ", ".join(
                f"{name} {share:.0%}" for name, share in profile.packages[:TOP] if share >= 0.01
            )
            lines.append(f"Own time by package: {by_package}.\n")
            lines.append("| inclusive | frame | | self | frame |")
            lines.append("|---|---|---|---|---|")
            for (frame, share), (own_frame, own_share) in zip(
                profile.inclusive, profile.own, strict=False
            ):
                lines.append(f"| {share:.0%} | `{frame}` | | {own_share:.0%} | `{own_frame}` |")
            lines.append("")
    return "\n".join(lines)


def main(folder: Path) -> None:
    """Summarise the collapsed stacks kept in `folder` again (`<side>-<scenario>.txt`)."""
    found = []
    for path in sorted(folder.glob("*-*.txt"), key=lambda p: (p.stem.split("-", 1)[1], p.stem)):
        side, scenario = path.stem.split("-", 1)
        found.append(summarize(path.read_text(), side, scenario))
    print(markdown(found, {}))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else PROFILES)
