"""The stream rides out a Cassandra outage of 45 s, ends a longer one with one clear error
line, and refuses a second stream on its checkpoint (issue 9, finding 1).

The shared Cassandra is never stopped: the job reaches it through a TCP proxy this module starts
(tests/integration/tcp_proxy.py, CASSANDRA_PORT=<proxy port>), and "Cassandra down" means the proxy drops
every connection and refuses new ones, as a killed node does. Everything else is throwaway as in
test_stream_once.py: five topics under a random prefix, a keyspace made from cql/ with its own writer
role, checkpoints under a tmp dir. Changes (upserts, deletes and their tombstones, every one with a higher
LSN) are produced while the proxy is cut, and the test checks that Cassandra ends up holding exactly what
the latest LSN of every key says.
"""

from __future__ import annotations

import re
import threading
import time
from decimal import Decimal

import pytest

from binance_cdc import datasets
from binance_cdc.cassandra_conn import session_scope
from binance_cdc.stream.sink import Message
from tests.stream_process import StreamProcess

import cdc_helpers as h
from tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(300)

DATASETS = list(datasets.DATASETS.values())
# The ridden-out outage: longer than an executor's retries across Spark's 3 task attempts (about 3 x 8 s),
# so the driver's re-run of the batch is exercised too, not only the executors' resends.
CUT_S = 45
RIDE_LIMIT_S = 90   # STREAM_OUTAGE_LIMIT_S of the job that must ride it out
SHORT_LIMIT_S = 12  # ... and of the job that must give up
EXECUTOR_RETRY = re.compile(r"Cassandra: \d+ of \d+ writes failed .*; retry \d+|Cassandra: connect failed")
DRIVER_RETRY = re.compile(r"batch \d+: Cassandra unreachable; retry \d+")


