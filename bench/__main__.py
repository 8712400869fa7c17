"""Benchmark runner: `python -m bench [module ...]` (default: every module in BENCHES).

Each module exposes `run(settings) -> list[dict]` with entries {"name", "ours", "baseline", "unit", "ratio"}
(ratio > 1 means ours is better; extra keys are kept). The runner prints one table and merges the
entries by name into bench/results.json (a JSON list), so benches can be rerun one at a time.
Needs: the local stack up (make up) and the settings of every group (.env).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from binance_cdc.settings import load_dotenv_file, load_settings

BENCHES = ("bench.extraction", "bench.cdc", "bench.bridge")
BACKGROUND_JOBS = ("spark_streaming", "simulator")
RESULTS = Path(__file__).resolve().parent / "results.json"

log = logging.getLogger("bench")


def merge(existing: list[dict], new: list[dict]) -> list[dict]:
    by_name = {entry["name"]: entry for entry in existing}
    by_name.update({entry["name"]: entry for entry in new})
    return sorted(by_name.values(), key=lambda e: e["name"])


def cell(value, spec: str) -> str:
    """A number formatted by `spec`; an entry without a baseline shows a dash."""
    return format(value, spec) if value is not None else "-"


def table(entries: list[dict]) -> str:
    header = f"{'name':<22} {'ours':>14} {'baseline':>14} {'unit':<10} {'ratio':>8}  goal"
    lines = [header, "-" * len(header)]
    for e in entries:
        lines.append(
            f"{e['name']:<22} {cell(e['ours'], ',.3f'):>14} {cell(e['baseline'], ',.3f'):>14} {e['unit']:<10} "
            f"{cell(e['ratio'], '.2f'):>8}  {e.get('goal', '')}"
        )
    return "\n".join(lines)


@contextmanager
def alone(simulator_port: int) -> Iterator[None]:
    """Benchmarks share two cores with the stack: stop the background jobs `make demo` leaves running (its
    stream, the simulator), say so, and start them again afterwards."""
    from stack import demo, process

    running = [job for job in BACKGROUND_JOBS if process.read_pid(job)]
    for job in running:
        log.warning("bench: stopping %s (left running by make demo) so it does not compete; restarted after", job)
        process.stop(job)
    try:
        yield
    finally:
        if "spark_streaming" in running:
            demo.ensure_stream_running()
        if "simulator" in running:
            demo.ensure_simulator_running(simulator_port)
        if running:
            log.warning("bench: restarted %s", ", ".join(running))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("cassandra").setLevel(logging.ERROR)
    load_dotenv_file()
    settings = load_settings()
    modules = (argv if argv else sys.argv[1:]) or list(BENCHES)
    entries: list[dict] = []
    with alone(settings.local_ports.simulator_port):
        for name in modules:
            module = importlib.import_module(name)
            log.info("bench %s: running (load average %.2f)", name, os.getloadavg()[0])
            entries.extend(module.run(settings))
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.write_text(json.dumps(merge(existing, entries), indent=2) + "\n")
    print(table(entries))  # the CLI's final table
    print(f"merged into {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
