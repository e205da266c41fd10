"""What every benchmark shares: its own database, figures with targets, a CLI.

Each benchmark module runs in a process of its own (``python -m benchmarks.NAME``,
or through ``benchmarks.run``), on a fresh database cloned from a migrated
template, so no benchmark sees another's rows and migrating happens once:

* SQLite: the template is a file, copied to ``MAILLOG_BENCH_SQLITE``;
* PostgreSQL: the template is a database, ``maillog_bench`` is recreated from
  it (``CREATE DATABASE ... TEMPLATE``);
* MariaDB: the template is a database too, but MariaDB has no ``TEMPLATE``:
  ``maillog_bench`` is recreated table by table (``SHOW CREATE TABLE``, then
  ``INSERT ... SELECT`` of the rows the migrations wrote), see
  :func:`_mysql_clone`.

Only databases whose name starts with ``maillog_bench`` are ever created or
dropped, never the tests' ``test``. The database is chosen by
``MAILLOG_TEST_DB`` (``sqlite``, ``postgres`` or ``mysql``), as for the tests;
the connection settings are those of tests/settings.py.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wagtail_maillog.sqlite_writers import SUFFIX as WRITERS_LOCK_SUFFIX

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = "benchmarks.settings"
PG_PREFIX = "maillog_bench"
#: A SQLite database's files: its own, the journals, and the webhook writers' lock
#: file, removed with it.
SQLITE_FILES = ("", "-wal", "-shm", "-journal", WRITERS_LOCK_SUFFIX)


@dataclass
class Figure:
    """One measured number, with the target it is judged by (if any)."""

    measure: str
    name: str
    value: float | None
    unit: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""
    database: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def figure(
    measure: str,
    name: str,
    value: float | None,
    unit: str = "",
    *,
    at_least: float | None = None,
    at_most: float | None = None,
    below: float | None = None,
    note: str = "",
    extra: dict[str, Any] | None = None,
) -> Figure:
    """A figure; with a bound, ``met`` says whether the value keeps it."""
    target, met = "", None
    if value is not None and at_least is not None:
        target, met = f">= {_num(at_least)}", value >= at_least
    elif value is not None and at_most is not None:
        target, met = f"<= {_num(at_most)}", value <= at_most
    elif value is not None and below is not None:
        target, met = f"< {_num(below)}", value < below
    return Figure(measure, name, value, unit, target, met, note, extra=extra or {})


def _num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,}"


def database() -> str:
    return os.environ.get("MAILLOG_TEST_DB", "sqlite")


# --------------------------------------------------------------------------
# The benchmark's own database
# --------------------------------------------------------------------------


def sqlite_path() -> Path:
    return Path(os.environ.get("MAILLOG_BENCH_SQLITE", "/tmp/maillog-bench.sqlite3"))


def pg_name() -> str:
    name = os.environ.get("MAILLOG_BENCH_PG_NAME", PG_PREFIX)
    if not name.startswith(PG_PREFIX):
        raise SystemExit(f"refusing to use PostgreSQL database {name!r}: not {PG_PREFIX}*")
    return name


def mysql_name() -> str:
    """This run's MariaDB database (``MAILLOG_BENCH_MYSQL_NAME``, a ``maillog_bench*``)."""
    return _bench_only(os.environ.get("MAILLOG_BENCH_MYSQL_NAME", PG_PREFIX))


def _bench_only(name: str) -> str:
    """``name`` if the benchmarks may create and drop it: ``maillog_bench*``, plain letters."""
    if not name.startswith(PG_PREFIX) or not name.replace("_", "").isalnum():
        raise SystemExit(f"refusing to use database {name!r}: not {PG_PREFIX}*")
    return name


def _schema_key() -> str:
    """Changes whenever a migration or an installed package changes."""
    digest = hashlib.sha256()
    for folder in sorted((ROOT / "wagtail_maillog").glob("**/migrations")):
        for path in sorted(folder.glob("*.py")):
            digest.update(path.name.encode() + path.read_bytes())
    from importlib.metadata import version

    for package in ("django", "wagtail", "django-q2", "django-post_office"):
        try:
            digest.update(f"{package}={version(package)}".encode())
        except Exception:
            digest.update(package.encode())
    return digest.hexdigest()[:10]


