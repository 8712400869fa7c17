"""Render the Confluent Cloud PostgresCdcSourceV2 connector config from .env.

The template `connectors/confluent-cloud-postgres-cdc-v2.json` holds no secret; this fills its `${VAR}`
placeholders from the environment (.env) and writes `.local/confluent/postgres-cdc-v2.json` (mode 0600,
git-ignored), ready for:

    confluent connect cluster create --config-file .local/confluent/postgres-cdc-v2.json

Needs: PG_HOST (reachable from Confluent Cloud), PG_PORT, PG_DATABASE, PG_SSLMODE (require),
PG_REPLICATION_USER/PASSWORD, KAFKA_SASL_USERNAME/PASSWORD (the cluster API key and secret), TOPIC_PREFIX,
DEBEZIUM_SLOT_NAME, DEBEZIUM_PUBLICATION. Run: `python -m connectors.confluent [--output PATH]`.
Apply sql/ to the cloud database first (it creates the publication this config names).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path
from string import Template

from binance_cdc.settings import PROJECT_ROOT, SettingsError, load_dotenv_file, load_settings

log = logging.getLogger(__name__)

TEMPLATE = PROJECT_ROOT / "connectors" / "confluent-cloud-postgres-cdc-v2.json"
DEFAULT_OUTPUT = PROJECT_ROOT / ".local" / "confluent" / "postgres-cdc-v2.json"
PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")


def placeholders(template_text: str) -> set[str]:
    return set(PLACEHOLDER.findall(template_text))


def render(values: dict[str, str], template_path: Path = TEMPLATE) -> dict:
    """Fill every ${VAR}; a variable without a value is an error naming it (never an empty property)."""
    text = template_path.read_text()
    missing = sorted(name for name in placeholders(text) if not values.get(name))
    if missing:
        raise SettingsError("Confluent Cloud connector needs: " + ", ".join(missing))
    # JSON-escape each value so a password with quotes cannot break the document.
    escaped = {k: json.dumps(str(v))[1:-1] for k, v in values.items()}
    return json.loads(Template(text).substitute(escaped))


def values_from_settings(settings) -> dict[str, str]:
    return {
        "PG_HOST": settings.postgres.host, "PG_PORT": str(settings.postgres.port), "PG_DATABASE": settings.postgres.database,
        "PG_SSLMODE": settings.postgres.sslmode, "PG_REPLICATION_USER": settings.replication.user,
        "PG_REPLICATION_PASSWORD": settings.replication.password.reveal(),
        "KAFKA_SASL_USERNAME": settings.kafka.sasl_username,
        "KAFKA_SASL_PASSWORD": settings.kafka.sasl_password.reveal(),
        "TOPIC_PREFIX": settings.kafka.topic_prefix, "DEBEZIUM_SLOT_NAME": settings.connect.slot_name,
        "DEBEZIUM_PUBLICATION": settings.connect.publication,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    load_dotenv_file()
    try:
        config = render(values_from_settings(load_settings("postgres", "replication", "kafka", "connect")))
    except SettingsError as exc:
        log.error("%s", exc)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(config, out, indent=2)
    log.info("wrote %s (contains secrets; git-ignored). Next: confluent connect cluster create --config-file %s",
             args.output, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
