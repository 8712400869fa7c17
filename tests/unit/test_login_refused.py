"""A wrong password is a configuration error, not an outage: the shared classifier (binance_cdc.stream.retry),
the role -> variables map (settings.login_variables), and how the stream, the bridge, reconcile and the
extractor report a refused login (one line naming the variables, exit 2, no retries). The driver's real
exception classes, built by hand; no service is reached."""

from __future__ import annotations

import logging

import psycopg2
import pytest
from cassandra import AuthenticationFailed, OperationTimedOut
from cassandra.cluster import NoHostAvailable

from binance_cdc.settings import VARIABLES, login_variables, load_settings
from binance_cdc.stream.job import Fatal, ride_out
from binance_cdc.stream.retry import (
    LoginRefused, Outage, as_login_refused, is_auth_failure, is_sink_outage, is_transient, login_refused,
    refusal_reason, retry,
)

SECRETS = {v.env: f"s3cret-{v.env.lower()}-value" for v in VARIABLES if v.secret}
REFUSED = ('Failed to authenticate to 127.0.0.1:9042: Error from server: code=0100 [Bad credentials] '
           'message="Provided username binance_writer and/or password are incorrect"')
# What a node answers while it cannot read its roles (restarting): the same class, but worth waiting for.
CANNOT_CHECK = ('Failed to authenticate to 127.0.0.1:9042: Error from server: code=0100 [Bad credentials] '
                'message="Unable to perform authentication: Cannot achieve consistency level LOCAL_ONE"')


def wrong_password() -> NoHostAvailable:
    """What cassandra-driver's Cluster.connect raises for a wrong password: every host refused."""
    return NoHostAvailable("Unable to connect to any servers", {"127.0.0.1:9042": AuthenticationFailed(REFUSED)})


def pg_wrong_password(user: str = "binance_app") -> psycopg2.OperationalError:
    return psycopg2.OperationalError(f'connection to server at "127.0.0.1", port 55432 failed: FATAL:  password '
                                     f'authentication failed for user "{user}"\n')


def raising(exc: BaseException):
    def connect(*args, **kwargs):
        raise exc

    return connect


def job_error(last_line: str) -> RuntimeError:
    """A failed Spark job as the driver sees it: py4j text around the executor's Python traceback."""
    return RuntimeError("An error occurred while calling o123.collectToPython.\n: org.apache.spark.SparkException: "
                        "Job aborted due to stage failure: ... org.apache.spark.api.python.PythonException: "
                        "Traceback (most recent call last):\n  File \"sink.py\", line 1, in sink_for\n"
                        f"{last_line}\n\n\tat org.apache.spark.api.python.BasePythonRunner...")


EXECUTOR_LINE = ("Cassandra refused the login as binance_writer (Bad credentials: Provided username binance_writer "
                 "and/or password are incorrect): check CASSANDRA_APP_USER and CASSANDRA_APP_PASSWORD in .env or "
                 "the environment")


# --- the classifier -------------------------------------------------------------------------------------

def test_a_refused_cassandra_login_is_an_auth_failure_and_not_transient():
    for exc in (wrong_password(), AuthenticationFailed(REFUSED)):
        assert is_auth_failure(exc) and not is_transient(exc) and not is_sink_outage(exc)
    # Roles are cluster-wide: one host refusing is enough, whatever the others said.
    mixed = NoHostAvailable("Unable to connect to any servers", {
        "10.0.0.5:9042": ConnectionRefusedError(111, "refused"), "10.0.0.6:9042": AuthenticationFailed(REFUSED)})
    assert is_auth_failure(mixed) and not is_transient(mixed)


def test_an_unreachable_or_restarting_cassandra_stays_transient():
    down = NoHostAvailable("Unable to connect to any servers", {"127.0.0.1:9042": ConnectionRefusedError(111, "x")})
    restarting = NoHostAvailable("Unable to connect to any servers",
                                 {"127.0.0.1:9042": AuthenticationFailed(CANNOT_CHECK)})
    for exc in (down, restarting, OperationTimedOut("timeout"), NoHostAvailable("no hosts", {})):
        assert is_transient(exc) and not is_auth_failure(exc)


def test_postgres_password_failures_are_auth_failures_and_other_connect_errors_are_not():
    assert is_auth_failure(pg_wrong_password())
    refused = psycopg2.OperationalError('connection to server at "127.0.0.1", port 1 failed: Connection refused')
    assert not is_auth_failure(refused) and not is_auth_failure(ValueError("password authentication failed"))


def test_an_executors_refused_login_is_found_in_a_failed_spark_jobs_text():
    refused = job_error(f"binance_cdc.stream.retry.LoginRefused: {EXECUTOR_LINE}")
    assert is_auth_failure(refused) and not is_transient(refused) and not is_sink_outage(refused)
    assert str(as_login_refused(refused)) == EXECUTOR_LINE
    outage = job_error("binance_cdc.stream.retry.SinkUnavailable: Cassandra unreachable for 3s ...")
    assert not is_auth_failure(outage) and is_sink_outage(outage)


