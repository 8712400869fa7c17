"""The chaos suite's results: one row per fault, as a Markdown table (printed, and saved with the JSON under
.local/logs/chaos.md and chaos.json)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Result:
    fault: str
    rows_written: int = 0  # rows changed by the load's committed transactions during this fault's window
    failed_transactions: int = 0  # the load's transactions that failed (Postgres down)
    recovery_s: float | None = None  # kill -9 -> `make status` exits 0 (None: never)
    lag_ok_s: float | None = None  # kill -9 -> end-to-end lag back under LAG_OK_S (None: never)
    missing: int | None = None  # reconcile, summed over tables and over Cassandra and serving
    extra: int | None = None
    differing: int | None = None
    reconcile_exit: int | None = None  # `make reconcile`'s exit status after the catch-up
    steps: list[str] = field(default_factory=list)  # what the recovery did
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (self.recovery_s is not None and self.lag_ok_s is not None and self.missing == 0
                and self.extra == 0 and self.differing == 0 and self.reconcile_exit == 0
                and not any(n.startswith("FAIL") for n in self.notes))


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}"


def markdown(results: list[Result], header: str) -> str:
    lines = [header, "",
             "| fault | rows written | failed tx | recovery s (kill → status ok) | lag < 5 s after (s) "
             "| missing | extra | differing | make reconcile | result |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.fault} | {r.rows_written:,} | {r.failed_transactions} | {_s(r.recovery_s)} "
                     f"| {_s(r.lag_ok_s)} | {r.missing} | {r.extra} | {r.differing} | exit {r.reconcile_exit} "
                     f"| {'ok' if r.passed else 'FAILED'} |")
    lines.append("")
    for r in results:
        if r.steps or r.notes:
            lines.append(f"- {r.fault}: " + "; ".join([*r.steps, *r.notes]))
    return "\n".join(lines) + "\n"


def save(results: list[Result], text: str, directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    md, js = directory / "chaos.md", directory / "chaos.json"
    md.write_text(text)
    js.write_text(json.dumps([{**asdict(r), "passed": r.passed} for r in results], indent=2) + "\n")
    return md, js
