"""`make status` exits non-zero for each broken state of issue 9, finding 5 (a paused connector, a failed
task, Kafka down while Connect says RUNNING, a replication slot that holds WAL and does not advance; the dead
stream is in test_stream_status.py), judged by stack/change_path_verdicts.py from literal inputs, and the
stream line is BAD when Kafka cannot be read (a real read of a closed port, no stack needed)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from binance_cdc.settings import load_settings
from stack import pipeline, process
from stack.change_path_verdicts import (SlotState, confirm_limit_s, judge_connector, judge_heartbeat, judge_slot,
                                        judge_stream, stale_after_s)

NAME = "binance-postgres-cdc"
TOPIC = "__debezium-heartbeat.binance"
INTERVAL = 10.0  # the connector files' heartbeat.interval.ms / 1000


def connect_status(connector: str, *tasks: str, trace: str = "") -> dict:
    return {"name": NAME, "connector": {"state": connector},
            "tasks": [{"id": i, "state": s, **({"trace": trace} if trace else {})} for i, s in enumerate(tasks)]}


def slot(**changes) -> SlotState:
    healthy = dict(name="binance_slot", active=True, wal_status="reserved", held_bytes=150_320,
                   oldest_unconfirmed_beat_age_s=8.0, newest_beat_age_s=3.0)
    return SlotState(**{**healthy, **changes})


def test_the_limits_follow_the_heartbeat_interval():
    assert confirm_limit_s(10) == 80 and confirm_limit_s(1) == 62
    assert stale_after_s(10) == 60 and stale_after_s(60) == 180


def test_a_running_connector_with_running_tasks_is_healthy():
    row = judge_connector(NAME, connect_status("RUNNING", "RUNNING"))
    assert row.healthy and row.detail == f"{NAME} RUNNING, tasks RUNNING"


@pytest.mark.parametrize("status, says", [
    (connect_status("PAUSED", "PAUSED"), "PAUSED, tasks PAUSED"),
    (connect_status("RUNNING", "FAILED", trace="org.postgresql.util.PSQLException: FATAL: slot lost\n\tat x"),
     "tasks FAILED (org.postgresql.util.PSQLException: FATAL: slot lost)"),
    (connect_status("RUNNING"), "tasks no task"),
    (connect_status("UNASSIGNED", "UNASSIGNED"), "UNASSIGNED"),
    (None, "is not registered"),
], ids=["paused", "failed-task", "no-task", "unassigned", "not-registered"])
def test_a_connector_not_fully_running_is_bad(status, says):
    row = judge_connector(NAME, status)
    assert not row.healthy and says in row.detail


def test_a_slot_that_confirms_its_heartbeats_is_healthy_whatever_it_holds():
    row = judge_slot(slot(held_bytes=900_000_000, oldest_unconfirmed_beat_age_s=25.0), "binance_slot", INTERVAL)
    assert row.healthy and "holds 900,000,000 bytes" in row.detail
    assert judge_slot(slot(oldest_unconfirmed_beat_age_s=None), "binance_slot", INTERVAL).healthy


@pytest.mark.parametrize("changes, says", [
    (dict(oldest_unconfirmed_beat_age_s=81.0, held_bytes=52_000_000),
     "NOT ADVANCING: a heartbeat written 81s ago is not confirmed (limit 80s)"),
    (dict(wal_status="lost"), "its WAL is gone"),
    (dict(wal_status="unreserved"), "its WAL goes at the next checkpoint"),
    (dict(active=False), "binance_slot INACTIVE"),
], ids=["not-advancing", "lost", "unreserved", "inactive"])
def test_a_slot_that_holds_wal_and_does_not_advance_is_bad(changes, says):
    row = judge_slot(slot(**changes), "binance_slot", INTERVAL)
    assert not row.healthy and says in row.detail, row


def test_a_missing_slot_is_bad():
    row = judge_slot(None, "binance_slot", INTERVAL)
    assert not row.healthy and row.detail == "binance_slot does not exist"


def test_fresh_heartbeats_in_postgres_and_kafka_are_healthy():
    row = judge_heartbeat(3.2, 4.9, TOPIC, INTERVAL)
    assert row.healthy
    assert row.detail == f"written to Postgres 3s ago, last in {TOPIC} 5s ago (every 10s, stale after 60s)"


@pytest.mark.parametrize("postgres_age, kafka_age, says", [
    (3.0, "unreachable (KafkaError{code=_TRANSPORT})", "Kafka: unreachable"),
    (3.0, 61.0, f"last in {TOPIC} 61s ago"),
    (61.0, 3.0, "written to Postgres 61s ago"),
    (None, 3.0, "none written to Postgres"),
    (3.0, f"no topic {TOPIC}", "Kafka: no topic"),
], ids=["kafka-down", "kafka-stale", "postgres-stale", "never-written", "no-topic"])
def test_a_stale_or_unreadable_heartbeat_is_bad(postgres_age, kafka_age, says):
    row = judge_heartbeat(postgres_age, kafka_age, TOPIC, INTERVAL)
    assert not row.healthy and says in row.detail, row


def test_the_stream_line_is_bad_when_kafka_cannot_be_read(tmp_path, monkeypatch):
    """Kafka down while the stream's process lives: its lag is unknown and the change path is broken."""
    monkeypatch.setattr(process, "RUN", tmp_path / "run")
    settings = load_settings("kafka", "spark", env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
                                                    "SPARK_CHECKPOINT_DIR": str(tmp_path / "checkpoint")})
    [row] = pipeline.stream_rows(settings, None, {})
    assert not row.healthy and "Kafka lag unknown" in row.detail, row


