"""Create .env from .env.example when it is absent, filling every empty *_PASSWORD with a random one.

The example keeps no secret in git; a newcomer still gets a working local configuration.
"""

from __future__ import annotations

import logging
import secrets

from stack.paths import PROJECT

log = logging.getLogger(__name__)

# Variables that are legitimately empty locally (only Confluent Cloud needs them).
OPTIONAL_SECRETS = {"KAFKA_SASL_PASSWORD"}


def ensure_env_file() -> bool:
    target = PROJECT / ".env"
    if target.exists():
        return False
    lines = []
    for line in (PROJECT / ".env.example").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.endswith("_PASSWORD") and not value and key not in OPTIONAL_SECRETS:
            line = f"{key}={secrets.token_urlsafe(18)}"
        lines.append(line)
    target.write_text("\n".join(lines) + "\n")
    target.chmod(0o600)
    log.info("created .env from .env.example with random local passwords")
    return True
