"""`make status`'s judgement of the change path, as pure functions of what stack/pipeline.py read (no I/O
here, so every broken state has a unit test: tests/unit/test_change_path_verdicts.py).

The rules (issue 9, finding 5):
- connector: the connector and every task RUNNING; PAUSED, FAILED, UNASSIGNED or no task is BAD.
- slot: BAD when missing, inactive, `lost`, or `unreserved` (Postgres removes its WAL at the next
  checkpoint), and BAD when it is not advancing: a heartbeat the connector wrote more than
  `confirm_limit_s` ago (60 s plus two heartbeat intervals: the heartbeat, Connect's 10 s offset flush and
  Debezium's confirmation in between) lies beyond the slot's confirmed_flush_lsn. The bytes of WAL it holds
  are shown but not judged: they grow with the load while the slot is healthy, whereas an unconfirmed old
  heartbeat means the held WAL no longer shrinks. A catch-up longer than the limit is reported too: the
  change path is then that far behind.
- heartbeat (end-to-end liveness of the connector, even when the market is quiet): the newest heartbeat row
  in Postgres and the newest heartbeat message in Kafka are both younger than `stale_after_s` (three
  intervals, at least 60 s). Kafka unreachable is BAD here even while Connect's REST says RUNNING.
- stream: its process (from the pid file and the checkpoint lock) must not be DEAD, its Kafka lag must be
  readable, and messages must not wait longer than `STREAM_STALL_S` for it: lag > 0 while its last
  finished batch is older than that is BAD, whether the stream runs here, elsewhere (a cluster) or nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    name: str
    healthy: bool
    detail: str


@dataclass(frozen=True)
class SlotState:
    """One replication slot with the heartbeats written for it (ages in seconds, None when there is none)."""

    name: str
    active: bool
    wal_status: str
    held_bytes: int
    oldest_unconfirmed_beat_age_s: float | None  # None: every heartbeat written is confirmed
    newest_beat_age_s: float | None  # None: no heartbeat row was ever written for this slot


def confirm_limit_s(heartbeat_interval_s: float) -> float:
    return 60.0 + 2 * heartbeat_interval_s


def stale_after_s(heartbeat_interval_s: float) -> float:
    return max(60.0, 3 * heartbeat_interval_s)


def judge_connector(name: str, status: dict | None) -> Row:
    """`status`: Kafka Connect's GET /connectors/<name>/status answer, None when it is not registered."""
    if status is None:
        return Row("connector", False, f"{name} is not registered (make up registers it)")
    state = status.get("connector", {}).get("state", "?")
    tasks = status.get("tasks", [])
    task_states = ",".join(t.get("state", "?") for t in tasks) or "no task"
    healthy = state == "RUNNING" and bool(tasks) and all(t.get("state") == "RUNNING" for t in tasks)
    trace = next((t.get("trace", "").splitlines()[0] for t in tasks if t.get("trace")), "")
    return Row("connector", healthy, f"{name} {state}, tasks {task_states}" + (f" ({trace[:120]})" if trace else ""))


def judge_slot(slot: SlotState | None, name: str, heartbeat_interval_s: float) -> Row:
    if slot is None:
        return Row("slot", False, f"{name} does not exist")
    held = f"{slot.name} {'active' if slot.active else 'INACTIVE'}, holds {slot.held_bytes:,} bytes of WAL " \
           f"({slot.wal_status})"
    if slot.wal_status == "lost":
        return Row("slot", False, f"{held}: its WAL is gone (see README, Troubleshooting)")
    if slot.wal_status == "unreserved":
        return Row("slot", False, f"{held}: beyond max_slot_wal_keep_size, its WAL goes at the next checkpoint")
    limit = confirm_limit_s(heartbeat_interval_s)
    stuck = slot.oldest_unconfirmed_beat_age_s
    if stuck is not None and stuck > limit:
        return Row("slot", False, f"{held}; NOT ADVANCING: a heartbeat written {stuck:.0f}s ago is not confirmed "
                                  f"(limit {limit:.0f}s)")
    if not slot.active:
        return Row("slot", False, held)
    return Row("slot", True, f"{held}; heartbeats confirmed within {limit:.0f}s")


def judge_heartbeat(newest_beat_age_s: float | None, kafka_age_s: float | str, topic: str,
                    heartbeat_interval_s: float) -> Row:
    """`kafka_age_s`: age of the newest message in the heartbeat topic, or the text saying why it is unknown."""
    limit = stale_after_s(heartbeat_interval_s)
    problems = []
    if newest_beat_age_s is None:
        postgres = "none written to Postgres (is heartbeat.action.query set?)"
        problems.append(postgres)
    else:
        postgres = f"written to Postgres {newest_beat_age_s:.0f}s ago"
        if newest_beat_age_s > limit:
            problems.append(postgres)
    if isinstance(kafka_age_s, str):
        kafka = f"Kafka: {kafka_age_s}"
        problems.append(kafka)
    else:
        kafka = f"last in {topic} {kafka_age_s:.0f}s ago"
        if kafka_age_s > limit:
            problems.append(kafka)
    every = f"every {heartbeat_interval_s:g}s, stale after {limit:.0f}s"
    if problems:
        return Row("heartbeat", False, f"STALE: {'; '.join(problems)} ({every})")
    return Row("heartbeat", True, f"{postgres}, {kafka} ({every})")


STREAM_STALL_S = 120  # a live stream finishes a batch every few seconds while messages wait


def judge_stream(process_state: str, process_ok: bool, lag: int | str, last_batch_age_s: float | None,
                 batch: str) -> Row:
    """`lag`: messages in the topics after the last batch's offsets, or the text saying why it is unknown;
    `last_batch_age_s`: None when no batch was ever recorded."""
    if isinstance(lag, str):  # Kafka unreadable: the stream cannot move either, whatever its process says
        return Row("stream", False, f"{process_state}; {batch}; Kafka lag unknown ({lag})")
    detail = f"{process_state}; {batch}; Kafka lag {lag:,} messages"
    if lag and (last_batch_age_s is None or last_batch_age_s > STREAM_STALL_S):
        return Row("stream", False, f"STALLED: {detail}, and no batch for more than {STREAM_STALL_S}s "
                                    "(no stream consumes them: make demo, or look at the stream's log)")
    return Row("stream", process_ok, detail)
