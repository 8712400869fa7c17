"""Riding out a Cassandra restart: which failures are worth retrying, how long to wait, when to give up.

Two levels use this (both retry only network calls, and every write they repeat is idempotent: it carries
`USING TIMESTAMP <LSN>`, so a replay can neither resurrect an old value nor add a row):

- executors (binance_cdc.stream.sink): a failed write is retried with backoff for a short window
  (`executor_window`), which covers a dropped connection or a node that is back within seconds. When the
  window passes, the task fails with `SinkUnavailable` (Spark retries the task, then fails the job);
- the driver (binance_cdc.stream.job, foreachBatch): a batch whose job failed with `SinkUnavailable`, or
  whose progress record hit a transient Cassandra error, is run again with backoff, measured by one
  `Outage` per batch; past STREAM_OUTAGE_LIMIT_S it raises `StreamOutage`, whose one-line message is
  what the job logs before it exits 1.

A refused login is not an outage: a wrong user name or password stays wrong however long one waits. The
driver reports it as a NoHostAvailable whose per-host errors are AuthenticationFailed, which would otherwise
look transient; `is_auth_failure` tells the two apart (for Postgres too, so every script shares it), and
`login_refused` makes the one line a script logs before it exits 2 (a configuration error), naming the
variables of the role (settings.login_variables), never the password.

Pure (no cassandra-driver import: errors are recognised by class name) so it is unit tested alone.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, TypeVar

from binance_cdc.settings import login_variables

T = TypeVar("T")

# Class names (anywhere in the exception's MRO) of failures that say "not reachable now", not "wrong":
# a node down or restarting, a dropped connection, a timeout, too few replicas alive. Anything else
# (InvalidRequest, Unauthorized, a bug) is raised at once: retrying cannot fix it.
TRANSIENT = frozenset({
    "NoHostAvailable", "OperationTimedOut", "ConnectionException", "ConnectionShutdown", "ConnectionBusy",
    "WriteTimeout", "ReadTimeout", "Unavailable", "OverloadedErrorMessage", "IsBootstrappingErrorMessage",
    "ConnectionError", "TimeoutError",  # builtins (socket level)
})
# What the driver finds in a failed Spark job's error text when an executor gave up on Cassandra.
SINK_UNAVAILABLE = "SinkUnavailable"
EXECUTOR_WINDOW_MAX_S = 10.0
# What the driver finds in a failed Spark job's error text when an executor's login was refused.
LOGIN_REFUSED = "LoginRefused"
# Cassandra's answer when it could not read its roles (a node restarting): the same AuthenticationFailed
# class as a wrong password, but waiting fixes it, so it stays an outage.
CASSANDRA_AUTH_UNAVAILABLE = "Unable to perform authentication"
POSTGRES_PASSWORD_REFUSED = "password authentication failed"
# The servers' own words, quoted in the one line (they name the user, never the password).
_CASSANDRA_REFUSAL = re.compile(r'\[Bad credentials\] message="([^"\n]*)"')  # code=0100
_POSTGRES_REFUSAL = re.compile(r'password authentication failed for user "[^"\n]*"')


class SinkUnavailable(RuntimeError):
    """An executor's writes kept failing for its whole retry window (Cassandra unreachable)."""


class StreamOutage(RuntimeError):
    """The outage lasted longer than STREAM_OUTAGE_LIMIT_S: the job ends; str() is its one error line."""


class LoginRefused(RuntimeError):
    """A store refused a role's user name or password: a configuration error, never retried. str() is the
    one line a script logs before it exits 2."""


def _class_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def is_transient(exc: BaseException) -> bool:
    return not is_auth_failure(exc) and bool(_class_names(exc) & TRANSIENT)


def cassandra_auth_errors(exc: BaseException) -> list[BaseException]:
    """The AuthenticationFailed answers in a Cassandra driver error: the error itself, or the per-host
    errors of a NoHostAvailable (what Cluster.connect raises when every host refused or failed)."""
    names = _class_names(exc)
    if "AuthenticationFailed" in names:
        return [exc]
    errors = getattr(exc, "errors", None)
    if "NoHostAvailable" not in names or not isinstance(errors, dict):
        return []
    return [e for e in errors.values() if isinstance(e, BaseException) and "AuthenticationFailed" in _class_names(e)]


def is_auth_failure(exc: BaseException) -> bool:
    """The store refused the credentials, so retrying cannot help: a Cassandra AuthenticationFailed (alone,
    or from any host of a NoHostAvailable: roles are cluster-wide) unless the node said it could not check
    them; a Postgres `password authentication failed`; an executor's LoginRefused, also inside a failed
    Spark job's error text."""
    names = _class_names(exc)
    if LOGIN_REFUSED in names:
        return True
    if any(CASSANDRA_AUTH_UNAVAILABLE not in str(e) for e in cassandra_auth_errors(exc)):
        return True
    if "OperationalError" in names and POSTGRES_PASSWORD_REFUSED in str(exc):
        return True
    return f"{LOGIN_REFUSED}: " in str(exc)