def _template_name() -> str:
    if database() in ("postgres", "mysql"):
        return f"{PG_PREFIX}_tpl_{_schema_key()}"
    return f"/tmp/maillog-bench-template-{_schema_key()}.sqlite3"


def _pg_maintenance(autocommit: bool = False) -> Any:
    """A connection to the server's maintenance database, settings as for the tests."""
    import psycopg

    return psycopg.connect(
        host=os.environ.get("MAILLOG_PG_HOST", "127.0.0.1"),
        port=os.environ.get("MAILLOG_PG_PORT", "5432"),
        user=os.environ.get("MAILLOG_PG_USER", "postgres"),
        password=os.environ.get("MAILLOG_PG_PASSWORD", "postgres"),
        dbname="postgres",
        autocommit=autocommit,
    )


def _pg_admin(sql: str) -> None:
    """Run a statement on the server's maintenance database (outside any transaction)."""
    with _pg_maintenance(autocommit=True) as conn:
        conn.execute(sql)


def _pg_databases() -> list[str]:
    with _pg_maintenance() as conn:
        rows = conn.execute("SELECT datname FROM pg_database").fetchall()
    return [name for (name,) in rows]


# MariaDB ---------------------------------------------------------------------


def _mysql_connect() -> Any:
    """An autocommit MySQLdb connection to the server, settings as for the tests."""
    import MySQLdb

    return MySQLdb.connect(
        host=os.environ.get("MAILLOG_MYSQL_HOST", "127.0.0.1"),
        port=int(os.environ.get("MAILLOG_MYSQL_PORT", "3306")),
        user=os.environ.get("MAILLOG_MYSQL_USER", "root"),
        password=os.environ.get("MAILLOG_MYSQL_PASSWORD", ""),
        charset="utf8mb4",
        autocommit=True,
    )


def _mysql_databases() -> list[str]:
    with contextlib.closing(_mysql_connect()) as conn, conn.cursor() as cursor:
        cursor.execute("SHOW DATABASES")
        return [name for (name,) in cursor.fetchall()]