# --- the role's variables and the one line ---------------------------------------------------------------

def test_each_login_group_maps_to_the_variables_holding_its_user_and_password():
    assert login_variables("cassandra_writer") == ("CASSANDRA_APP_USER", "CASSANDRA_APP_PASSWORD")
    assert login_variables("cassandra_reader") == ("CASSANDRA_READER_USER", "CASSANDRA_READER_PASSWORD")
    assert login_variables("postgres_app") == ("PG_APP_USER", "PG_APP_PASSWORD")
    assert login_variables("grafana_login") == ("GRAFANA_PG_USER", "GRAFANA_PG_PASSWORD")
    assert login_variables("bridge_login") == ("BRIDGE_PG_USER", "BRIDGE_PG_PASSWORD")
    with pytest.raises(ValueError, match="not a login group"):
        login_variables("cassandra")


def test_the_refusal_line_names_the_variables_and_quotes_the_server_in_one_line():
    line = str(login_refused("Cassandra", "cassandra_writer", "binance_writer", wrong_password()))
    assert line == EXECUTOR_LINE
    line = str(login_refused("Postgres", "postgres_app", "binance_app", pg_wrong_password()))
    assert line == ('Postgres refused the login as binance_app (password authentication failed for user '
                    '"binance_app"): check PG_APP_USER and PG_APP_PASSWORD in .env or the environment')
    assert refusal_reason(AuthenticationFailed("Remote end requires authentication")) == \
        "AuthenticationFailed: Remote end requires authentication"


# --- no retry loop waits for a wrong password ------------------------------------------------------------

def test_retry_raises_a_refused_login_at_once():
    slept = []
    calls = []

    def connect():
        calls.append(1)
        raise wrong_password()

    with pytest.raises(NoHostAvailable):
        retry(connect, Outage("Cassandra", 60), sleep=slept.append)
    assert calls == [1] and slept == []


def test_driver_ride_out_ends_at_once_on_a_refused_login_and_keeps_its_line():
    for failure, expected in ((job_error(f"binance_cdc.stream.retry.LoginRefused: {EXECUTOR_LINE}"), EXECUTOR_LINE),
                              (LoginRefused(EXECUTOR_LINE), EXECUTOR_LINE)):
        calls, slept, fatal = [], [], Fatal()

        def call():
            calls.append(1)
            raise failure

        with pytest.raises(LoginRefused):
            ride_out(call, Outage("Cassandra", 120), fatal, "batch 0", sleep=slept.append)
        assert calls == [1] and slept == [] and fatal.outage is None
        assert str(fatal.refused) == expected and "\n" not in str(fatal.refused)


@pytest.fixture
def writer_target():
    from binance_cdc.stream.job import sink_target

    return sink_target(load_settings("kafka", "cassandra", "cassandra_writer", "spark", env=SECRETS))


def test_an_executor_that_cannot_log_in_fails_at_once_naming_the_variables(writer_target, monkeypatch):
    from binance_cdc.stream import sink

    calls = []

    def connect(cassandra, login, **kwargs):
        calls.append(login.user)
        raise wrong_password()

    monkeypatch.setattr("binance_cdc.cassandra_conn.connect", connect)
    monkeypatch.setattr("binance_cdc.stream.retry.time.sleep", lambda s: pytest.fail("slept"))
    with pytest.raises(LoginRefused) as raised:
        sink.sink_for(writer_target)
    assert calls == ["binance_writer"] and str(raised.value) == EXECUTOR_LINE
    assert SECRETS["CASSANDRA_APP_PASSWORD"] not in str(raised.value)


def test_the_stream_refuses_to_start_on_a_refused_login_before_spark_starts(writer_target, monkeypatch):
    from binance_cdc.stream.job import ProgressRecorder, login_refused_at_start

    monkeypatch.setattr("binance_cdc.cassandra_conn.connect", raising(wrong_password()))
    refused = login_refused_at_start(ProgressRecorder(writer_target))
    assert isinstance(refused, LoginRefused) and str(refused) == EXECUTOR_LINE


def test_the_stream_starts_anyway_when_cassandra_is_unreachable_or_the_login_works(writer_target, monkeypatch,
                                                                                   caplog):
    from binance_cdc.stream.job import ProgressRecorder, login_refused_at_start

    down = NoHostAvailable("Unable to connect to any servers", {"127.0.0.1:9042": OperationTimedOut("timed out")})
    monkeypatch.setattr("binance_cdc.cassandra_conn.connect", raising(down))
    with caplog.at_level(logging.WARNING, logger="spark_streaming"):
        assert login_refused_at_start(ProgressRecorder(writer_target)) is None
    assert "not reachable at start" in caplog.text

    shut, prepared = [], []

    class Session:
        class cluster:
            @staticmethod
            def shutdown():
                shut.append(True)

        @staticmethod
        def prepare(query):
            prepared.append(query)
            return query

    connects = []
    monkeypatch.setattr("binance_cdc.cassandra_conn.connect", lambda *a, **k: connects.append(1) or Session())
    progress = ProgressRecorder(writer_target)
    assert login_refused_at_start(progress) is None
    progress.connect()  # what the first batch's record() does: the session opened at start is the one used
    assert connects == [1] and len(prepared) == 1 and "stream_progress" in prepared[0] and shut == []
    progress.close()
    assert shut == [True]