BROKEN = {
    "paused connector": judge_connector(NAME, connect_status("PAUSED", "PAUSED")),
    "failed task": judge_connector(NAME, connect_status("RUNNING", "FAILED")),
    "Kafka down while Connect says RUNNING": judge_heartbeat(3.0, "unreachable (no broker)", TOPIC, INTERVAL),
    "slot not advancing": judge_slot(slot(oldest_unconfirmed_beat_age_s=300.0), "binance_slot", INTERVAL),
    "stream stalled elsewhere": judge_stream("not started here", True, 5_000, 600.0, "last batch 7 600s ago"),
}


@pytest.mark.parametrize("state", BROKEN)
def test_status_exits_non_zero_for_each_broken_state(state, monkeypatch, capsys):
    from stack import __main__ as stack_main

    monkeypatch.setattr(stack_main, "service", lambda name: SimpleNamespace(
        status=lambda settings: {"name": name, "up": True, "address": "127.0.0.1:1", "rss_mib": None}))
    healthy = [judge_connector(NAME, connect_status("RUNNING", "RUNNING")),
               judge_slot(slot(), "binance_slot", INTERVAL), judge_heartbeat(3.0, 4.0, TOPIC, INTERVAL)]
    monkeypatch.setattr(pipeline, "rows", lambda settings: healthy)
    assert stack_main.status(None, list(stack_main.SERVICE_MODULES)) == 0
    monkeypatch.setattr(pipeline, "rows", lambda settings: [*healthy, BROKEN[state]])
    assert stack_main.status(None, list(stack_main.SERVICE_MODULES)) == 1
    assert f"{BROKEN[state].name:<10} BAD" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["not started here (make demo starts it)", "running (pid 42)"])
def test_messages_waiting_with_no_recent_batch_is_a_stalled_stream_wherever_it_runs(where):
    """A stream on a cluster that died, or one here that hangs: only the lag and the last batch tell."""
    row = judge_stream(where, True, 5_000, 600.0, "last batch 7 600s ago")
    assert not row.healthy and "STALLED" in row.detail and "5,000 messages" in row.detail
    assert not judge_stream(where, True, 10, None, "no batch yet").healthy


def test_a_recent_batch_or_no_lag_is_a_healthy_stream():
    assert judge_stream("running (pid 42)", True, 5_000, 3.0, "last batch 7 3s ago").healthy
    assert judge_stream("not started here (make demo starts it)", True, 0, 9_999.0, "last batch 7").healthy
    assert not judge_stream("DEAD (its pid file is stale)", False, 0, 5.0, "last batch 7 5s ago").healthy
    row = judge_stream("running (pid 42)", True, "Kafka: no broker", 3.0, "last batch 7 3s ago")
    assert not row.healthy and "Kafka lag unknown" in row.detail