def refusal_reason(exc: BaseException) -> str:
    """What the server said, short: `Bad credentials: Provided username x and/or password are incorrect`."""
    text = str(exc)
    cassandra = _CASSANDRA_REFUSAL.search(text)
    if cassandra:
        return f"Bad credentials: {cassandra[1]}"
    postgres = _POSTGRES_REFUSAL.search(text)
    return postgres[0] if postgres else first_line(exc)


def login_refused(store: str, group: str, user: str, exc: BaseException) -> LoginRefused:
    """The one line for a refused login of the role `group` (a settings group such as cassandra_writer)."""
    user_var, password_var = login_variables(group)
    return LoginRefused(f"{store} refused the login as {user} ({refusal_reason(exc)}): check {user_var} and "
                        f"{password_var} in .env or the environment")


def log_in(connect: Callable[[], T], store: str, group: str, user: str) -> T:
    """connect(); a refused login is raised as LoginRefused naming the role's variables (no retry loop
    waits for it), any other failure as it is."""
    try:
        return connect()
    except Exception as exc:
        if is_auth_failure(exc):
            raise login_refused(store, group, user, exc) from None
        raise


def as_login_refused(exc: BaseException) -> LoginRefused:
    """The LoginRefused behind an auth failure: itself, or its line out of a failed Spark job's text."""
    if isinstance(exc, LoginRefused):
        return exc
    text = str(exc)
    at = text.rfind(f"{LOGIN_REFUSED}: ")
    if at >= 0:
        return LoginRefused(text[at + len(LOGIN_REFUSED) + 2:].splitlines()[0].strip())
    return LoginRefused(f"login refused ({refusal_reason(exc)})")


def is_sink_outage(exc: BaseException) -> bool:
    """A failed Spark job (py4j error text carrying the executor's Python traceback) caused by an
    executor giving up on Cassandra, or a transient Cassandra error raised on the driver itself."""
    return is_transient(exc) or isinstance(exc, SinkUnavailable) or SINK_UNAVAILABLE in str(exc)


def first_line(exc: BaseException, limit: int = 200) -> str:
    """`Class: first line of the message`, cut: what a one-line log needs (the driver's errors carry
    addresses, never credentials)."""
    text = str(exc).strip().splitlines()
    line = text[0][:limit] if text else ""
    return line if getattr(exc, "bare", False) else f"{type(exc).__name__}: {line}".rstrip(": ")


@dataclass(frozen=True)
class Backoff:
    """Exponential delays: initial, initial*multiplier, ... capped at `cap` seconds."""

    initial: float = 0.5
    cap: float = 5.0
    multiplier: float = 2.0

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield min(delay, self.cap)
            delay *= self.multiplier


def executor_window(outage_limit_s: float) -> float:
    """An executor retries briefly: Spark retries a failed task (3 attempts with local[2,3]) and the driver
    then retries the batch; a long executor window multiplied by those attempts would overshoot the limit."""
    return min(EXECUTOR_WINDOW_MAX_S, outage_limit_s / 3)


@dataclass
class Outage:
    """One outage as seen by a retry loop: started by the first failure, ended by the caller's success.
    `next_delay(exc)` returns how long to sleep before the next try, or raises `give_up(...)` when that
    sleep would take the outage past `limit_s`."""

    what: str
    limit_s: float
    backoff: Backoff = Backoff()
    clock: Callable[[], float] = time.monotonic
    give_up: Callable[[str], Exception] = StreamOutage
    started: float | None = None
    attempts: int = 0
    _delays: Iterator[float] | None = field(default=None, repr=False)

    def elapsed(self) -> float:
        return 0.0 if self.started is None else self.clock() - self.started

    def next_delay(self, exc: BaseException, since: float | None = None) -> float:
        """`since`: when the failed attempt began (clock()); the outage is counted from there, so time a
        failing call spent retrying on its own (an executor's window, Spark's task attempts) counts too."""
        now = self.clock()
        if self.started is None:
            self.started = now if since is None else min(since, now)
            self._delays = self.backoff.delays()
        self.attempts += 1
        assert self._delays is not None
        delay = next(self._delays)
        elapsed = now - self.started
        if elapsed + delay > self.limit_s:
            raise self.give_up(f"{self.what} unreachable for {elapsed:.0f}s ({self.attempts} attempt"
                               f"{'' if self.attempts == 1 else 's'}), the next retry would pass the "
                               f"{self.limit_s:g}s limit; last error: {first_line(exc)}")
        return delay


def retry(call: Callable[[], T], outage: Outage, sleep: Callable[[float], None] = time.sleep,
          on_retry: Callable[[Outage, BaseException, float], None] | None = None,
          transient: Callable[[BaseException], bool] = is_transient) -> T:
    """call() until it returns; transient failures are retried after outage.next_delay(), others raised."""
    while True:
        try:
            return call()
        except Exception as exc:
            if not transient(exc):
                raise
            delay = outage.next_delay(exc)  # raises outage.give_up(...) past the limit
            if on_retry is not None:
                on_retry(outage, exc, delay)
            sleep(delay)