def test_the_drivers_traceback_of_a_refused_login_is_not_logged_but_an_outage_still_is():
    from binance_cdc import cassandra_conn  # noqa: F401 - installs the driver's log filters

    driver_log = logging.getLogger("cassandra.cluster")

    def logged(exc: BaseException) -> bool:
        record = driver_log.makeRecord(driver_log.name, logging.ERROR, __file__, 1,
                                       "Control connection failed to connect, shutting down Cluster:", (),
                                       (type(exc), exc, None))
        return all(f.filter(record) for f in driver_log.filters)

    down = NoHostAvailable("Unable to connect to any servers", {"127.0.0.1:9042": ConnectionRefusedError(111, "x")})
    assert not logged(wrong_password()) and not logged(AuthenticationFailed(REFUSED))
    assert logged(down) and logged(AuthenticationFailed(CANNOT_CHECK))


# --- the scripts: exit 2, one line naming the variables ---------------------------------------------------

def test_reconcile_reports_every_refused_login_in_one_line_and_exits_2(monkeypatch, caplog):
    from binance_cdc.serve import reconcile

    settings = load_settings(*reconcile.SETTINGS_GROUPS, env=SECRETS)
    closed = []

    class Conn:
        def close(self):
            closed.append(self)

    monkeypatch.setattr(reconcile, "script_settings", lambda *groups: settings)
    monkeypatch.setattr(reconcile.postgres_conn, "app_connection", lambda *a, **k: Conn())
    monkeypatch.setattr(reconcile.postgres_conn, "connect",
                        raising(pg_wrong_password("binance_grafana")))
    monkeypatch.setattr(reconcile.cassandra_read, "reader_session", raising(
        NoHostAvailable("Unable to connect to any servers", {"127.0.0.1:9042": AuthenticationFailed(
            REFUSED.replace("binance_writer", "binance_reader"))})))
    with caplog.at_level(logging.ERROR):
        assert reconcile.main([]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0] and not any(r.exc_info for r in caplog.records)
    for name in ("GRAFANA_PG_USER", "GRAFANA_PG_PASSWORD", "CASSANDRA_READER_USER", "CASSANDRA_READER_PASSWORD"):
        assert name in errors[0]
    assert "PG_APP_USER" not in errors[0]  # that login worked
    assert len(closed) == 1  # the connection that did open is closed


def test_bridge_exits_2_naming_the_role_the_store_refused(monkeypatch):
    from binance_cdc.serve import bridge

    settings = load_settings(*bridge.SETTINGS_GROUPS, env=SECRETS)
    monkeypatch.setattr(bridge.postgres_conn, "connect", raising(pg_wrong_password("binance_bridge")))
    report = bridge.run(settings)
    assert report.exit_code == bridge.EXIT_CONFIG == 2
    assert "BRIDGE_PG_USER and BRIDGE_PG_PASSWORD" in report.message and "password authentication failed" in \
        report.message

    class Cursor:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def execute(self, *args):
            pass

        def fetchone(self):
            return (True,)  # the advisory lock is ours

    class Conn:
        cursor = lambda self: Cursor()  # noqa: E731
        commit = close = lambda self: None  # noqa: E731

    monkeypatch.setattr(bridge.postgres_conn, "connect", lambda *a, **k: Conn())
    monkeypatch.setattr(bridge.cassandra_read, "reader_session", raising(wrong_password()))
    report = bridge.run(settings)
    assert report.exit_code == 2 and "Bad credentials" in report.message
    assert "CASSANDRA_READER_USER and CASSANDRA_READER_PASSWORD" in report.message


def test_extraction_exits_2_naming_the_app_roles_variables(monkeypatch):
    from binance_cdc.extract import cycle

    settings = load_settings("postgres", "postgres_app", "binance", env=SECRETS)
    monkeypatch.setattr(cycle.postgres_conn, "app_connection", raising(pg_wrong_password()))
    report = cycle.run(settings, ["BTCUSDT"])
    assert report.exit_code == cycle.EXIT_CONFIG == 2
    assert "PG_APP_USER and PG_APP_PASSWORD" in report.message and "\n" not in report.message


def test_status_says_cassandra_refused_the_readers_login_rather_than_unreachable(monkeypatch):
    from binance_cdc.serve import cassandra_read
    from stack import pipeline

    settings = load_settings("cassandra", "cassandra_reader", env=SECRETS)
    monkeypatch.setattr(cassandra_read, "reader_session", raising(wrong_password()))
    line = pipeline._progress(settings)
    assert line.startswith("Cassandra refused the login as binance_reader (Bad credentials: ")
    assert line.endswith("check CASSANDRA_READER_USER and CASSANDRA_READER_PASSWORD in .env or the environment")
