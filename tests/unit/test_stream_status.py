"""`make status` on the stream (issue 9, findings 1 and 5): a stream that died (stale pid file) is DEAD and
makes status exit 1; a stream restarted by hand (pid file stale, checkpoint lock held) is seen running and
adopted, so `make down` stops it and `make demo` starts no second one. Temporary run dir and checkpoint,
a child process as the stream: no stack needed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from stack import pipeline, process

HOLD = textwrap.dedent("""
    import sys, time
    from binance_cdc.stream import checkpoint_lock
    handle = checkpoint_lock.acquire(sys.argv[1])
    print("held", flush=True)
    time.sleep(60)
""")


@pytest.fixture
def stack_dirs(tmp_path, monkeypatch):
    monkeypatch.setattr(process, "RUN", tmp_path / "run")
    (tmp_path / "run").mkdir()
    return SimpleNamespace(spark=SimpleNamespace(checkpoint_dir=str(tmp_path / "checkpoint")))


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_stream_never_started_here_is_not_an_error(stack_dirs):
    assert pipeline.stream_process(stack_dirs) == ("not started here (make demo starts it)", True)


def test_a_dead_stream_with_a_stale_pid_file_is_reported_dead(stack_dirs):
    process.pid_file(pipeline.STREAM).write_text(str(dead_pid()))
    state, healthy = pipeline.stream_process(stack_dirs)
    assert state.startswith("DEAD (its pid file is stale") and not healthy


def test_a_stream_restarted_by_hand_is_found_by_its_checkpoint_lock_and_adopted(stack_dirs):
    process.pid_file(pipeline.STREAM).write_text(str(dead_pid()))
    stream = subprocess.Popen([sys.executable, "-c", HOLD, stack_dirs.spark.checkpoint_dir], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert stream.stdout.readline().strip() == "held"
        state, healthy = pipeline.stream_process(stack_dirs)
        assert state.startswith(f"running (pid {stream.pid}, holds the checkpoint") and healthy
        assert pipeline.adopt_stream(stack_dirs) == stream.pid
        assert process.read_pid(pipeline.STREAM) == stream.pid  # make down now stops it
        assert pipeline.stream_process(stack_dirs) == (f"running (pid {stream.pid})", True)
    finally:
        stream.kill()
        stream.wait()
    assert pipeline.stream_process(stack_dirs)[1] is False  # it died: DEAD again


def test_status_exits_non_zero_when_the_stream_is_dead(monkeypatch, capsys):
    from stack import __main__ as stack_main

    monkeypatch.setattr(stack_main, "service", lambda name: SimpleNamespace(
        status=lambda settings: {"name": name, "up": True, "address": "127.0.0.1:1", "rss_mib": None}))
    monkeypatch.setattr(pipeline, "rows", lambda settings: [
        pipeline.Row("connector", True, "RUNNING"), pipeline.Row("stream", False, "DEAD (its pid file is stale)")])
    assert stack_main.status(None, list(stack_main.SERVICE_MODULES)) == 1
    assert "stream     BAD   DEAD" in capsys.readouterr().out
    monkeypatch.setattr(pipeline, "rows", lambda settings: [pipeline.Row("stream", True, "running (pid 1)")])
    assert stack_main.status(None, list(stack_main.SERVICE_MODULES)) == 0
