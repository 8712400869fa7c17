"""Every spark-submit line of README.md, run exactly as written, and the cluster path proven.

The lines are read from README.md's fenced code blocks (any line that runs spark-submit) and run with bash in the
checkout, so the test follows the README. Each run gets fresh topics (its own TOPIC_PREFIX), a fresh
checkpoint and a throwaway Cassandra keyspace, and one Debezium-shaped change of each op (r, c, u, d plus
the delete's tombstone) on latest_prices; the run passes when Cassandra holds exactly the expected rows
(insert and read present, the update's new price, the deleted row gone) and the job exits 0.

A line with `--master spark://...` goes to a standalone master and one worker started here from the pyspark
install (the placeholder address is replaced by theirs, nothing else). The worker runs in an empty temp
directory without PYTHONPATH, where `import binance_cdc` fails; so rows arriving in Cassandra mean the
executors ran the package the job shipped (binance_cdc.zip, which must sit in the executor's work dir).

Lines without `--once` stream until stopped: once the rows are there, the Python driver gets SIGTERM (its
graceful stop) and must exit 0. The test environment sets what the README leaves to the user's env:
PYSPARK_PYTHON (the venv's Python, unless the line sets its own), .venv/bin first on PATH (for a bare
`spark-submit`) and, for a cluster line only, SPARK_LOCAL_IP=127.0.0.1 (this cluster lives on loopback).
Every TCP listener of the job's processes (driver, executors, master, worker) must be on loopback.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

import spark_cluster as sc
from binance_cdc.settings import PROJECT_ROOT

import cdc_helpers as h

pytestmark = pytest.mark.timeout(600)

LINES = sc.readme_spark_submit_lines()
RUN_TIMEOUT = 240  # seconds for one line to deliver its rows (JVM start, one batch, Cassandra)


@pytest.fixture(scope="module")
def keyspace(settings):
    with sc.throwaway_keyspace(settings, f"it_submit_{h.random_suffix()}") as name:
        yield name


@pytest.fixture(scope="module")
def cassandra(settings):
    from binance_cdc.cassandra_conn import session_scope

    with session_scope(settings.cassandra, settings.cassandra_admin) as session:
        yield session


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Started on first use: only the README's cluster lines need it."""
    c = sc.StandaloneCluster(tmp_path_factory.mktemp("spark-standalone"))
    try:
        yield c.start()
    finally:
        c.stop()


def job_env(tmp: Path, prefix: str, keyspace: str, cluster: bool) -> dict[str, str]:
    env = sc.base_env()
    if not cluster:
        # A local line must keep every listener on loopback by itself (the job sees to it).
        del env["SPARK_LOCAL_IP"]
    env.update({
        "TOPIC_PREFIX": prefix, "CASSANDRA_KEYSPACE": keyspace, "SPARK_CHECKPOINT_DIR": str(tmp / "checkpoint"),
        "SPARK_STARTING_OFFSETS": "earliest", "SPARK_TRIGGER_SECONDS": "1",
        "SPARK_LOCAL_DIRS": str(tmp / "spark-local"),  # the driver's scratch space, not a stray /tmp/spark-*
        "PYSPARK_PYTHON": str(sc.VENV_BIN / "python"),
        "PATH": f"{sc.VENV_BIN}:{env.get('PATH', '')}",
    })
    if cluster:  # every batch goes to the executors, however small (the driver writes small ones by default)
        env["STREAM_DRIVER_MAX_ROWS"] = "0"
    return env


