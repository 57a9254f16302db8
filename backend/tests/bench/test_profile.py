"""`make bench BENCH_PROFILE=...`: collapsed py-spy stacks summarised into shares."""

from bench.profile import markdown, summarize

STACKS = "\n".join(
    [
        # 6 samples in a route that builds ORM rows, under the runtime's frames.
        "_run_module_as_main (<frozen runpy>:198);run (uvicorn/server.py:67);"
        "get_trip (app/trips/router.py:70);_instance_processor "
        "(/venv/lib/python3.11/site-packages/sqlalchemy/orm/loading.py:1020) 6",
        # 3 samples in a thread hop.
        "_bootstrap (threading.py:1002);WorkerThread.run (anyio/_backends/_asyncio.py:900);"
        "notify (threading.py:369) 3",
        # 1 sample of the route itself.
        "_run_module_as_main (<frozen runpy>:198);get_trip (app/trips/router.py:71) 1",
        "not a stack line",
    ]
)


def test_shares_are_of_all_samples_and_runtime_frames_are_left_out_of_inclusive() -> None:
    profile = summarize(STACKS, "current", "get_trip")
    assert profile.samples == 10
    inclusive = dict(profile.inclusive)
    assert inclusive["get_trip (trips/router.py)"] == 0.7  # two lines of one function
    assert not any("runpy" in frame or "threading" in frame for frame in inclusive)
    own = dict(profile.own)
    assert own["_instance_processor (orm/loading.py)"] == 0.6
    assert own["notify (threading.py)"] == 0.3  # self time keeps every frame
    assert dict(profile.packages) == {"sqlalchemy": 0.6, "threading": 0.3, "app": 0.1}


def test_markdown_names_each_scenario_once_and_each_side() -> None:
    text = markdown(
        [summarize(STACKS, "current", "get_trip"), summarize(STACKS, "baseline", "get_trip")],
        {"get_trip": "get one trip"},
    )
    assert text.count("#### get one trip") == 1
    assert "current (10 samples" in text
    assert "baseline (10 samples" in text
    assert "Own time by package: sqlalchemy 60%, threading 30%, app 10%." in text
