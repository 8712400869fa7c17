"""No configured password ever shows: the whole pipeline runs as subprocesses, and every byte it printed or
logged is searched for every password.

One module-scoped run, on throwaway namespaces only: the simulator on a free port, `extraction_script.py`
for one fresh symbol into `binance`, a throwaway Debezium connector (own slot and topic prefix),
`spark_streaming.py --once` on a temp checkpoint into a throwaway keyspace (own writer role), the bridge
into a scratch serving schema, `python -m stack status`, the reconcile, `connectors.register --show` and
`connectors.confluent`; then the same scripts with a deliberately wrong password and with a bad
configuration (error paths print the most). Searched: each run's stdout and stderr, and what was written to
every file under .local/logs during the module (the connector's config goes through Connect's log).

Searched for: every *_PASSWORD of the settings and KAFKA_SASL_PASSWORD (given a random value for every run:
locally it is empty), the throwaway writer's password, and each wrong password used. Also here: the reprs of
the settings, and the git-tracked files against the passwords in .env.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dotenv import dotenv_values

from binance_cdc import datasets, postgres_conn
from binance_cdc.cassandra_conn import session_scope
from binance_cdc.kafka_client import message_counts
from binance_cdc.settings import PROJECT_ROOT, VARIABLES
from stack import postgres as stack_postgres
from stack.paths import LOGS

import cdc_helpers as h

pytestmark = pytest.mark.timeout(1500)

PYTHON = str(PROJECT_ROOT / ".venv" / "bin" / "python")
SECRET_VARS = tuple(v.env for v in VARIABLES if v.secret)
TABLES = (*datasets.DATASETS, "trade_gaps")
STREAM_WRONG_OUTAGE_LIMIT_S = 240


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_sizes() -> dict[Path, int]:
    return {p: p.stat().st_size for p in LOGS.rglob("*") if p.is_file()}


@dataclass
class Run:
    name: str
    argv: list[str]
    returncode: int
    output: bytes  # stdout and stderr
    seconds: float = 0.0


@dataclass
class Capture:
    """Every run's output and the secrets each run was given."""

    tmp: Path
    base_env: dict[str, str]
    runs: list[Run] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)  # label -> value that must never show

    def run(self, name: str, argv: list[str], timeout: float = 300, **env: str) -> Run:
        for key, value in env.items():
            if key in SECRET_VARS and value:
                self.secrets[f"{name}:{key}"] = value
        deadline = time.monotonic() + 120
        while True:
            began = time.monotonic()
            proc = subprocess.run([PYTHON, *argv], cwd=PROJECT_ROOT, env={**self.base_env, **env},
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
            # The bridge's advisory lock is one for the whole server: another suite's bridge run may hold it.
            if not (argv[0] == "pg_cassandra_bridge.py" and proc.returncode == 3 and time.monotonic() < deadline):
                break
            time.sleep(2)
        run = Run(name, argv, proc.returncode, proc.stdout, time.monotonic() - began)
        (self.tmp / f"{name}.out").write_bytes(proc.stdout)
        self.runs.append(run)
        return run

    def tail(self, run: Run, chars: int = 3000) -> str:
        """A run's last output for a failure message, every secret masked: a failing test must not print
        what it looks for."""
        text = run.output.decode(errors="replace")
        for value in self.secrets.values():
            text = text.replace(value, "***")
        return f"{run.name} exited {run.returncode}:\n{text[-chars:]}"

    def by_name(self, name: str) -> Run:
        return next(r for r in self.runs if r.name == name)


def wrong_password() -> str:
    return f"wrong-{secrets.token_urlsafe(18)}"


@pytest.fixture(scope="module")
def pipeline(settings, tmp_path_factory):
    """The whole pipeline on throwaway namespaces, then its error paths; yields (Capture, log text)."""
    tmp = tmp_path_factory.mktemp("secrets")
    sizes_before = log_sizes()
    kafka_secret = secrets.token_urlsafe(24)
    base_env = {**os.environ, "KAFKA_SASL_PASSWORD": kafka_secret}
    capture = Capture(tmp, base_env)
    for env in SECRET_VARS:
        value = settings.value(env).reveal()
        if value:
            capture.secrets[env] = value
    capture.secrets["KAFKA_SASL_PASSWORD"] = kafka_secret  # locally empty: given to every run
    symbol = f"S{uuid.uuid4().hex[:8].upper()}USDT"
    port = free_port()
    sim_log = open(tmp / "simulator.out", "wb")
    simulator = subprocess.Popen([PYTHON, "-m", "simulator", "--port", str(port), "--symbols", symbol, "--no-warm",
                                  "--dead", ""], cwd=PROJECT_ROOT, stdout=sim_log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    serving_schema = f"secrets_serving_{uuid.uuid4().hex[:10]}"
    try:
        h.wait_for(lambda: _answers(port), 60, "simulator answering")
        with h.throwaway_keyspace(settings, label="itsecret") as keyspace, \
                scratch_serving_schema(settings, serving_schema, keyspace.name):
            capture.secrets["throwaway writer password"] = keyspace.writer.password.reveal()
            pg = {"BINANCE_BASE_URL": f"http://127.0.0.1:{port}"}
            extract = capture.run("extract", ["extraction_script.py", "--symbols", symbol], **pg)
            assert extract.returncode == 0, capture.tail(extract)
            with h.throwaway_connector(settings, label="itsecret", snapshot_symbols=symbol) as connector:
                prices = next(t for t in connector["topics"] if t.endswith(".latest_prices"))
                h.wait_for(lambda: message_counts(settings.kafka, [prices])[prices] > 0, 120,
                           "snapshot of the extracted rows in Kafka")
                stream_env = h.stream_env(keyspace, connector["prefix"], tmp / "checkpoint")
                stream = capture.run("stream", ["spark_streaming.py", "--once"], timeout=600, **stream_env)
                assert stream.returncode == 0, capture.tail(stream)
                serving_env = {"CASSANDRA_KEYSPACE": keyspace.name, "SERVING_SCHEMA": serving_schema}
                bridge = capture.run("bridge", ["pg_cassandra_bridge.py"], **serving_env)
                assert bridge.returncode == 0, capture.tail(bridge)
                assert_served(settings, keyspace, serving_schema, symbol)
                capture.run("status", ["-m", "stack", "status"], timeout=120)
                capture.run("reconcile", ["-m", "binance_cdc.serve.reconcile", "--settle", "1"], timeout=300,
                            **serving_env)
                capture.run("register-show", ["-m", "connectors.register", "--show"], timeout=60)
                confluent_out = tmp / "confluent.json"
                confluent = capture.run("confluent", ["-m", "connectors.confluent", "--output", str(confluent_out)],
                                        timeout=60, KAFKA_SASL_USERNAME="key")
                assert confluent.returncode == 0, capture.tail(confluent)
                # The rendered file is meant to hold them (it is the connector's config): private, and
                # not searched.
                assert confluent_out.stat().st_mode & 0o077 == 0

                # Wrong passwords: every store refuses, every script says so, none prints what it was given.
                wrong = dict(PG_APP_PASSWORD=wrong_password())
                run = capture.run("extract-wrong-pg", ["extraction_script.py", "--symbols", symbol], **pg, **wrong)
                assert run.returncode != 0, capture.tail(run)
                run = capture.run("bridge-wrong-cassandra", ["pg_cassandra_bridge.py"], **serving_env,
                                  CASSANDRA_READER_PASSWORD=wrong_password())
                assert run.returncode != 0, capture.tail(run)
                run = capture.run("bridge-wrong-serving", ["pg_cassandra_bridge.py"], **serving_env,
                                  BRIDGE_PG_PASSWORD=wrong_password())
                assert run.returncode != 0, capture.tail(run)
                run = capture.run("reconcile-wrong", ["-m", "binance_cdc.serve.reconcile", "--settle", "1"],
                                  **serving_env, GRAFANA_PG_PASSWORD=wrong_password(),
                                  CASSANDRA_READER_PASSWORD=wrong_password())
                assert run.returncode != 0, capture.tail(run)
                capture.run("status-wrong", ["-m", "stack", "status"], timeout=120,
                            **{v: wrong_password() for v in SECRET_VARS if v != "KAFKA_SASL_PASSWORD"})
                # A long outage limit, which a refused login must not wait for.
                run = capture.run("stream-wrong-cassandra", ["spark_streaming.py", "--once"], timeout=600,
                                  **{**h.stream_env(keyspace, connector["prefix"], tmp / "checkpoint-wrong"),
                                     "CASSANDRA_APP_PASSWORD": wrong_password(),
                                     "STREAM_OUTAGE_LIMIT_S": str(STREAM_WRONG_OUTAGE_LIMIT_S)})
                assert run.returncode != 0, capture.tail(run)

                # Bad configuration: each script names the bad variable and exits 2, passwords set all along.
                for name, argv, bad in (
                    ("extract-bad-config", ["extraction_script.py", "--symbols", symbol], {"BINANCE_WEIGHT_SHARE": "7"}),
                    ("bridge-bad-config", ["pg_cassandra_bridge.py"], {"BRIDGE_PAGE_SIZE": "zero"}),
                    ("stream-bad-config", ["spark_streaming.py", "--once"], {"SPARK_TRIGGER_SECONDS": "-1"}),
                    ("reconcile-bad-config", ["-m", "binance_cdc.serve.reconcile"], {"SERVING_PG_SSLMODE": "maybe"}),
                    ("confluent-missing", ["-m", "connectors.confluent", "--output", str(tmp / "never.json")],
                     {"KAFKA_SASL_USERNAME": ""}),
                ):
                    run = capture.run(name, argv, timeout=120, **bad)
                    assert run.returncode == 2, capture.tail(run)
                    assert next(iter(bad)).encode() in run.output, capture.tail(run)
    finally:
        simulator.send_signal(signal.SIGINT)
        try:
            simulator.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(simulator.pid, signal.SIGKILL)
        sim_log.close()
        capture.runs.append(Run("simulator", [], simulator.returncode, (tmp / "simulator.out").read_bytes()))
        for table in TABLES:
            h.pg_execute(settings, f"DELETE FROM binance.{table} WHERE symbol = %s", (symbol,))
    written = {}
    for path in LOGS.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                f.seek(sizes_before.get(path, 0) if path.stat().st_size >= sizes_before.get(path, 0) else 0)
                written[path] = f.read()
    yield capture, written


def _answers(port: int) -> bool:
    import requests

    try:
        return requests.get(f"http://127.0.0.1:{port}/api/v3/ping", timeout=2).status_code == 200
    except requests.RequestException:
        return False


class scratch_serving_schema:
    """sql/05_serving.sql under another schema name (stack.scratch's way) and the bridge's reader on the
    keyspace; both dropped or revoked afterwards."""

    def __init__(self, settings, schema: str, keyspace: str) -> None:
        self.settings, self.schema, self.keyspace = settings, schema, keyspace

    def __enter__(self):
        variables = stack_postgres.sql_variables(self.settings)
        variables[variables.index(f"serving_schema={self.settings.serving.schema}")] = f"serving_schema={self.schema}"
        stack_postgres.psql(self.settings, *variables, "-f", str(PROJECT_ROOT / "sql" / "05_serving.sql"),
                            dbname=self.settings.serving.database)
        with session_scope(self.settings.cassandra, self.settings.cassandra_admin) as admin:
            admin.execute(f"GRANT SELECT ON KEYSPACE {self.keyspace} TO {self.settings.cassandra_reader.user}")
        return self

    def __exit__(self, *exc) -> None:
        stack_postgres.psql(self.settings, "-c", f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE',
                            dbname=self.settings.serving.database)
        # Dropping the keyspace (throwaway_keyspace, afterwards) removes the grant with it.


def assert_served(settings, keyspace, serving_schema: str, symbol: str) -> None:
    """The run did real work: the symbol's latest price went all the way to the serving schema."""
    conn = postgres_conn.connect(settings.serving, settings.bridge_login, "test_security_secrets")
    try:
        with conn.cursor() as cur:
            cur.execute(f'SELECT count(*) FROM "{serving_schema}".latest_prices WHERE symbol = %s', (symbol,))
            assert cur.fetchone() == (1,)
            cur.execute(f'SELECT count(*) FROM "{serving_schema}".recent_trades WHERE symbol = %s', (symbol,))
            assert cur.fetchone()[0] > 0
    finally:
        conn.close()


def findings(secrets_: dict[str, str], blobs: dict[str, bytes]) -> list[str]:
    return [f"{label} in {where}" for label, value in secrets_.items() for where, blob in blobs.items()
            if value.encode() in blob]


def test_every_password_is_a_real_needle(pipeline):
    capture, _ = pipeline
    configured = [env for env in SECRET_VARS if any(label == env or label.endswith(f":{env}")
                                                    for label in capture.secrets)]
    assert set(configured) == set(SECRET_VARS)
    # Short values would match by chance and prove nothing.
    assert all(len(value) >= 16 for value in capture.secrets.values())


def test_no_password_in_any_output_or_log(pipeline):
    capture, written = pipeline
    blobs = {f"output of {r.name} ({' '.join(r.argv)})": r.output for r in capture.runs}
    blobs.update({f"{path} (written during the run)": data for path, data in written.items()})
    assert len(capture.runs) >= 17 and all(r.output for r in capture.runs if r.name != "simulator")
    assert findings(capture.secrets, blobs) == []


def test_error_paths_did_print_their_errors(pipeline):
    """The wrong-password runs failed on authentication and said so (so they were searched for something)."""
    capture, _ = pipeline
    for name, says in (("extract-wrong-pg", b"password authentication failed"),
                       ("bridge-wrong-serving", b"password authentication failed"),
                       ("bridge-wrong-cassandra", b"Bad credentials"),
                       ("stream-wrong-cassandra", b"Bad credentials"),
                       ("status-wrong", b"Bad credentials")):
        run = capture.by_name(name)
        said = says in run.output  # a bare bool: pytest would print the output itself, secrets and all
        assert said, capture.tail(run)


def test_wrong_password_is_a_configuration_error_naming_its_variables(pipeline):
    """Exit 2 (as for a bad setting), a line naming the role's variables, no traceback of ours, and the
    stream gives up before Spark starts instead of riding out STREAM_OUTAGE_LIMIT_S as if Cassandra were down."""
    capture, _ = pipeline
    for name, variables in (("extract-wrong-pg", (b"PG_APP_USER", b"PG_APP_PASSWORD")),
                            ("bridge-wrong-cassandra", (b"CASSANDRA_READER_USER", b"CASSANDRA_READER_PASSWORD")),
                            ("bridge-wrong-serving", (b"BRIDGE_PG_USER", b"BRIDGE_PG_PASSWORD")),
                            ("reconcile-wrong", (b"GRAFANA_PG_USER", b"GRAFANA_PG_PASSWORD", b"CASSANDRA_READER_USER",
                                                 b"CASSANDRA_READER_PASSWORD")),
                            ("stream-wrong-cassandra", (b"CASSANDRA_APP_USER", b"CASSANDRA_APP_PASSWORD"))):
        run = capture.by_name(name)
        named = all(v in run.output for v in variables) and b"refused the login" in run.output
        assert run.returncode == 2 and named, capture.tail(run)
        # Spark prints its own traces around the stream's line; the other scripts print one line only.
        assert name.startswith("stream") or b"Traceback" not in run.output, capture.tail(run)
    stream = capture.by_name("stream-wrong-cassandra")
    assert b"Cassandra unreachable" not in stream.output, capture.tail(stream)
    # Stopped by the login before Spark started: no batch ran, so nothing could ride out an outage.
    assert b"refusing to start, a configuration error" in stream.output, capture.tail(stream)
    print(f"stream-wrong-cassandra failed after {stream.seconds:.1f}s "
          f"(STREAM_OUTAGE_LIMIT_S={STREAM_WRONG_OUTAGE_LIMIT_S})")


def test_connect_logged_the_connectors_config_without_the_password(pipeline):
    _, written = pipeline
    connect_log = written.get(LOGS / "connect.log", b"")
    assert b"itsecret" in connect_log  # the throwaway connector went through this log


def test_settings_reprs_hold_no_password(settings):
    texts = [repr(settings), str(settings)] + [repr(settings.group(g)) for g in settings.loaded]
    texts += [repr(settings.value(env)) for env in SECRET_VARS]
    for env in SECRET_VARS:
        value = settings.value(env).reveal()
        if value:
            shown = sum(value in t for t in texts)
            assert shown == 0, f"{env} shown in {shown} repr(s)"
    assert "Secret('***')" in repr(settings.postgres_app)


def test_git_tracked_files_hold_no_password_from_env():
    env = dotenv_values(PROJECT_ROOT / ".env")
    passwords = {k: v for k, v in env.items() if k in SECRET_VARS and v}
    assert passwords, ".env holds no password: nothing to search for"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
    paths = [p for p in tracked.decode().split("\0") if p]
    assert ".env" not in paths and len(paths) > 50
    found = []
    for rel in paths:
        path = PROJECT_ROOT / rel
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{k} in {rel}" for k, v in passwords.items() if v.encode() in data]
    history = subprocess.run(["git", "log", "--all", "-p", "--no-color", "--no-ext-diff"], cwd=PROJECT_ROOT,
                             capture_output=True, check=True).stdout
    found += [f"{k} in git history" for k, v in passwords.items() if v.encode() in history]
    assert found == []
