"""Register the Debezium PostgreSQL connector with a Kafka Connect worker, idempotently.

`connectors/debezium-postgres-local.json` is the config; its `${NAME}` placeholders are filled from the
settings (the environment variable of the same name), while `${env:...}` stays for Connect's env config
provider, so the replication password never leaves the worker's environment. Registration is
`PUT /connectors/<name>/config` (creates or updates), then a wait until the connector and every task
report RUNNING; a FAILED task raises with its stack trace.

Needs: a running Connect worker at CONNECT_URL with the Debezium plugin (`python -m stack up connect`
calls `register_local` in its bootstrap). Run by hand:

    .venv/bin/python -m connectors.register            # register / update, wait for RUNNING
    .venv/bin/python -m connectors.register --show     # print the rendered config (no secrets in it)
    .venv/bin/python -m connectors.register --delete   # remove the connector (its slot stays)
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from pathlib import Path
from string import Template
from typing import Any, Mapping

from binance_cdc.settings import VARIABLES, Secret

log = logging.getLogger(__name__)

CONNECTORS_DIR = Path(__file__).resolve().parent
LOCAL_CONFIG = CONNECTORS_DIR / "debezium-postgres-local.json"
SETTINGS_GROUPS = ("postgres", "replication", "kafka", "connect")
_LEFT_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConnectorError(RuntimeError):
    """The worker refused the config, or the connector / one of its tasks did not reach RUNNING."""


def settings_mapping(settings) -> dict[str, str]:
    """Non-secret settings by environment variable name, as strings (secrets are never substituted)."""
    values: dict[str, str] = {}
    for var in VARIABLES:
        if var.secret:
            continue
        if var.group not in settings.loaded:
            continue
        value = getattr(settings.group(var.group), var.field)
        if isinstance(value, Secret):
            continue
        values[var.env] = ",".join(value) if isinstance(value, tuple) else str(value)
    return values


def render(template: Mapping[str, Any], values: Mapping[str, str]) -> dict:
    """Fill `${NAME}` in every string of the connector file; `${env:...}` is left for Connect."""
    config = {key: Template(val).safe_substitute(values) if isinstance(val, str) else str(val)
              for key, val in template["config"].items()}
    left = sorted({m for val in config.values() for m in _LEFT_PLACEHOLDER.findall(val)})
    if left:
        raise ConnectorError(f"connector {template['name']}: no setting for placeholder(s) {', '.join(left)}")
    return {"name": template["name"], "config": config}


def tls_config(postgres) -> dict[str, str]:
    """Debezium's TLS properties for the source database: `database.sslmode` is in the file (PG_SSLMODE);
    `database.sslrootcert` only when PG_SSLROOTCERT names a CA file (the worker must have it at that path)."""
    return {"database.sslrootcert": postgres.sslrootcert} if postgres.sslrootcert else {}


def render_local(settings, overrides: Mapping[str, str] | None = None, name: str | None = None) -> dict:
    """The local connector {name, config} with settings filled in; `overrides`/`name` for throwaway copies.
    Overriding a property that is exactly one setting (`slot.name` is `${DEBEZIUM_SLOT_NAME}`) overrides that
    setting everywhere it is used, so a throwaway connector's heartbeat rows carry its own slot's name."""
    template = json.loads(LOCAL_CONFIG.read_text())
    values = settings_mapping(settings)
    for key, value in (overrides or {}).items():
        whole = _LEFT_PLACEHOLDER.fullmatch(str(template["config"].get(key, "")))
        if whole:
            values[whole.group(1)] = value
    rendered = render(template, values)
    rendered["config"].update(tls_config(settings.postgres))
    rendered["config"].update(overrides or {})
    if name:
        rendered["name"] = name
    return rendered


def _connect_url(settings) -> str:
    return settings.connect.url.rstrip("/")


def connector_status(connect_url: str, name: str, timeout: float = 10) -> dict | None:
    import requests

    response = requests.get(f"{connect_url}/connectors/{name}/status", timeout=timeout)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.json()


def put_config(connect_url: str, name: str, config: Mapping[str, str], timeout: float = 60) -> bool:
    """PUT the config; True when the connector was created, False when an existing one was updated."""
    import requests

    response = requests.put(f"{connect_url}/connectors/{name}/config", json=dict(config), timeout=timeout)
    if response.status_code >= 400:
        raise ConnectorError(f"connector {name}: Connect refused the config ({response.status_code}): "
                             f"{response.text[:2000]}")
    return response.status_code == 201


def wait_running(connect_url: str, name: str, timeout: float = 120, poll: float = 1.0) -> dict:
    """Wait until the connector and all its tasks (at least one) are RUNNING; FAILED raises at once."""
    deadline = time.monotonic() + timeout
    status: dict | None = None
    while time.monotonic() < deadline:
        status = connector_status(connect_url, name)
        if status:
            states = [status["connector"]["state"]] + [t["state"] for t in status.get("tasks", [])]
            failed = [t for t in [status["connector"], *status.get("tasks", [])] if t["state"] == "FAILED"]
            if failed:
                trace = failed[0].get("trace", "(no trace)")
                raise ConnectorError(f"connector {name}: FAILED: {trace[:4000]}")
            if status.get("tasks") and all(s == "RUNNING" for s in states):
                return status
        time.sleep(poll)
    raise ConnectorError(f"connector {name}: not RUNNING after {timeout:.0f}s; last status: {status}")


def register(connect_url: str, connector: Mapping[str, Any], timeout: float = 120) -> dict:
    name = connector["name"]
    created = put_config(connect_url, name, connector["config"])
    status = wait_running(connect_url, name, timeout)
    log.info("connector %s: %s, RUNNING with %d task(s), topic prefix %s", name,
             "created" if created else "config updated", len(status["tasks"]),
             connector["config"].get("topic.prefix"))
    return status


def delete(connect_url: str, name: str, timeout: float = 60) -> bool:
    """Remove a connector (no error when absent); True when it existed. Its replication slot stays."""
    import requests

    response = requests.delete(f"{connect_url}/connectors/{name}", timeout=timeout)
    if response.status_code == 404:
        return False
    if response.status_code >= 400:
        raise ConnectorError(f"connector {name}: delete failed ({response.status_code}): {response.text[:500]}")
    deadline = time.monotonic() + timeout
    while connector_status(connect_url, name) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    log.info("connector %s: deleted", name)
    return True


def register_local(settings, timeout: float = 120) -> dict:
    """Create or update the local connector and wait until it runs (called by `stack up connect`)."""
    return register(_connect_url(settings), render_local(settings), timeout)


def main(argv: list[str] | None = None) -> int:
    from binance_cdc.settings import load_dotenv_file, load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--show", action="store_true", help="print the rendered config and exit")
    action.add_argument("--delete", action="store_true", help="delete the connector")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for RUNNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    load_dotenv_file()
    settings = load_settings(*SETTINGS_GROUPS)
    connector = render_local(settings)
    if args.show:
        print(json.dumps(connector, indent=2))
    elif args.delete:
        delete(_connect_url(settings), connector["name"])
    else:
        status = register_local(settings, args.timeout)
        print(json.dumps(status, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
