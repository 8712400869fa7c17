"""PostgreSQL 15 from Debian, as the project's own cluster under .local/data/postgres.

wal_level=logical with room for Debezium's slot; `max_slot_wal_keep_size` caps the WAL an abandoned slot
can hold. The server runs as the `postgres` OS user (it refuses root). Admin work goes through the Unix
socket in .local/run/postgres (mode 0700: only the server user and root can reach it); applications
connect over TCP on 127.0.0.1 with SCRAM passwords from the environment.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from stack import process
from stack.paths import DATA, LOGS, PROJECT, RUN, versions

log = logging.getLogger(__name__)

NAME = "postgres"
DATA_DIR = DATA / "postgres"
SOCKET_DIR = RUN / "postgres"
LOG_FILE = LOGS / "postgres.log"
OS_USER = "postgres"
SQL_DIR = PROJECT / "sql"
SERVING_SQL = "05_serving.sql"

SERVER_SETTINGS = {
    "wal_level": "logical",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "max_slot_wal_keep_size": "1GB",
    "listen_addresses": "127.0.0.1",
    "shared_buffers": "128MB",
    "unix_socket_permissions": "0700",
}


def bin_dir() -> Path:
    return Path(f"/usr/lib/postgresql/{versions()['POSTGRES_MAJOR']}/bin")


def _as_server_user(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        argv = ["runuser", "-u", OS_USER, "--", *argv]
    return subprocess.run(argv, check=True, text=True, capture_output=True, **kwargs)


def _make_traversable(path: Path) -> None:
    """The server user must reach the data dir; a checkout under a 0700 temp dir would block it."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            log.info("postgres: adding o+x to %s so the %s user can reach its data dir", parent, OS_USER)
            parent.chmod(mode | 0o001)


def missing() -> list[str]:
    return [] if (bin_dir() / "postgres").exists() else [f"postgresql-{versions()['POSTGRES_MAJOR']}"]


def _chown(path: Path) -> None:
    if os.geteuid() == 0:
        ids = pwd.getpwnam(OS_USER)
        shutil.chown(path, ids.pw_uid, ids.pw_gid)


def init_cluster() -> None:
    if (DATA_DIR / "PG_VERSION").exists():
        return
    for d in (DATA_DIR, SOCKET_DIR, LOGS):
        d.mkdir(parents=True, exist_ok=True)
        _chown(d)
    _make_traversable(DATA_DIR)
    log.info("postgres: initdb %s", DATA_DIR)
    _as_server_user([str(bin_dir() / "initdb"), "-D", str(DATA_DIR), "-U", "postgres", "-E", "UTF8",
                     "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256"])
    (DATA_DIR / "pg_hba.conf").write_text(
        "# Local socket (0700, server user and root only): admin work by `make up`.\n"
        "local all all trust\n"
        "# Applications and Debezium: passwords over TCP on loopback.\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
        "host replication all 127.0.0.1/32 scram-sha-256\n"
    )


def running() -> bool:
    return _postmaster_pid() is not None


def _postmaster_pid() -> int | None:
    try:
        pid = int((DATA_DIR / "postmaster.pid").read_text().splitlines()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    return pid if process.alive(pid) else None


def start(settings) -> None:
    init_cluster()
    if running():
        return
    SOCKET_DIR.mkdir(parents=True, exist_ok=True)
    _chown(SOCKET_DIR)
    LOGS.mkdir(parents=True, exist_ok=True)
    LOG_FILE.touch()
    _chown(LOG_FILE)
    opts = {**SERVER_SETTINGS, "port": str(settings.postgres.port), "unix_socket_directories": str(SOCKET_DIR)}
    options = " ".join(f"-c {k}={v}" for k, v in opts.items())
    log.info("postgres: starting on 127.0.0.1:%s", settings.postgres.port)
    _as_server_user([str(bin_dir() / "pg_ctl"), "-D", str(DATA_DIR), "-l", str(LOG_FILE), "-o", options,
                     "-w", "-t", "60", "start"])


def admin_dsn(settings, dbname: str = "postgres") -> str:
    return f"host={SOCKET_DIR} port={settings.postgres.port} user=postgres dbname={dbname}"


def wait_ready(settings, timeout: float = 60) -> None:
    import psycopg2

    def answers() -> bool:
        with psycopg2.connect(admin_dsn(settings), connect_timeout=2) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            return cur.fetchone() == (1,)

    process.wait_until("postgres", answers, timeout)


def psql(settings, *args: str, dbname: str | None = None) -> str:
    argv = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(SOCKET_DIR), "-p", str(settings.postgres.port),
            "-U", "postgres", "-d", dbname or settings.postgres.database, *args]
    return _as_server_user(argv).stdout


def sql_variables(settings) -> list[str]:
    """The psql variables the files in sql/ use (role and publication names are configurable)."""
    pairs = {
        "app_role": settings.postgres_app.user,
        "cdc_role": settings.replication.user,
        "publication": settings.connect.publication,
        "serving_schema": settings.serving.schema,
        "bridge_role": settings.bridge_login.user,
        "grafana_role": settings.grafana_login.user,
        "reader_role": settings.postgres_reader.user,
    }
    return [arg for k, v in pairs.items() for arg in ("-v", f"{k}={v}")]


def bootstrap(settings) -> None:
    """Roles with passwords from the environment, the database, then every file in sql/ in order."""
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(admin_dsn(settings))
    conn.autocommit = True  # CREATE DATABASE refuses to run in a transaction
    try:
        with conn.cursor() as cur:
            roles = (
                (settings.postgres_app.user, settings.postgres_app.password.reveal(), sql.SQL("LOGIN")),
                (settings.replication.user, settings.replication.password.reveal(),
                 sql.SQL("LOGIN REPLICATION")),
                (settings.bridge_login.user, settings.bridge_login.password.reveal(), sql.SQL("LOGIN")),
                (settings.postgres_reader.user, settings.postgres_reader.password.reveal(), sql.SQL("LOGIN")),
                (settings.grafana_login.user, settings.grafana_login.password.reveal(), sql.SQL("LOGIN")),
            )
            for role, password, attrs in roles:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                verb = sql.SQL("ALTER") if cur.fetchone() else sql.SQL("CREATE")
                cur.execute(sql.SQL("{} ROLE {} WITH {} PASSWORD %s").format(verb, sql.Identifier(role), attrs),
                            (password,))
            for database in dict.fromkeys((settings.postgres.database, settings.serving.database)):
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                if not cur.fetchone():
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    finally:
        conn.close()
    for path in sorted(SQL_DIR.glob("*.sql")):
        log.info("postgres: applying %s", path.relative_to(PROJECT))
        # The serving schema may be configured into its own database (SERVING_PG_DATABASE).
        dbname = settings.serving.database if path.name == SERVING_SQL else None
        psql(settings, *sql_variables(settings), "-f", str(path), dbname=dbname)


def stop() -> None:
    if running():
        log.info("postgres: stopping")
        _as_server_user([str(bin_dir() / "pg_ctl"), "-D", str(DATA_DIR), "-m", "fast", "-w", "stop"])


def status(settings) -> dict:
    pid = _postmaster_pid()
    healthy = False
    if pid:
        try:
            wait_ready(settings, timeout=3)
            healthy = True
        except RuntimeError:
            pass
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split() if pid else []
    rss = sum(process.rss_mib(int(p)) or 0 for p in [pid, *children] if p) if pid else None
    return {"name": NAME, "up": healthy, "address": f"127.0.0.1:{settings.postgres.port}", "rss_mib": rss}
