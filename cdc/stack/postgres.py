"""The local PostgreSQL 15 cluster: our own data directory, logical decoding, the source databases.

initdb and pg_ctl refuse to run as root, so when goldstream runs as root (CI, containers) they run as
the ``postgres`` OS user via ``runuser``, and ``<state>/pg`` is owned by that user. Run as a normal
user, they run as that user.
"""

from __future__ import annotations

import os
import pwd
import re
import stat
import subprocess
import time
from pathlib import Path

import psycopg
from psycopg import sql

from cdc.pg import admin_dsn, socket_dir
from cdc.stack import proc
from cdc.stack.paths import StackPaths, pg_bin
from core.errors import ConfigError, TerminalError
from core.settings import Settings

PUBLICATION = "goldstream_pub"
_INCLUDE_LINE = "include_if_exists = 'goldstream.conf'"
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _is_root() -> bool:
    return os.geteuid() == 0


def _as_owner(argv: list[str]) -> list[str]:
    """Run ``argv`` as the cluster owner: ``postgres`` when we are root, else ourselves."""
    if _is_root():
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def _owner_ids() -> tuple[int, int] | None:
    if not _is_root():
        return None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise ConfigError(
            "postgres: running as root but there is no `postgres` OS user to own the cluster "
            "(install postgresql-15, or run as a normal user)"
        ) from exc
    return entry.pw_uid, entry.pw_gid


def _bin(name: str) -> str:
    path = pg_bin() / name
    if not path.is_file():
        raise ConfigError(
            f"postgres: {path} not found; install postgresql-15 (scripts/bootstrap.sh) "
            "or set GOLDSTREAM_PG_BIN"
        )
    return str(path)


def _run(argv: list[str], what: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise TerminalError(f"postgres: {what} failed (exit {result.returncode}): {' '.join(argv)}\n{output}")
    return result


def render_conf(settings: Settings, paths: StackPaths) -> str:
    """``goldstream.conf`` (included by postgresql.conf) from ``infra/postgres/postgresql.conf``."""
    return proc.render_template(
        paths.pg_conf_template,
        host=settings.postgres.host,
        port=settings.postgres.port,
        socket_dir=paths.pg_run,
    )


def _make_traversable(folder: Path, echo: proc.Echo) -> None:
    # The postgres user must be able to walk down to its data directory; a checkout under a 0700
    # home directory would otherwise fail with a bare "Permission denied" from initdb.
    for parent in reversed(folder.parents):
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(parent, mode | stat.S_IXOTH)
            echo(f"postgres: added o+x to {parent} so the postgres user can reach {folder}")


def _prepare_dirs(paths: StackPaths, echo: proc.Echo) -> None:
    paths.pg_root.mkdir(parents=True, exist_ok=True)
    paths.pg_run.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.pg_root, 0o755)
    os.chmod(paths.pg_run, 0o755)  # clients of any user need to reach the socket
    ids = _owner_ids()
    if ids is not None:
        _make_traversable(paths.pg_root, echo)
        for folder in (paths.pg_root, paths.pg_run):
            os.chown(folder, *ids)
        if paths.pg_log.exists():
            os.chown(paths.pg_log, *ids)


def _write_owned(path: Path, text: str, mode: int = 0o600) -> bool:
    """Write ``text`` to ``path`` owned by the cluster owner; True if the content changed."""
    old = path.read_text(encoding="utf-8") if path.exists() else None
    if old == text:
        return False
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    ids = _owner_ids()
    if ids is not None:
        os.chown(path, *ids)
    return True


def init_cluster(settings: Settings, paths: StackPaths, echo: proc.Echo) -> bool:
    """Create the cluster with initdb if there is none; True if it was created now."""
    _prepare_dirs(paths, echo)
    if (paths.pg_data / "PG_VERSION").is_file():
        return False
    if paths.pg_data.exists() and any(paths.pg_data.iterdir()):
        raise TerminalError(
            f"postgres: {paths.pg_data} exists and is not a cluster (no PG_VERSION); "
            "remove it or run `goldstream stack down --purge`"
        )
    echo(f"postgres: initdb {paths.pg_data}")
    argv = [
        _bin("initdb"),
        "-D",
        str(paths.pg_data),
        "-U",
        settings.postgres.superuser,
        "-E",
        "UTF8",
        "--locale=C.UTF-8",
        # Local socket: trust (only this checkout can reach <state>/pg/run). TCP: passwords.
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
    ]
    _run(_as_owner(argv), "initdb")
    conf = paths.pg_data / "postgresql.conf"
    with conf.open("a", encoding="utf-8") as fh:
        fh.write(f"\n# goldstream: listen address, socket dir, logical decoding\n{_INCLUDE_LINE}\n")
    return True


