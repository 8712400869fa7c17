"""python -m stack {up,down,status,clean,env} [service ...]

up      start services in dependency order, wait for real readiness (a query answered), then run each
        service's idempotent bootstrap (roles, DDL, connector registration)
down    stop services (data stays in .local/data)
status  one line per service: up/down, address, memory in use; exit 0 only when all are healthy
clean   stop everything and delete .local/data and .local/logs (after saying so)
env     create .env from .env.example (or add the variables it lacks), with random local passwords
"""

from __future__ import annotations

import argparse
import importlib
import logging
import shutil
import sys
import time

from binance_cdc.settings import SettingsError, load_dotenv_file, load_settings
from stack import process
from stack.envfile import ensure_env_file
from stack.paths import DATA, LOGS, PROJECT

log = logging.getLogger("stack")

# Start order; a service listed in REQUIRES of another is made ready first.
SERVICE_MODULES = ("postgres", "kafka", "connect", "cassandra")
# The stack creates every role, so it needs every group but the per-script ones.


def service(name: str):
    return importlib.import_module(f"stack.{name}")


def up(settings, names: list[str]) -> None:
    ready: set[str] = set()

    def ensure_ready(name: str) -> None:
        if name in ready:
            return
        svc = service(name)
        began = time.monotonic()
        svc.wait_ready(settings)
        svc.bootstrap(settings)
        ready.add(name)
        log.info("%s: ready (%.1fs after its wait began)", name, time.monotonic() - began)

    gaps = [gap for name in names for gap in service(name).missing()]
    if gaps:
        raise RuntimeError("missing: " + "; ".join(gaps) + " (run `make setup`)")
    for name in names:
        svc = service(name)
        for dep in getattr(svc, "REQUIRES", ()):
            ensure_ready(dep)
        svc.start(settings)
    for name in names:
        ensure_ready(name)


# Jobs `make demo` leaves running in the background; stopped before the services they use.
BACKGROUND_JOBS = ("spark_streaming", "simulator")


def down(names: list[str]) -> None:
    if set(names) == set(SERVICE_MODULES):
        adopt_hand_started_stream()
        for job in BACKGROUND_JOBS:
            process.stop(job)
    for name in reversed(names):
        service(name).stop()


def adopt_hand_started_stream() -> None:
    """A stream restarted by hand holds the checkpoint's lock but is not in the pid file: stop that one."""
    from stack.pipeline import adopt_stream

    load_dotenv_file()
    try:
        adopt_stream(load_settings("spark"))
    except SettingsError as exc:
        log.warning("stream: cannot read the checkpoint location (%s); stopping by pid file only", exc)


def status(settings, names: list[str]) -> int:
    """Services, then (for the whole stack) the change path: connector, slot, heartbeat, stream, bridge."""
    unhealthy = 0
    for name in names:
        row = service(name).status(settings)
        rss = f"{row['rss_mib']:.0f} MiB" if row.get("rss_mib") else "-"
        state = "up" if row["up"] else "DOWN"
        print(f"{row['name']:<10} {state:<5} {row['address']:<26} {rss}")
        unhealthy += not row["up"]
    if set(names) == set(SERVICE_MODULES):
        from stack import pipeline

        print()
        for row in pipeline.rows(settings):
            print(f"{row.name:<10} {'ok' if row.healthy else 'BAD':<5} {row.detail}")
            unhealthy += not row.healthy
    return 1 if unhealthy else 0


def clean() -> None:
    down(list(SERVICE_MODULES))
    for path in (DATA, LOGS, PROJECT / ".local" / "checkpoints", PROJECT / ".local" / "run"):
        if path.exists():
            log.warning("deleting %s", path)
            shutil.rmtree(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("up", "down", "status", "clean", "env"))
    parser.add_argument("services", nargs="*", choices=[[], *SERVICE_MODULES], default=[],
                        help="default: all")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    names = args.services or list(SERVICE_MODULES)
    if args.command == "env":
        ensure_env_file()
        return 0
    if args.command == "down":
        down(names)
        return 0
    if args.command == "clean":
        clean()
        return 0
    load_dotenv_file()
    try:
        settings = load_settings()
    except SettingsError as exc:
        log.error("%s", exc)
        return 2
    if args.command == "status":
        return status(settings, names)
    try:
        up(settings, names)
    except RuntimeError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