def run_line(line: str, env: dict[str, str], log_path: Path, done,
             cluster: sc.StandaloneCluster | None = None) -> tuple[int, set[str]]:
    """Run `line` with bash in the checkout; for a streaming line, stop the Python driver gracefully once
    `done()` holds. Returns the exit status and every TCP address the job's processes (and the cluster's)
    listened on meanwhile; everything the line started is gone afterwards."""
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(["bash", "-c", line], cwd=PROJECT_ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    groups = [proc] + (cluster.procs if cluster else [])
    seen: set[str] = set()
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while proc.poll() is None:
            seen |= sc.listeners({pid for p in groups for pid in sc.session_pids(p.pid)})
            if sc.runs_forever(line) and done():
                driver = sc.python_driver_pid(proc.pid)
                assert driver, "no Python driver under spark-submit"
                os.kill(driver, signal.SIGTERM)  # the job's graceful stop: finish the batch, exit 0
                return proc.wait(60), seen
            if time.monotonic() > deadline:
                raise TimeoutError(f"`{line}` still running after {RUN_TIMEOUT}s:\n{log_path.read_text()[-3000:]}")
            time.sleep(2)
        return proc.returncode, seen  # a streaming line must not end by itself: its status says why
    finally:
        sc.stop_group(proc)


def test_the_readme_has_a_local_and_a_cluster_spark_submit_line():
    assert any(not sc.is_cluster_line(line) for line in LINES), LINES
    assert any(sc.is_cluster_line(line) for line in LINES), LINES


@pytest.mark.parametrize("line", LINES, ids=[re.sub(r"\s+#.*", "", line) for line in LINES])
def test_readme_spark_submit_line_delivers_every_op(line, settings, keyspace, cassandra, request, tmp_path):
    tag = h.random_suffix().upper()
    prefix = f"itsubmit{tag.lower()}"
    cluster = request.getfixturevalue("cluster") if sc.is_cluster_line(line) else None
    command = sc.MASTER_URL.sub(cluster.url, line) if cluster else line
    messages, expected = sc.one_change_of_each_op(tag)
    want = {s: p for s, p in expected.items() if p is not None}
    log_path = tmp_path / "job.log"

    def arrived() -> bool:
        from cassandra import OperationTimedOut, ReadTimeout

        try:
            return sc.latest_prices(cassandra, keyspace, list(expected)) == want
        except (OperationTimedOut, ReadTimeout):  # a busy shared node: ask again at the next poll
            return False

    try:
        with sc.throwaway_topics(settings, prefix) as topics:
            sc.produce_all(settings, next(t for t in topics if t.endswith(".latest_prices")), messages)
            env = job_env(tmp_path, prefix, keyspace, cluster=cluster is not None)
            status, listening = run_line(command, env, log_path, arrived, cluster)
    finally:  # the log stays for a failure's reader; checkpoint and scratch space go
        for name in ("checkpoint", "spark-local"):
            shutil.rmtree(tmp_path / name, ignore_errors=True)
    text = log_path.read_text(errors="replace")
    assert status == 0, f"`{line}` exited {status}:\n{text[-6000:]}"
    # Present with the latest value; the deleted symbol absent. Exact decimal text, scale included.
    assert sc.latest_prices(cassandra, keyspace, list(expected)) == want
    batches = [(int(n), int(d)) for n, d in re.findall(r"processed (\d+) messages, (\d+) dead letters", text)]
    assert sum(n for n, _ in batches) == len(messages) and not any(d for _, d in batches), batches
    assert "latest_prices: c=3 r=1 u=1 d=1 tombstone=1 dead_letter=0" in text, text[-3000:]  # every op decoded

    # Driver, executors, master and worker: every listener on loopback.
    assert listening and all(sc.is_loopback(a) for a in listening), listening
    if cluster:
        assert_ran_on_the_worker(cluster)


def assert_ran_on_the_worker(cluster: sc.StandaloneCluster) -> None:
    """The executors were the worker's, and their binance_cdc was the zip the job shipped."""
    apps = sorted(cluster.work_dir.glob("app-*"))
    assert apps, f"no application ran on the worker:\n{cluster.log('worker')[-3000:]}"
    executor_dirs = [d for d in apps[-1].iterdir() if d.is_dir()]
    assert executor_dirs, f"no executor directory in {apps[-1]}"
    zips = [p for d in executor_dirs for p in d.rglob("binance_cdc.zip")]
    assert zips, f"binance_cdc.zip not shipped to the executors: {[str(p) for p in apps[-1].rglob('*')]}"
    stderr = "\n".join((d / "stderr").read_text(errors="replace") for d in executor_dirs if (d / "stderr").exists())
    assert "Running task" in stderr and "Finished task" in stderr, stderr[-3000:]
    # Where the worker runs, the checkout's package is not importable: only the zip can have served the tasks.
    probe = subprocess.run([str(sc.VENV_BIN / "python"), "-c", "import binance_cdc"], cwd=cluster.cwd,
                           env=sc.base_env(), capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'binance_cdc'" in probe.stderr, probe
