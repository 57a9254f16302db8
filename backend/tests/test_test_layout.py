"""The test suite's own layout: test data made in one factories module, test modules
importing only support modules (never another test module or a conftest)."""

import ast
from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# The fault tests build their data through real API processes (faults/harness.py), not the
# in-process client; tests_e2e, outside this folder, through a browser.
OWN_FACTORIES = TESTS / "faults"
FACTORY_PREFIXES = ("create_", "make_", "add_")


def _parsed(paths: list[Path]) -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(), filename=str(path)) for path in paths}


def _is_test_module(name: str) -> bool:
    """`tests.sync.test_feed` and `tests.expenses.conftest` are test modules."""
    last = name.rsplit(".", 1)[-1]
    return last.startswith("test_") or last == "conftest"


def _imported_modules(path: Path, tree: ast.Module) -> list[str]:
    """Every module `path` imports, relative imports resolved, `from p import m` as `p.m`."""
    package = ".".join(path.relative_to(TESTS.parent).with_suffix("").parts[:-1])
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, *([base] if base else [])])
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def _test_and_conftest_files() -> list[Path]:
    return [p for p in TESTS.rglob("*.py") if p.name.startswith("test_") or p.name == "conftest.py"]


def test_the_checks_find_the_test_modules() -> None:
    """The checks below look at these files; make sure they find them."""
    found = sorted(p.relative_to(TESTS).as_posix() for p in _test_and_conftest_files())
    assert "conftest.py" in found
    assert "trips/test_router.py" in found
    assert "test_test_layout.py" in found


def test_no_test_module_imports_another_test_module_or_a_conftest() -> None:
    offenders = [
        f"{path.relative_to(TESTS)} imports {name}"
        for path, tree in _parsed(_test_and_conftest_files()).items()
        for name in _imported_modules(path, tree)
        if name.startswith("tests.") and _is_test_module(name)
    ]
    assert offenders == [], "move shared helpers to tests/factories.py or a support module"


def test_each_factory_is_defined_in_one_module() -> None:
    where: dict[str, set[Path]] = defaultdict(set)
    sources = [p for p in TESTS.rglob("*.py") if OWN_FACTORIES not in p.parents]
    for path, tree in _parsed(sources).items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                name = node.name.lstrip("_")  # a private copy is still a copy
                if name.startswith(FACTORY_PREFIXES):
                    where[name].add(path.relative_to(TESTS))
    duplicated = {name: sorted(map(str, paths)) for name, paths in where.items() if len(paths) > 1}
    assert duplicated == {}, "keep one definition, in tests/factories.py"


def test_the_import_check_sees_every_form() -> None:
    """Absolute, `from package import module` and relative imports all count."""
    path = TESTS / "sync" / "test_example.py"
    source = (
        "from tests.trips.test_router import create_trip\n"
        "from tests.expenses import conftest\n"
        "from .test_feed import Replica\n"
        "import tests.itinerary.test_items\n"
        "from tests import factories, support\n"
    )
    names = _imported_modules(path, ast.parse(source))
    assert [n for n in names if n.startswith("tests.") and _is_test_module(n)] == [
        "tests.trips.test_router",
        "tests.expenses.conftest",
        "tests.sync.test_feed",
        "tests.itinerary.test_items",
    ]
