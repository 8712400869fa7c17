"""One stream per checkpoint: an exclusive lock file inside a local checkpoint directory.

Two queries on one checkpoint race on its offset and commit logs (Spark notices only some of the
collisions). `acquire(location)` takes an exclusive, non-blocking flock on `<checkpoint>/stream.lock` and
writes the holder's pid into it; a second job on the same checkpoint gets `CheckpointInUse` naming that
pid, before it starts Spark. The kernel drops the lock when the holder's process ends, `kill -9` included,
so a crashed stream never leaves a stale lock. `holder(location)` tells `make status` and `make demo`
which process holds it (the stack's pid file can be stale when the stream was restarted by hand).

Remote checkpoints (hdfs://, s3a://, ...) cannot be flocked: there the scheduler that runs the job must
run one instance (and Spark fails one of two writers of a checkpoint's offset log at its next commit).
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

LOCK_NAME = "stream.lock"


class CheckpointInUse(RuntimeError):
    """Another live process holds the checkpoint's lock."""


def lock_path(location: str) -> Path | None:
    """The lock file of a local checkpoint; None for a remote one (a URI with a scheme other than file)."""
    if "://" in location:
        if not location.startswith("file://"):
            return None
        location = location[len("file://"):]
    return Path(location) / LOCK_NAME


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or 0) or None
    except (FileNotFoundError, ValueError):
        return None


def acquire(location: str, attempts: int = 5, interval: float = 0.2):
    """Hold the checkpoint's lock for as long as the returned file stays open (keep a reference to it).
    None for a remote checkpoint. A few quick attempts: `holder()` probes with a short-lived shared lock."""
    path = lock_path(location)
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # not truncated before we hold the lock: the holder's pid stays readable
    for attempt in range(attempts):
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if attempt == attempts - 1:
                handle.close()
                pid = _read_pid(path)
                raise CheckpointInUse(f"another stream (pid {pid or 'unknown'}) is running on checkpoint "
                                      f"{path.parent}; stop it first (`make down`, or kill {pid or '<pid>'})") \
                    from None
            time.sleep(interval)
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def holder(location: str) -> int | None:
    """The pid of the process holding the checkpoint's lock, None when nobody does (or it is remote)."""
    path = lock_path(location)
    if path is None or not path.exists():
        return None
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(path) or -1
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None
