"""The chaos suite's sequence: a baseline, each fault in turn under the load, then the poison messages.

Per fault: the load writes for WARM_S, the process is killed with SIGKILL, the fault is left for HOLD_S (a
user takes a moment to notice), then the user's recovery runs until `make status` exits 0; the end-to-end
lag is watched until it is under LAG_OK_S; the load goes on until the fault's window (WINDOW_S) is over,
then pauses while the bridge and the stream catch up (`stack.demo.catch_up`, the demo's own loop) and
`make reconcile` runs. Times are from the kill.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time

from stack import demo
from stack.chaos import faults, poison
from stack.chaos.load import MixedLoad, purge
from stack.chaos.probe import Probe
from stack.chaos.report import Result
from stack.paths import PROJECT

log = logging.getLogger("chaos")

WARM_S = 5.0
HOLD_S = 5.0
WINDOW_S = 25.0
LAG_OK_S = 5.0
LAG_TIMEOUT_S = 240.0
START_TIMEOUT_S = 300.0


def wait_lag_ok(probe: Probe, began: float, timeout: float = LAG_TIMEOUT_S) -> float | None:
    """Seconds from `began` until the lag is under LAG_OK_S; None after `timeout`."""
    while time.monotonic() - began < timeout:
        lag = probe.lag()
        if lag is not None and lag < LAG_OK_S:
            return time.monotonic() - began
        time.sleep(1)
    return None


def settle(settings, result: Result) -> None:
    """Load paused: the bridge and the stream catch up, then `make reconcile` gives the three counts."""
    diffs = demo.catch_up(settings)
    result.missing = sum(len(keys) for d in diffs for keys in d.missing.values())
    result.extra = sum(len(keys) for d in diffs for keys in d.extra.values())
    result.differing = sum(len(keys) for d in diffs for keys in d.differing.values())
    done = subprocess.run([sys.executable, "-m", "binance_cdc.serve.reconcile", "--settle", "30"], cwd=PROJECT,
                          capture_output=True, text=True, timeout=600)
    result.reconcile_exit = done.returncode
    if done.returncode != 0:
        result.notes.append("FAIL reconcile: " + " | ".join(done.stdout.strip().splitlines()[-8:]))


def run_fault(settings, fault: faults.Fault, load: MixedLoad, probe: Probe) -> Result:
    result = Result(fault.name)
    rows0, failures0 = load.rows, load.failures
    load.resume()
    window_began = time.monotonic()
    time.sleep(WARM_S)
    try:
        faults.kill9(fault)
    except RuntimeError as exc:
        result.notes.append(f"FAIL {exc}")
        load.pause()
        return result
    killed = time.monotonic()
    time.sleep(HOLD_S)
    seconds, result.steps, last_status = faults.recover(settings)
    result.recovery_s = None if seconds is None else time.monotonic() - killed
    if seconds is None:
        result.notes.append("FAIL status never healthy: " + " | ".join(last_status.strip().splitlines()))
    result.lag_ok_s = wait_lag_ok(probe, killed)
    time.sleep(max(0.0, WINDOW_S - (time.monotonic() - window_began)))
    load.pause()
    result.rows_written, result.failed_transactions = load.rows - rows0, load.failures - failures0
    if faults.ensure_stream(settings):  # it died after status was last healthy: a user's make demo again
        result.steps.append("stream started again after the window")
    settle(settings, result)
    log.info("%s: %s", fault.name, result)
    return result


def run_poison(settings, load: MixedLoad, probe: Probe) -> Result:
    from binance_cdc.kafka_client import topics

    result = Result("poison messages")
    topic = topics(settings.kafka)[0]  # recent_trades, which the load writes most
    rows0 = load.rows
    load.resume()
    began = time.monotonic()
    time.sleep(WARM_S)
    batch = poison.send(settings, topic)
    poison.dead_letters(settings, probe.session(), topic, batch)
    for p in batch:
        if p.error is None:
            result.notes.append(f"FAIL {p.kind}: no dead letter at offset {p.offset}")
        elif p.reason not in p.error:
            result.notes.append(f"FAIL {p.kind}: dead letter says {p.error[:100]!r}")
    result.notes.append(f"{sum(p.error is not None for p in batch)} of {len(batch)} dead-lettered: "
                        + ", ".join(p.kind for p in batch))
    result.recovery_s = 0.0 if faults.stream_alive() else None  # the stream must not have stopped
    result.lag_ok_s = wait_lag_ok(probe, began)
    time.sleep(max(0.0, WINDOW_S - (time.monotonic() - began)))
    load.pause()
    result.rows_written, result.failed_transactions = load.rows - rows0, 0
    settle(settings, result)
    return result


def run_suite(settings, chosen: tuple[faults.Fault, ...] = faults.FAULTS, rate: float = 200.0,
              with_poison: bool = True) -> list[Result]:
    results: list[Result] = []
    ready, _, status = faults.recover(settings, timeout=120)  # everything up, the stream running
    if ready is None:
        raise RuntimeError("the stack is not healthy before the suite starts:\n" + status)
    log.info("purged %d rows an earlier run left", purge(settings))
    load, probe = MixedLoad(settings, rate), Probe(settings)
    load.start()
    try:
        baseline = Result("none (baseline)")
        load.resume()
        began = time.monotonic()
        baseline.lag_ok_s = wait_lag_ok(probe, began, START_TIMEOUT_S)
        baseline.recovery_s = 0.0
        time.sleep(max(0.0, WINDOW_S - (time.monotonic() - began)))
        load.pause()
        baseline.rows_written = load.rows
        settle(settings, baseline)
        results.append(baseline)
        for fault in chosen:
            results.append(run_fault(settings, fault, load, probe))
        if with_poison:
            results.append(run_poison(settings, load, probe))
    finally:
        load.stop()
        probe.close()
    # Leave the pipeline's tables as they were: the deletes flow through like any change.
    log.info("removed the load's %d rows; letting the deletes through", purge(settings))
    demo.catch_up(settings)
    return results
