"""`make chaos` as a test: kill -9 Kafka Connect, the Kafka broker, the streaming job, Cassandra and Postgres
one at a time under the mixed load, recover as a user does, and require 0 missing, 0 extra and 0 differing
rows in reconcile after each; the poison messages must each become a dead letter while the stream goes on.

It kills the services of the stack `.env` names (the local one `make test` brought up), so it is collected
after every other test (tests/conftest.py). The table lands in .local/logs/chaos.md, as with `make chaos`.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from binance_cdc.settings import PROJECT_ROOT
from stack.chaos.faults import FAULTS

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(1800)]


def test_every_fault_is_recovered_and_reconciles_to_zero():
    logs = PROJECT_ROOT / ".local" / "logs"
    for stale in ("chaos.md", "chaos.json"):  # a result must come from this run
        (logs / stale).unlink(missing_ok=True)
    done = subprocess.run([sys.executable, "-m", "stack.chaos"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=1700)
    table = (logs / "chaos.md").read_text() if (logs / "chaos.md").exists() else "(no table)"
    print(table)
    assert done.returncode == 0, f"chaos suite exited {done.returncode}:\n{table}\n{done.stderr[-3000:]}"
    results = json.loads((logs / "chaos.json").read_text())
    assert [r["fault"] for r in results] == ["none (baseline)", *(f.name for f in FAULTS), "poison messages"]
    for r in results:
        assert r["passed"] and r["rows_written"] > 0, r
        assert (r["missing"], r["extra"], r["differing"], r["reconcile_exit"]) == (0, 0, 0, 0), r
        assert r["recovery_s"] is not None and r["lag_ok_s"] is not None, r