def configure(settings: Settings, paths: StackPaths) -> bool:
    """Write goldstream.conf and pg_hba.conf into the data dir; True if either changed."""
    changed = _write_owned(paths.pg_data / "goldstream.conf", render_conf(settings, paths))
    hba = paths.pg_hba_template.read_text(encoding="utf-8")
    changed = _write_owned(paths.pg_data / "pg_hba.conf", hba) or changed
    return changed


def running_pid(paths: StackPaths) -> int | None:
    """The postmaster pid from ``postmaster.pid`` if that process is alive, else None."""
    pid = proc.read_pid(paths.pg_pidfile)
    if pid is None or not proc.pid_alive(pid):
        return None
    args = " ".join(proc.cmdline(pid))
    # The postmaster's argv is `.../postgres -D <data>`; anything else means the pid was reused.
    return pid if "postgres" in args else None


def start(settings: Settings, paths: StackPaths, timeout: float) -> int:
    """Start the cluster (pg_ctl -w: returns when it accepts connections); returns the postmaster pid."""
    proc.ensure_port_free("postgres", settings.postgres.host, settings.postgres.port)
    # pg_ctl refuses a stale postmaster.pid only if the pid is alive; ours is gone, so remove it.
    if paths.pg_pidfile.exists() and running_pid(paths) is None:
        paths.pg_pidfile.unlink()
    argv = [
        _bin("pg_ctl"),
        "-D",
        str(paths.pg_data),
        "-l",
        str(paths.pg_log),
        "-w",
        "-t",
        str(int(timeout)),
        "start",
    ]
    result = subprocess.run(
        _as_owner(argv),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout + 30,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    pid = running_pid(paths)
    if result.returncode != 0 or pid is None:
        raise proc.failure(
            "postgres",
            paths.pg_log,
            f"pg_ctl start failed (exit {result.returncode}): {(result.stdout + result.stderr).strip()}",
        )
    return pid


def ready(settings: Settings) -> bool:
    """``pg_isready`` against the TCP listener (what Debezium and the CDC user connect to)."""
    result = subprocess.run(
        [
            _bin("pg_isready"),
            "-q",
            "-h",
            settings.postgres.host,
            "-p",
            str(settings.postgres.port),
            "-t",
            "2",
        ],
        check=False,
        timeout=10,
        stdin=subprocess.DEVNULL,
    )
    return result.returncode == 0


def wait_ready(settings: Settings, paths: StackPaths, pid: int, timeout: float) -> None:
    """Block until pg_isready succeeds; TerminalError with the log tail on death or timeout."""
    ok = proc.wait_until(
        lambda: ready(settings), timeout=timeout, interval=0.3, alive=lambda: proc.pid_alive(pid)
    )
    if not ok:
        problem = (
            "postmaster exited" if not proc.pid_alive(pid) else f"pg_isready failing after {timeout:.0f} s"
        )
        raise proc.failure("postgres", paths.pg_log, problem)


def reload(paths: StackPaths) -> None:
    """Re-read pg_hba.conf and reloadable settings."""
    _run(_as_owner([_bin("pg_ctl"), "-D", str(paths.pg_data), "reload"]), "pg_ctl reload")


def stop(paths: StackPaths, echo: proc.Echo, timeout: float = 60.0) -> None:
    """``pg_ctl stop -m fast`` (disconnects clients, checkpoints); SIGTERM/SIGKILL fallback."""
    pid = running_pid(paths)
    if pid is None:
        return
    started = time.monotonic()
    argv = [_bin("pg_ctl"), "-D", str(paths.pg_data), "-m", "fast", "-w", "-t", str(int(timeout)), "stop"]
    result = subprocess.run(
        _as_owner(argv),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout + 30,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0 and proc.pid_alive(pid):
        echo(
            f"postgres: pg_ctl stop failed ({(result.stdout + result.stderr).strip()}); signalling pid {pid}"
        )
        proc.terminate(pid, timeout=timeout, markers=("postgres",))
    echo(f"postgres: stopped (pid {pid}) in {time.monotonic() - started:.1f} s")


# --- roles, databases, schemas ----------------------------------------------------------------


def _socket_conninfo(settings: Settings, dbname: str) -> str:
    # Bootstrap always uses the socket (trust): the superuser of the local cluster has no password.
    return psycopg.conninfo.make_conninfo(
        host=str(socket_dir(settings)),
        port=settings.postgres.port,
        dbname=dbname,
        user=settings.postgres.superuser,
    )


def _check_db_name(name: str) -> str:
    if not _DB_NAME.match(name):
        raise ConfigError(f"postgres.databases: {name!r} is not a plain lower-case identifier")
    return name


def ensure_role(settings: Settings, password: str) -> bool:
    """Create the CDC role (LOGIN REPLICATION) or reset its password; True if it was created."""
    pg = settings.postgres
    with psycopg.connect(_socket_conninfo(settings, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (pg.cdc_user,)).fetchone()
        verb = sql.SQL("ALTER") if exists else sql.SQL("CREATE")
        # DDL cannot take bind parameters; the password is quoted client-side as a literal.
        conn.execute(
            sql.SQL("{} ROLE {} WITH LOGIN REPLICATION PASSWORD {}").format(
                verb, sql.Identifier(pg.cdc_user), sql.Literal(password)
            )
        )
    return not exists


def _psql_file(settings: Settings, db: str, path: Path) -> None:
    argv = [
        _bin("psql"),
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        str(socket_dir(settings)),
        "-p",
        str(settings.postgres.port),
        "-U",
        settings.postgres.superuser,
        "-d",
        db,
        "-f",
        str(path),
    ]
    _run(argv, f"applying {path} to database {db}", timeout=600)


def ensure_databases(settings: Settings, paths: StackPaths, echo: proc.Echo) -> list[str]:
    """Create missing databases, applying ``infra/demo/<db>/schema.sql`` to new ones; returns the new ones."""
    created: list[str] = []
    with psycopg.connect(_socket_conninfo(settings, "postgres"), autocommit=True) as conn:
        existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        for db in map(_check_db_name, settings.postgres.databases):
            if db in existing:
                continue
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
            schema = paths.demo_schema(db)
            if schema.is_file():
                # Only for a database created just now: the demo schema is not idempotent DDL.
                try:
                    _psql_file(settings, db, schema)
                except TerminalError:
                    # Drop it so the next `up` creates it again and retries the schema.
                    conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(db)))
                    raise
                echo(f"postgres: created database {db} with {schema.relative_to(paths.infra.parent)}")
            else:
                echo(f"postgres: created database {db} (no {schema.relative_to(paths.infra.parent)})")
            created.append(db)
    return created


def _apply_goldstream_sql(settings: Settings, conninfo: str, path: Path) -> None:
    script = path.read_text(encoding="utf-8")
    # The script reads the CDC role name from this session setting (see its header).
    options = f"-c goldstream.cdc_user={settings.postgres.cdc_user}"
    with psycopg.connect(conninfo, autocommit=True, options=options) as conn:
        # No parameters: psycopg sends the file as one simple query, several statements at once.
        conn.execute(script.encode("utf-8"))


def ensure_publication(settings: Settings, db: str) -> None:
    """Run ``infra/postgres/goldstream.sql`` in ``db``: goldstream schema, CDC grants, ``goldstream_pub``.

    Idempotent; rerun it after a schema change so new schemas join the publication and new tables are
    readable by the CDC user. Connects as superuser with :func:`cdc.pg.admin_dsn` (the local socket, or
    TCP with ``GOLDSTREAM_PG_SUPERUSER_PASSWORD`` against another server such as the Docker one).
    """
    from cdc.stack.paths import infra_dir

    _apply_goldstream_sql(
        settings, admin_dsn(settings, _check_db_name(db)), infra_dir() / "postgres" / "goldstream.sql"
    )


def bootstrap(settings: Settings, paths: StackPaths, password: str, echo: proc.Echo) -> None:
    """Role, databases, demo schemas (new databases only), goldstream schema, grants, publication."""
    started = time.monotonic()
    if ensure_role(settings, password):
        echo(f"postgres: created role {settings.postgres.cdc_user} (LOGIN REPLICATION)")
    ensure_databases(settings, paths, echo)
    for db in settings.postgres.databases:
        _apply_goldstream_sql(settings, _socket_conninfo(settings, db), paths.goldstream_sql)
    echo(
        f"postgres: role, {len(settings.postgres.databases)} databases and publication {PUBLICATION} "
        f"checked in {time.monotonic() - started:.1f} s"
    )