class Changes:
    """An endless, valid change history over 3 keys per dataset: LSNs only grow; a key is created, updated
    (a non-key decimal changes), sometimes deleted (then its tombstone) and created again."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.tag = h.random_suffix().upper()
        self.lsn = 10_000
        self.n = 0
        self.exists: dict[tuple[str, int], bool] = {}
        self.sent: list[Message] = []

    def next(self) -> list[Message]:
        d = DATASETS[self.n % len(DATASETS)]
        k = (self.n // len(DATASETS)) % 3
        self.n += 1
        self.lsn += 10
        base = h.sample_row(d, f"T{self.tag}K{k}USDT", k)
        row = {**base, h.non_key_decimal(d): Decimal(f"{self.n}.{self.n:08d}")}
        if not self.exists.get((d.name, k)):
            op = "c"
        else:
            op = "d" if self.n % 7 == 0 else "u"
        self.exists[(d.name, k)] = op != "d"
        m = h.change_message(d, op, row, self.lsn, self.prefix)
        out = [m, h.tombstone_message(m)] if op == "d" else [m]
        self.sent += out
        return out


class Feeder(threading.Thread):
    """Produces Changes at a steady pace until stopped (the producer talks to Kafka, never the proxy)."""

    def __init__(self, settings, changes: Changes, per_second: float = 20) -> None:
        super().__init__(daemon=True)
        self.settings, self.changes, self.pause = settings, changes, 1 / per_second
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        from confluent_kafka import Producer

        from binance_cdc.kafka_client import client_conf

        producer = Producer(client_conf(self.settings.kafka))
        try:
            while not self.done.is_set():
                for m in self.changes.next():
                    producer.produce(m.topic, key=m.key, value=m.value)
                producer.poll(0)
                time.sleep(self.pause)
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc
        finally:
            if producer.flush(30) != 0:
                self.error = self.error or RuntimeError("undelivered messages")

    def stop(self) -> list[Message]:
        self.done.set()
        self.join(60)
        if self.error:
            raise self.error
        return self.changes.sent


@pytest.fixture(scope="module")
def world(settings, tmp_path_factory):
    prefix = f"itout{h.random_suffix()}"
    topics = h.topics_for(prefix)
    with h.throwaway_keyspace(settings, label="itout") as keyspace:
        h.create_topics(settings, topics)
        try:
            yield keyspace, prefix, tmp_path_factory.mktemp("outage")
        finally:
            h.delete_topics(settings, topics)


def job_env(world, proxy: TcpProxy, checkpoint: str, limit_s: float) -> dict[str, str]:
    keyspace, prefix, tmp = world
    return h.stream_env(keyspace, prefix, tmp / checkpoint, CASSANDRA_HOSTS="127.0.0.1",
                        CASSANDRA_PORT=str(proxy.port), STREAM_OUTAGE_LIMIT_S=str(limit_s))


def converged(world, messages):
    keyspace = world[0]
    expected = h.latest_state(messages)

    def check():
        with session_scope(keyspace.cassandra, keyspace.writer) as session:
            return h.cassandra_state(session, keyspace.name, messages) == expected
    return check


@pytest.fixture(scope="module")
def riding(world, settings):
    """The job that must ride out the cut, running through its proxy."""
    with TcpProxy(settings.cassandra.hosts[0], settings.cassandra.port) as proxy:
        job = StreamProcess(job_env(world, proxy, "ride", RIDE_LIMIT_S), world[2] / "ride.log")
        job.start()
        try:
            job.wait_started()
            yield job, proxy
        finally:
            job.stop()


def test_a_second_stream_on_the_same_checkpoint_is_refused(riding, world):
    job, proxy = riding
    second = StreamProcess(job_env(world, proxy, "ride", RIDE_LIMIT_S), world[2] / "second.log")
    second.start()
    assert second.wait_exit(60) == 1
    errors = [line for line in second.text().splitlines() if " ERROR " in line]
    assert len(errors) == 1 and f"another stream (pid {job.pid}) is running on checkpoint" in errors[0], \
        second.tail()
    assert "spark: session" not in second.text()  # refused before Spark started
    job.check_alive()


def test_a_45s_cassandra_outage_is_ridden_out_without_loss(riding, world, settings):
    job, proxy = riding
    started = time.monotonic()
    changes = Changes(world[1])
    feeder = Feeder(settings, changes)
    feeder.start()
    try:
        h.wait_for(lambda: len(changes.sent) > 40, 30, "first changes produced")
        h.wait_for(lambda: EXECUTOR_RETRY.search(job.text()) is None and "processed" in job.text(), 60,
                   "a batch written through the proxy")
        accepted_before = proxy.accepted
        proxy.cut()
        cut_at = time.monotonic()
        time.sleep(CUT_S)
        job.check_alive()
        proxy.restore()
        restored_at = time.monotonic()
        time.sleep(3)
    finally:
        messages = feeder.stop()
    h.wait_for(converged(world, messages), 90, "Cassandra equal to the latest LSN of every key", poll=3)
    recovered_at = time.monotonic()
    job.check_alive()  # rode it out: never exited
    text = job.text()
    assert EXECUTOR_RETRY.search(text), f"no executor retry logged during a {CUT_S}s cut:\n{job.tail(60)}"
    assert DRIVER_RETRY.search(text) and re.search(r"batch \d+: written after \d+ retries", text), job.tail(60)
    assert accepted_before > 0 and proxy.accepted > accepted_before  # reconnected through the proxy
    assert " ERROR spark_streaming" not in text
    print(f"\n{len(messages)} messages produced (cut {CUT_S}s at +{cut_at - started:.0f}s); converged "
          f"{recovered_at - restored_at:.0f}s after the restore; {len(EXECUTOR_RETRY.findall(text))} executor "
          f"and {len(DRIVER_RETRY.findall(text))} driver retries logged")
    assert job.stop() == 0


def test_an_outage_longer_than_the_limit_ends_the_job_with_one_clear_error_line(world, settings):
    with TcpProxy(settings.cassandra.hosts[0], settings.cassandra.port) as proxy:
        job = StreamProcess(job_env(world, proxy, "short", SHORT_LIMIT_S), world[2] / "short.log")
        job.start()
        try:
            job.wait_started()
            changes = Changes(world[1])
            h.produce_all(settings, [m for _ in range(10) for m in changes.next()])
            h.wait_for(lambda: re.search(r"batch \d+: processed [1-9]", job.text()), 120,
                       "a batch written through the proxy")
            proxy.cut()
            cut_at = time.monotonic()
            h.produce_all(settings, changes.next() + changes.next())
            code = job.wait_exit(SHORT_LIMIT_S + 90)
            ended_after = time.monotonic() - cut_at
        finally:
            job.stop()
    text = job.text()
    errors = [line for line in text.splitlines() if " ERROR spark_streaming" in line]
    print(f"\nexit {code} {ended_after:.0f}s after the cut; the error line:\n{errors}")
    assert code == 1, job.tail(60)
    assert len(errors) == 1, job.tail(60)
    assert re.search(rf"stream stopped \(STREAM_OUTAGE_LIMIT_S={SHORT_LIMIT_S}\): Cassandra unreachable for "
                     rf"\d+s \(\d+ attempts?\), the next retry would pass the {SHORT_LIMIT_S}s limit; last error: "
                     rf"(NoHostAvailable|OperationTimedOut|Connection\w+): ", errors[0]), errors[0]
    assert ended_after < SHORT_LIMIT_S + 60  # bounded: not minutes of Spark task retries on top
