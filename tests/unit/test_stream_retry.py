"""Riding out an unreachable Cassandra (binance_cdc.stream.retry, the driver's ride_out, the sink's
execute loop) and the one-stream-per-checkpoint lock. Fake clocks and sessions: no Cassandra, no Spark."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from binance_cdc.stream import checkpoint_lock
from binance_cdc.stream.job import Fatal, ride_out
from binance_cdc.stream.retry import (
    Backoff, Outage, SinkUnavailable, StreamOutage, executor_window, first_line, is_sink_outage, is_transient,
    retry,
)


class NoHostAvailable(Exception):  # named like cassandra.cluster's: recognised by class name
    pass


class OperationTimedOut(Exception):
    pass


class InvalidRequest(Exception):
    pass


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def failing(times: int, exc: Exception, result="ok"):
    calls = {"n": 0}

    def call():
        calls["n"] += 1
        if calls["n"] <= times:
            raise exc
        return result

    return call, calls


def test_backoff_doubles_up_to_its_cap():
    delays = Backoff(0.5, 5.0).delays()
    assert [next(delays) for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_transient_errors_are_known_by_class_name_including_subclasses():
    class ConnectionShutdown(Exception):
        pass

    class Sub(ConnectionShutdown):
        pass

    assert is_transient(NoHostAvailable()) and is_transient(OperationTimedOut()) and is_transient(Sub())
    assert is_transient(ConnectionRefusedError()) and is_transient(TimeoutError())
    assert not is_transient(InvalidRequest()) and not is_transient(ValueError("bug"))


def test_a_failed_spark_job_is_an_outage_only_when_an_executor_gave_up_on_cassandra():
    job_error = RuntimeError("Job aborted ... PythonException: Traceback ...\n"
                             "binance_cdc.stream.retry.SinkUnavailable: Cassandra unreachable for 3s ...")
    assert is_sink_outage(job_error) and is_sink_outage(SinkUnavailable("x"))
    assert not is_sink_outage(RuntimeError("Job aborted ... ValueError: Exceeds the limit (4300 digits)"))


def test_retry_rides_out_transient_failures_within_the_limit():
    clock = FakeClock()
    call, calls = failing(4, NoHostAvailable("down"))
    outage = Outage("Cassandra", 60, clock=clock)
    assert retry(call, outage, sleep=clock.sleep) == "ok"
    assert calls["n"] == 5 and clock.slept == [0.5, 1.0, 2.0, 4.0] and outage.attempts == 4


def test_retry_gives_up_past_the_limit_with_one_line_naming_the_cause():
    clock = FakeClock()
    call, calls = failing(10_000, NoHostAvailable("('Unable to connect to any servers', {'127.0.0.1:9042': "
                                                   "ConnectionRefusedError(111)})\nsecond line"))
    with pytest.raises(StreamOutage) as raised:
        retry(call, Outage("Cassandra", 30, clock=clock), sleep=clock.sleep)
    message = str(raised.value)
    assert "\n" not in message and "Cassandra unreachable for" in message
    assert "the next retry would pass the 30s limit" in message
    assert "NoHostAvailable: ('Unable to connect to any servers'" in message
    assert sum(clock.slept) <= 30  # never sleeps past the limit
    assert clock.slept[-1] == 5.0  # the cap, not an ever-growing wait


def test_retry_raises_a_non_transient_error_at_once():
    clock = FakeClock()
    call, calls = failing(1, InvalidRequest("unconfigured table"))
    with pytest.raises(InvalidRequest):
        retry(call, Outage("Cassandra", 60, clock=clock), sleep=clock.sleep)
    assert calls["n"] == 1 and clock.slept == []


def test_executor_window_is_short_so_task_attempts_do_not_overshoot_the_limit():
    assert executor_window(120) == 10.0 and executor_window(9) == 3.0


def test_first_line_keeps_one_cut_line():
    assert first_line(NoHostAvailable("a\nb")) == "NoHostAvailable: a"
    assert len(first_line(ValueError("x" * 1000))) < 230


def test_driver_ride_out_retries_a_batch_whose_executors_gave_up_then_succeeds():
    clock = FakeClock()
    job_error = RuntimeError("Job aborted\nbinance_cdc.stream.retry.SinkUnavailable: Cassandra unreachable for "
                             "3s after 4 attempts, longer than the 3.33s limit; last error: NoHostAvailable: x")
    call, calls = failing(3, job_error, result=["stats"])
    cleanups = []
    fatal = Fatal()
    got = ride_out(call, Outage("Cassandra", 60, clock=clock), fatal, "batch 7", sleep=clock.sleep,
                   cleanup=lambda: cleanups.append(1))
    assert got == ["stats"] and calls["n"] == 4 and len(cleanups) == 3 and fatal.outage is None


def test_driver_ride_out_ends_with_the_executors_cause_and_keeps_it_for_the_exit_line():
    clock = FakeClock()
    job_error = RuntimeError("Py4JJavaError ...\nTraceback ...\nbinance_cdc.stream.retry.SinkUnavailable: "
                             "Cassandra unreachable for 3s after 4 attempts, longer than the 3.33s limit; "
                             "last error: NoHostAvailable: ('Unable to connect to any servers')\n\tat org...")
    call, _ = failing(10_000, job_error)
    fatal = Fatal()
    with pytest.raises(StreamOutage):
        ride_out(call, Outage("Cassandra", 20, clock=clock), fatal, "batch 7", sleep=clock.sleep)
    line = str(fatal.outage)
    assert line.startswith("Cassandra unreachable for ") and "pass the 20s limit" in line and "\n" not in line
    assert line.endswith("last error: NoHostAvailable: ('Unable to connect to any servers')")


def test_the_outage_counts_from_the_start_of_the_attempt_that_failed():
    clock = FakeClock()

    def slow_failure():  # a Spark job whose executors retried for 25 s before it failed
        clock.now += 25
        raise SinkUnavailable("Cassandra unreachable for 8s (5 attempts) ...; last error: NoHostAvailable: x")

    fatal = Fatal()
    with pytest.raises(StreamOutage, match=r"unreachable for 25s \(1 attempt\), the next retry would pass the 20s"):
        ride_out(slow_failure, Outage("Cassandra", 20, clock=clock), fatal, "batch 3", sleep=clock.sleep)
    assert clock.slept == []  # no sleep past the limit


def test_a_stop_request_ends_the_retries_of_an_outage_at_once():
    clock = FakeClock()
    fatal = Fatal()
    fatal.stop.set()
    call, calls = failing(10_000, NoHostAvailable("down"))
    with pytest.raises(StreamOutage, match="stop requested while Cassandra was unreachable"):
        ride_out(call, Outage("Cassandra", 120, clock=clock), fatal, "batch 2", sleep=clock.sleep)
    assert calls["n"] == 1 and clock.slept == [] and fatal.outage is not None


def test_driver_ride_out_does_not_retry_other_failures():
    call, calls = failing(5, RuntimeError("Job aborted ... ValueError: Exceeds the limit (4300 digits)"))
    with pytest.raises(RuntimeError, match="4300"):
        ride_out(call, Outage("Cassandra", 60), Fatal(), "batch 1", sleep=lambda s: None)
    assert calls["n"] == 1


class FakeSession:
    """execute_concurrent's view of a session: the first `down` rounds fail every request transiently."""

    def __init__(self, down: int, error: Exception | None = None) -> None:
        self.down = down
        self.error = error or NoHostAvailable("down")
        self.rounds: list[list] = []


