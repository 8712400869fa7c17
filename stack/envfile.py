"""Create .env from .env.example, or add to an existing .env the variables it lacks.

Every empty *_PASSWORD gets a random value, so the example keeps no secret in git and a newcomer still
gets a working local configuration. An existing .env is never rewritten: variables a newer version of
the project declares are appended (with fresh random passwords), so `make setup` after a `git pull` works.
"""

from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path

from stack.paths import PROJECT

log = logging.getLogger(__name__)

# Variables that are legitimately empty locally (only Confluent Cloud needs them).
OPTIONAL_SECRETS = {"KAFKA_SASL_PASSWORD"}
_ASSIGNMENT = re.compile(r"^([A-Z][A-Z0-9_]*)=", re.M)


def fill_secret(line: str) -> str:
    """`X_PASSWORD=` -> `X_PASSWORD=<random>`; any other line unchanged."""
    key, sep, value = line.partition("=")
    if sep and key.endswith("_PASSWORD") and not value and key not in OPTIONAL_SECRETS:
        return f"{key}={secrets.token_urlsafe(18)}"
    return line


def missing_lines(example: str, existing: str) -> list[str]:
    """The example's assignments (with their comment lines) whose variable `existing` does not set."""
    have = set(_ASSIGNMENT.findall(existing))
    out, comments = [], []
    for line in example.splitlines():
        if line.startswith("#"):
            comments.append(line)
            continue
        match = _ASSIGNMENT.match(line)
        if match and match.group(1) not in have:
            out.extend(comments[-1:])  # the variable's own doc line
            out.append(fill_secret(line))
        comments = [] if not line.startswith("#") else comments
    return out


def ensure_env_file(target: Path | None = None, example: Path | None = None) -> list[str]:
    """Returns the names of the variables written."""
    target = target or PROJECT / ".env"
    example_text = (example or PROJECT / ".env.example").read_text()
    if not target.exists():
        target.write_text("\n".join(fill_secret(line) for line in example_text.splitlines()) + "\n")
        target.chmod(0o600)
        log.info("created .env from .env.example with random local passwords")
        return _ASSIGNMENT.findall(example_text)
    existing = target.read_text()
    lines = missing_lines(example_text, existing)
    if not lines:
        return []
    with target.open("a") as out:
        out.write(("" if existing.endswith("\n") else "\n") + "\n# added by `make setup` (new in .env.example)\n"
                  + "\n".join(lines) + "\n")
    added = [m.group(1) for line in lines if (m := _ASSIGNMENT.match(line))]
    log.info("added to .env the variables it lacked: %s", ", ".join(added))
    return added
