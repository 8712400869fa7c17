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
    if settings.postgres.sslrootcert:
        env["PGSSLROOTCERT"] = settings.postgres.sslrootcert
    argv = ["psql", "-h", settings.postgres.host, "-p", str(settings.postgres.port), "-U", settings.postgres_reader.user,
            "-d", settings.postgres.database, *args]
    return subprocess.call(argv, env=env)


def cqlsh_ssl_section(cassandra) -> str:
    """cqlshrc's [ssl] section for the scripts' TLS settings ("" without TLS). cqlsh 6.2 validates the
    chain only against a file (no system store, no hostname check): the CA file, else the system bundle."""
    import ssl

    if not cassandra.ssl:
        return ""
    ca_file = cassandra.ssl_ca_file or ssl.get_default_verify_paths().cafile
    if not ca_file:
        raise FileNotFoundError("cqlsh needs a CA file for TLS: set CASSANDRA_SSL_CA_FILE")
    lines = ["[ssl]", "validate = true", f"certfile = {ca_file}"]
    if cassandra.ssl_cert_file:
        lines += [f"usercert = {cassandra.ssl_cert_file}", f"userkey = {cassandra.ssl_key_file}"]
    return "\n".join(lines) + "\n"


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
                      f"keyspace = {settings.cassandra.keyspace}\n" + cqlsh_ssl_section(settings.cassandra))
        ssl = ["--ssl"] if settings.cassandra.ssl else []
        argv = [binary, "--cqlshrc", str(rc), *ssl, settings.cassandra.hosts[0], str(settings.cassandra.port), *args]
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
