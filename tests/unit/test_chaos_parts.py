"""The chaos suite's pure parts: what counts as passed, the report, and the guard that keeps its kill -9 on
this checkout's processes only."""

from __future__ import annotations

import json
import os
import subprocess

from stack.chaos import faults
from stack.chaos.load import copy_text, now_ms
from stack.chaos.report import Result, markdown, save


def clean(**changes) -> Result:
    base = dict(fault="Cassandra", rows_written=5000, recovery_s=31.0, lag_ok_s=40.0, missing=0, extra=0,
                differing=0, reconcile_exit=0)
    return Result(**{**base, **changes})


def test_a_fault_passes_only_when_recovered_caught_up_and_reconciled_to_zero():
    assert clean().passed
    for bad in (dict(recovery_s=None), dict(lag_ok_s=None), dict(missing=1), dict(extra=2), dict(differing=1),
                dict(reconcile_exit=1), dict(missing=None)):
        assert not clean(**bad).passed, bad
    assert not clean(notes=["FAIL non-UTF-8: no dead letter at offset 7"]).passed


def test_the_table_has_a_row_per_fault_and_the_json_says_passed(tmp_path):
    results = [clean(), clean(fault="Postgres", missing=3)]
    text = markdown(results, "header")
    rows = [line for line in text.splitlines() if line.startswith("| Cassandra") or line.startswith("| Postgres")]
    assert rows[0].endswith("| ok |") and rows[1].endswith("| FAILED |")
    assert "| 5,000 |" in rows[0] and "| 31.0 | 40.0 | 0 | 0 | 0 | exit 0 |" in rows[0]
    _, js = save(results, text, tmp_path)
    assert [r["passed"] for r in json.loads(js.read_text())] == [True, False]


def test_only_this_checkouts_processes_count_as_ours():
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        assert not faults.ours(sleeper.pid)
        assert faults.ours(os.getpid()) == (str(faults.PROJECT) + "/" in open("/proc/self/cmdline").read()
                                            .replace("\0", " "))
        assert not faults.ours(1)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_copy_rows_are_tab_separated_with_exact_text():
    moment = now_ms()
    assert moment.microsecond % 1000 == 0 and moment.tzinfo is not None
    text = copy_text([("CHAOS1USDT", 7, "0.10000000", moment, True)]).getvalue()
    assert text == f"CHAOS1USDT\t7\t0.10000000\t{moment.isoformat()}\ttrue\n"