@pytest.fixture
def fake_concurrent(monkeypatch):
    import types

    def execute_concurrent(session, requests, concurrency, raise_on_first_error):
        assert raise_on_first_error is False
        session.rounds.append([r for r, _ in requests])
        if len(session.rounds) <= session.down:
            return [(False, session.error) for _ in requests]
        return [(True, None) for _ in requests]

    module = types.ModuleType("cassandra.concurrent")
    module.execute_concurrent = execute_concurrent
    monkeypatch.setitem(sys.modules, "cassandra.concurrent", module)
    monkeypatch.setattr("binance_cdc.stream.sink.time.sleep", lambda s: None)


def bare_sink(session, window_s: float):
    from binance_cdc.stream.sink import CassandraSink

    sink = CassandraSink.__new__(CassandraSink)  # no prepared statements needed for execute()
    sink.session, sink.concurrency, sink.window_s = session, 4, window_s
    return sink


def test_sink_resends_the_failed_writes_until_cassandra_answers(fake_concurrent):
    session = FakeSession(down=2)
    bare_sink(session, 10).execute([("w1", None), ("w2", None)])
    assert session.rounds == [["w1", "w2"]] * 3


def test_sink_gives_up_after_its_window_with_sink_unavailable(fake_concurrent, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr("binance_cdc.stream.retry.time.monotonic", clock)
    monkeypatch.setattr("binance_cdc.stream.sink.time.sleep", clock.sleep)
    session = FakeSession(down=10_000)
    # Outage's default clock was bound at import: patch the class default through a fresh instance check.
    from binance_cdc.stream import sink as sink_module

    monkeypatch.setattr(sink_module, "Outage", lambda *a, **k: Outage(*a, clock=clock, **k))
    with pytest.raises(SinkUnavailable, match="Cassandra unreachable for .* the 3s limit; last error: NoHostAvailable"):
        bare_sink(session, 3).execute([("w1", None)])
    assert sum(clock.slept) <= 3


def test_sink_raises_a_write_error_retrying_cannot_fix_at_once(fake_concurrent):
    session = FakeSession(down=1, error=InvalidRequest("bad"))
    with pytest.raises(InvalidRequest):
        bare_sink(session, 10).execute([("w1", None)])
    assert len(session.rounds) == 1


# --- one stream per checkpoint ------------------------------------------------------------------------

HOLD = textwrap.dedent("""
    import sys, time
    from binance_cdc.stream import checkpoint_lock
    handle = checkpoint_lock.acquire(sys.argv[1])
    print("held", flush=True)
    time.sleep(60)
""")


def test_a_second_holder_of_a_checkpoint_is_refused_and_the_lock_dies_with_its_process(tmp_path):
    location = str(tmp_path / "checkpoint")
    assert checkpoint_lock.holder(location) is None
    other = subprocess.Popen([sys.executable, "-c", HOLD, location], stdout=subprocess.PIPE, text=True,
                             cwd=os.getcwd())
    try:
        assert other.stdout.readline().strip() == "held"
        assert checkpoint_lock.holder(location) == other.pid
        with pytest.raises(checkpoint_lock.CheckpointInUse, match=f"another stream \\(pid {other.pid}\\)"):
            checkpoint_lock.acquire(location, attempts=2, interval=0.01)
    finally:
        other.kill()  # kill -9: the kernel releases the flock, no stale lock
        other.wait()
    assert checkpoint_lock.holder(location) is None
    mine = checkpoint_lock.acquire(location)
    assert checkpoint_lock.holder(location) == os.getpid()
    mine.close()


def test_remote_checkpoints_are_not_locked():
    assert checkpoint_lock.lock_path("hdfs:///checkpoints/binance") is None
    assert checkpoint_lock.acquire("s3a://bucket/cp") is None and checkpoint_lock.holder("s3a://b/cp") is None
    assert str(checkpoint_lock.lock_path("file:///tmp/cp")) == "/tmp/cp/stream.lock"