def _mysql_drop(name: str) -> None:
    with contextlib.closing(_mysql_connect()) as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{_bench_only(name)}`")


def _mysql_ready(template: str) -> bool:
    """Whether ``template`` exists whole: its rows are copied in the clone's last
    transaction, so a template cut short by a crash has no applied migrations."""
    if template not in _mysql_databases():
        return False
    with contextlib.closing(_mysql_connect()) as conn, conn.cursor() as cursor:
        try:
            cursor.execute(f"SELECT COUNT(*) FROM `{template}`.`django_migrations`")
        except Exception:  # no such table
            return False
        return cursor.fetchone()[0] > 0


def _mysql_clone(source: str, target: str) -> None:
    """Make ``target`` a copy of ``source``, for MariaDB has no ``CREATE DATABASE ... TEMPLATE``.

    Each base table is created from its ``SHOW CREATE TABLE`` (indexes, checks,
    foreign keys and the AUTO_INCREMENT counter come along) with foreign key
    checks off, so the order does not matter; then the rows are copied by
    ``INSERT ... SELECT`` in one transaction. Views, triggers and routines are not
    copied: Django's migrations make none, and the clone refuses a source with any.
    """
    target = _bench_only(target)
    with contextlib.closing(_mysql_connect()) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
            "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
            [source],
        )
        charset, collation = cursor.fetchone()
        cursor.execute(
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME",
            [source],
        )
        found = cursor.fetchall()
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s", [source]
        )
        if cursor.fetchone()[0] or any(kind != "BASE TABLE" for _name, kind in found):
            raise RuntimeError(f"{source} has views or triggers, which the clone does not copy")
        tables = [name for name, _kind in found]
        cursor.execute(
            "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s AND IS_GENERATED = 'NEVER' "
            "ORDER BY TABLE_NAME, ORDINAL_POSITION",
            [source],
        )
        columns: dict[str, list[str]] = {}
        for table, column in cursor.fetchall():
            columns.setdefault(table, []).append(f"`{column}`")

        cursor.execute(f"DROP DATABASE IF EXISTS `{target}`")
        cursor.execute(f"CREATE DATABASE `{target}` CHARACTER SET {charset} COLLATE {collation}")
        cursor.execute(f"USE `{target}`")
        cursor.execute("SET SESSION foreign_key_checks = 0")
        for table in tables:
            cursor.execute(f"SHOW CREATE TABLE `{source}`.`{table}`")
            cursor.execute(cursor.fetchone()[1])  # unqualified: made in `target`
        cursor.execute("START TRANSACTION")
        for table in tables:
            names = ", ".join(columns[table])
            cursor.execute(
                f"INSERT INTO `{target}`.`{table}` ({names}) "
                f"SELECT {names} FROM `{source}`.`{table}`"
            )
        cursor.execute("COMMIT")


def _migrate_template(template: str) -> None:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE=SETTINGS, PYTHONPATH=str(ROOT))
    if database() == "postgres":
        env["MAILLOG_BENCH_PG_NAME"] = template
    elif database() == "mysql":
        env["MAILLOG_BENCH_MYSQL_NAME"] = template
    else:
        env["MAILLOG_BENCH_SQLITE"] = template
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--verbosity", "0"],
        env=env,
        cwd=ROOT,
        check=True,
    )


def prepare_template() -> str:
    """Create and migrate the template database once per schema; return its name."""
    template = _template_name()
    if database() == "postgres":
        if template not in _pg_databases():
            _pg_admin(f'CREATE DATABASE "{template}"')
            try:
                _migrate_template(template)
            except BaseException:
                _pg_admin(f'DROP DATABASE "{template}"')
                raise
    elif database() == "mysql":
        if not _mysql_ready(template):
            # Migrated under another name, then cloned: the template is whole or absent.
            partial = f"{template}_partial"
            _mysql_drop(partial)
            with contextlib.closing(_mysql_connect()) as conn, conn.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE `{partial}` CHARACTER SET utf8mb4")
            try:
                _migrate_template(partial)
                _mysql_clone(partial, template)
            finally:
                _mysql_drop(partial)
    elif not Path(template).exists():
        partial = template + ".partial"
        Path(partial).unlink(missing_ok=True)
        _migrate_template(partial)
        os.replace(partial, template)
    return template


def fresh_database() -> None:
    """Point this process at a fresh copy of the migrated template (before django.setup)."""
    template = prepare_template()
    if database() == "postgres":
        name = pg_name()
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}"')
        _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    elif database() == "mysql":
        _mysql_clone(template, mysql_name())
    else:
        path = sqlite_path()
        for suffix in SQLITE_FILES:
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(template, path)


def use_own_databases() -> None:
    """Give this run (and its child processes) databases no other run uses, unless
    named in the environment: two runs at once (CI and a developer) would otherwise
    recreate each other's database mid-benchmark."""
    tag = f"{os.getpid()}"
    os.environ.setdefault("MAILLOG_BENCH_SQLITE", f"/tmp/maillog-bench-{tag}.sqlite3")
    os.environ.setdefault("MAILLOG_BENCH_PG_NAME", f"{PG_PREFIX}_{tag}")
    os.environ.setdefault("MAILLOG_BENCH_MYSQL_NAME", f"{PG_PREFIX}_{tag}")


def drop_own_databases() -> None:
    """Remove what :func:`use_own_databases` named (the templates stay)."""
    path = sqlite_path()
    for suffix in SQLITE_FILES:
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    name = pg_name()
    if name in _pg_databases_or_none():
        _pg_admin(f'DROP DATABASE "{name}"')
    name = mysql_name()
    if name in _mysql_databases_or_none():
        _mysql_drop(name)


def _pg_databases_or_none() -> list[str]:
    try:
        return _pg_databases()
    except Exception:  # no PostgreSQL here (a SQLite-only run)
        return []


def _mysql_databases_or_none() -> list[str]:
    try:
        return _mysql_databases()
    except Exception:  # no MariaDB here, or no MySQLdb (a run without --mysql)
        return []


def setup_django(fresh: bool = True) -> None:
    """Settings, a fresh database (unless told otherwise), ``django.setup()``."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS)
    if fresh:
        fresh_database()
    import django

    django.setup()


def analyze(cursor: Any = None) -> None:
    """Give the planner statistics, as autovacuum (PostgreSQL) or a routine ANALYZE would.

    MariaDB has no bare ``ANALYZE``: ``ANALYZE TABLE`` of every table (InnoDB's
    sampled persistent statistics; no histograms, as a routine ANALYZE makes none).
    """
    from django.db import connection

    if cursor is None:
        with connection.cursor() as cursor:
            analyze(cursor)
        return
    if connection.vendor != "mysql":
        cursor.execute("ANALYZE")
        return
    cursor.execute("SHOW FULL TABLES WHERE Table_type = 'BASE TABLE'")
    tables = [name for name, _kind in cursor.fetchall()]
    if tables:
        cursor.execute("ANALYZE TABLE " + ", ".join(f"`{t}`" for t in tables))
        cursor.fetchall()


def settle() -> None:
    """Bring the database to the state a site's would be in between bursts, the same
    for every contender measured after it.

    PostgreSQL: ``VACUUM ANALYZE`` (this machine's server runs with autovacuum off,
    which a site's does not: updated rows' old versions stayed in the tables and
    their indexes, to be stepped over by every later lookup), then ``CHECKPOINT``,
    so that no contender writes the whole pages of the first changes after a
    checkpoint for another's rows, or runs into one the one before it started.
    SQLite (WAL mode): a checkpoint of the WAL into the database. MariaDB: ANALYZE.
    """
    from django.db import DatabaseError, connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("VACUUM ANALYZE")
            try:
                cursor.execute("CHECKPOINT")  # superusers and pg_checkpoint's members
            except DatabaseError as exc:
                log(f"no CHECKPOINT between contenders: {exc}")
        elif connection.vendor == "sqlite":
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            analyze(cursor)


def wal_appended(action: Callable[[], None]) -> tuple[float, str]:
    """The write-ahead log ``action`` appends on a settled database: (amount, unit).

    SQLite: WAL frames (pages), with this connection's automatic checkpoints off
    meanwhile (the connection must stay open throughout: ``CONN_MAX_AGE`` for
    requests). PostgreSQL: bytes, ``pg_current_wal_lsn`` before and after; the
    whole pages first changed after :func:`settle`'s ``CHECKPOINT`` included.
    """
    from django.db import connection

    settle()
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA wal_autocheckpoint = 0")
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            wal = Path(f"{connection.settings_dict['NAME']}-wal")
            before = wal.stat().st_size if wal.exists() else 0
            cursor.execute("PRAGMA page_size")
            [(page,)] = cursor.fetchall()
        elif connection.vendor == "postgresql":
            cursor.execute("SELECT pg_current_wal_lsn()")
            [(start,)] = cursor.fetchall()
        else:
            raise NotImplementedError(f"no WAL count on {connection.vendor}")
    action()
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            appended = wal.stat().st_size - max(before, 32)  # the WAL's header: 32 bytes
            cursor.execute("PRAGMA wal_autocheckpoint = 1000")
            return appended / (page + 24), "pages"  # a frame: a 24-byte header, a page
        cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [start])
        [(appended,)] = cursor.fetchall()
        return float(appended), "bytes"


def describe_database() -> str:
    from django.db import connection

    if connection.vendor == "postgresql":
        major, minor = divmod(connection.pg_version, 10000)
        return f"PostgreSQL {major}.{minor}"
    if connection.vendor == "mysql":
        name = "MariaDB" if connection.mysql_is_mariadb else "MySQL"
        return f"{name} {'.'.join(map(str, connection.mysql_version))}"
    import sqlite3

    return f"SQLite {sqlite3.sqlite_version}"


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t: ...`` then ``t[0]`` is the elapsed seconds."""
    box = [0.0]
    start = time.perf_counter()
    try:
        yield box
    finally:
        box[0] = time.perf_counter() - start


def rss_bytes() -> int:
    """The process's current resident set size."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def log(text: str) -> None:
    """Progress on stderr (stdout of a benchmark process is its result)."""
    print(f"  [{database()}] {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# The command line of one benchmark module
# --------------------------------------------------------------------------


def main(run: Callable[[bool], list[Figure]], doc: str | None) -> None:
    """``python -m benchmarks.NAME [--quick] [--json-out FILE]``: print (and save) figures."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--json-out", help="write the figures to this file as JSON")
    args = parser.parse_args()
    setup_django()
    figures = run(args.quick)
    described = describe_database()
    for f in figures:
        f.database = described
        print(f"{f.measure:>20} | {f.name:<36} {_show(f.value):>12} {f.unit:<10} {f.target}")
    if args.json_out:
        payload = {"database": described, "figures": [f.as_dict() for f in figures]}
        Path(args.json_out).write_text(json.dumps(payload))


def _show(value: float | None) -> str:
    if value is None:
        return "–"
    if float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"
