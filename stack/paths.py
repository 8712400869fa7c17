"""Where the local stack keeps jars, data, logs and pid files: all under the ignored .local/ folder."""

from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
LOCAL = PROJECT / ".local"
LIB = LOCAL / "lib"
DATA = LOCAL / "data"
LOGS = LOCAL / "logs"
RUN = LOCAL / "run"
CONF = LOCAL / "conf"
JAVA = "java"


def versions() -> dict[str, str]:
    """The pins in stack/versions.env (the one place versions are set)."""
    pins = {}
    for line in (PROJECT / "stack" / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pins[key.strip()] = value.strip()
    return pins
