"""python -m stack.chaos [--faults NAME,...] [--rate ROWS_PER_S] [--no-poison]: see stack/chaos/__init__.py."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import datetime, timezone

from binance_cdc.settings import script_settings
from stack.chaos import faults, report, suite
from stack.paths import LOGS

log = logging.getLogger("chaos")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.chaos", description=__doc__)
    parser.add_argument("--faults", default="", help="comma-separated words matching fault names (default: all)")
    parser.add_argument("--rate", type=float, default=200.0, help="rows per second the load writes")
    parser.add_argument("--no-poison", action="store_true", help="skip the poison messages")
    args = parser.parse_args(argv)
    settings = script_settings()
    if settings is None:
        return 2
    logging.getLogger("cassandra").setLevel(logging.ERROR)
    words = [w.strip().lower() for w in args.faults.split(",") if w.strip()]
    chosen = tuple(f for f in faults.FAULTS if not words or any(w in f.name.lower() for w in words))
    began = time.monotonic()
    results = suite.run_suite(settings, chosen, args.rate, not args.no_poison)
    header = (f"Chaos suite, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {time.monotonic() - began:.0f} s, "
              f"load {args.rate:g} rows/s")
    text = report.markdown(results, header)
    print(text)
    md, js = report.save(results, text, LOGS)
    print(f"saved {md} and {js}")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
