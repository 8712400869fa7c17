"""`make psql` and `make cqlsh`: an interactive shell on each store as its read-only role.

Passwords come from .env and reach the client through its environment (PGPASSWORD) or a 0600 file in a
private temporary directory (cqlsh's credentials file), never through the command line, where `ps` would
show them. Run: python -m stack.shells {psql,cqlsh} [extra client arguments]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from binance_cdc.settings import load_dotenv_file, load_settings


def psql(args: list[str]) -> int:
    settings = load_settings("postgres", "postgres_reader", "serving")
    env = {**os.environ, "PGPASSWORD": settings.postgres_reader.password.reveal(), "PGSSLMODE": settings.postgres.sslmode,
           "PGOPTIONS": f"-c search_path={settings.serving.schema},binance -c default_transaction_read_only=on"}
    argv = ["psql", "-h", settings.postgres.host, "-p", str(settings.postgres.port), "-U", settings.postgres_reader.user,
            "-d", settings.postgres.database, *args]
    return subprocess.call(argv, env=env)


def cqlsh(args: list[str]) -> int:
    settings = load_settings("cassandra", "cassandra_reader")
    login = settings.cassandra_reader
    binary = shutil.which("cqlsh", path=str(Path(sys.executable).parent)) or "cqlsh"
    with tempfile.TemporaryDirectory(prefix="cqlsh-") as home:
        credentials = Path(home) / "credentials"
        credentials.write_text(f"[PlainTextAuthProvider]\nusername = {login.user}\npassword = {login.password.reveal()}\n")
        credentials.chmod(0o600)
        rc = Path(home) / "cqlshrc"
        rc.write_text(f"[authentication]\nusername = {login.user}\ncredentials = {credentials}\n"
                      f"keyspace = {settings.cassandra.keyspace}\n")
        argv = [binary, "--cqlshrc", str(rc), settings.cassandra.hosts[0], str(settings.cassandra.port), *args]
        return subprocess.call(argv, env={**os.environ, "HOME": home})


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("psql", "cqlsh"):
        print("usage: python -m stack.shells {psql,cqlsh} [client arguments]", file=sys.stderr)
        return 2
    load_dotenv_file()
    return (psql if argv[0] == "psql" else cqlsh)(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
