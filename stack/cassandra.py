"""Apache Cassandra 5.0 as one local node on 127.0.0.1, with password authentication and roles.

The jars come from Maven (.local/lib/cassandra, see stack/maven/cassandra); `CassandraDaemon` runs directly
on Java 17 with the JPMS flags of Cassandra's conf/jvm17-server.options and the jamm agent. cassandra.yaml
and logback.xml are rendered from stack/conf/cassandra/ into .local/conf/cassandra/ (ports: CASSANDRA_PORT,
CASSANDRA_STORAGE_PORT, CASSANDRA_SSL_STORAGE_PORT); data lives in
.local/data/cassandra and the log in .local/logs/cassandra.log.

bootstrap() is idempotent. The first time it logs in as the default cassandra/cassandra, creates the
superuser CASSANDRA_ADMIN_USER and locks the default role (no login, no superuser, random password); later
runs log in as the admin. It then applies cql/*.cql and makes CASSANDRA_APP_USER a login role holding
exactly SELECT and MODIFY on CASSANDRA_KEYSPACE. Used through `python -m stack up|down|status cassandra`.
"""

from __future__ import annotations

import logging
import secrets
import time
from contextlib import contextmanager
from pathlib import Path
from string import Template

from stack import process
from stack.paths import CONF, DATA, JAVA, LIB, LOGS, PROJECT

log = logging.getLogger(__name__)

NAME = "cassandra"
REQUIRES: tuple[str, ...] = ()
LIB_DIR = LIB / "cassandra"
CONF_DIR = CONF / "cassandra"
DATA_DIR = DATA / "cassandra"
TEMPLATES = PROJECT / "stack" / "conf" / "cassandra"
CQL_DIR = PROJECT / "cql"
HEAP = "1g"
DEFAULT_ROLE = "cassandra"
WRITER_PERMISSIONS = frozenset({"SELECT", "MODIFY"})  # the stream
READER_PERMISSIONS = frozenset({"SELECT"})  # the bridge, `make cqlsh`, reconcile

# Cassandra 5.0 conf/jvm17-server.options (JPMS section) plus the GC settings it ships with.
JVM17_FLAGS = (
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports", "java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports", "java.sql/java.sql=ALL-UNNAMED",
    "--add-exports", "java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports", "jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports", "jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports", "jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens", "jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens", "java.base/java.io=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens", "jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang=ALL-UNNAMED",
    "--add-opens", "java.base/java.util=ALL-UNNAMED",
    "--add-opens", "java.base/java.nio=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
    "-XX:+UseG1GC", "-XX:+ParallelRefProcEnabled", "-XX:MaxTenuringThreshold=1", "-XX:G1HeapRegionSize=16m",
)


class CassandraAuthError(RuntimeError):
    """Neither the configured admin nor the default superuser can log in."""


def _jamm_jar() -> Path | None:
    jars = sorted(LIB_DIR.glob("jamm-*.jar"))
    return jars[-1] if jars else None


def missing() -> list[str]:
    absent = []
    if not list(LIB_DIR.glob("cassandra-all-*.jar")) or _jamm_jar() is None:
        absent.append(f"Cassandra jars in {LIB_DIR} (make setup)")
    return absent


def config_values(settings) -> dict:
    """What cassandra.yaml's template is filled with."""
    return {
        "storage_port": settings.local_ports.cassandra_storage_port,
        "ssl_storage_port": settings.local_ports.cassandra_ssl_storage_port,
        "native_port": settings.cassandra.port,
        "data_dir": DATA_DIR,
    }


def render_config(settings) -> tuple[Path, Path]:
    """Write cassandra.yaml and logback.xml for this node into .local/conf/cassandra/."""
    CONF_DIR.mkdir(parents=True, exist_ok=True)
    values = config_values(settings)
    yaml_path, logback_path = CONF_DIR / "cassandra.yaml", CONF_DIR / "logback.xml"
    yaml_path.write_text(Template((TEMPLATES / "cassandra.yaml").read_text()).substitute(values))
    logback_path.write_text((TEMPLATES / "logback.xml").read_text())
    return yaml_path, logback_path


def command(yaml_path: Path, logback_path: Path) -> list[str]:
    return [
        JAVA, *process.java_heap_opts(HEAP), "-Xss256k",
        # A node that ran out of heap may have lost writes in flight: die loudly rather than limp on.
        "-XX:+ExitOnOutOfMemoryError",
        f"-javaagent:{_jamm_jar()}",
        *JVM17_FLAGS,
        "-Djava.net.preferIPv4Stack=true",
        "-Dcassandra-foreground=yes",
        f"-Dcassandra.config={yaml_path.as_uri()}",
        f"-Dcassandra.storagedir={DATA_DIR}",
        f"-Dcassandra.triggers_dir={DATA_DIR / 'triggers'}",
        f"-Dlogback.configurationFile={logback_path}",
        # The default superuser is created at once instead of after ~10 s, so bootstrap can log in.
        "-Dcassandra.superuser_setup_delay_ms=0",
        # One node: there is no gossip to settle and no ring to wait for.
        "-Dcassandra.skip_wait_for_gossip_to_settle=0",
        "-Dcassandra.ring_delay_ms=100",
        "-cp", f"{LIB_DIR}/*",
        "org.apache.cassandra.service.CassandraDaemon",
    ]


def running() -> bool:
    return process.read_pid(NAME) is not None


def start(settings) -> None:
    if running():
        return
    absent = missing()
    if absent:
        raise RuntimeError(f"cassandra: missing {', '.join(absent)}")
    yaml_path, logback_path = render_config(settings)
    for sub in ("data", "commitlog", "saved_caches", "hints", "cdc_raw", "triggers"):
        (DATA_DIR / sub).mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    log.info("cassandra: starting on 127.0.0.1:%s (heap %s)", settings.cassandra.port, HEAP)
    # cwd = data dir: a crash's hs_err file lands there, not in the checkout.
    process.spawn(NAME, command(yaml_path, logback_path), cwd=DATA_DIR)


def _admin_credentials(settings) -> tuple[str, str]:
    return settings.cassandra_admin.user, settings.cassandra_admin.password.reveal()


def _is_auth_failure(exc: Exception) -> bool:
    """The node answered the login with AuthenticationFailed: up, whether it refused the credentials or could
    not check them yet (both mean "ask again" while it starts)."""
    from binance_cdc.stream.retry import cassandra_auth_errors

    return bool(cassandra_auth_errors(exc))


@contextmanager
def _quiet_driver():
    """Probes fail on purpose (node booting, admin not created yet); the driver would log each as an ERROR."""
    driver_log = logging.getLogger("cassandra")
    level = driver_log.level
    driver_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        driver_log.setLevel(level)


def _login(settings, user: str, password: str, timeout: float = 5.0):
    from binance_cdc.cassandra_conn import connect
    from binance_cdc.settings import Credentials, Secret

    with _quiet_driver():
        return connect(settings.cassandra, Credentials(user, Secret(password)), timeout=timeout)


def _answers(settings, user: str, password: str) -> bool:
    session = _login(settings, user, password, timeout=3.0)
    try:
        return session.execute("SELECT release_version FROM system.local").one() is not None
    finally:
        session.cluster.shutdown()


AUTH_REFUSED_GRACE_S = 15.0


def wait_ready(settings, timeout: float = 180) -> None:
    """Ready = an authenticated query answered, as the admin or (before the first bootstrap) the default role.

    A node that keeps refusing both logins is up but misconfigured (admin password changed in .env): after a
    grace period (the default role appears just after startup) it counts as ready, and bootstrap() then
    fails with an error that says what to do instead of this wait timing out.
    """
    first_refusal: list[float] = []

    def answers() -> bool:
        try:
            return _answers(settings, *_admin_credentials(settings))
        except Exception as exc:
            if not _is_auth_failure(exc):
                raise
        try:
            return _answers(settings, DEFAULT_ROLE, DEFAULT_ROLE)
        except Exception as exc:
            if not _is_auth_failure(exc):
                raise
            first_refusal[:1] = first_refusal[:1] or [time.monotonic()]
            if time.monotonic() - first_refusal[0] >= AUTH_REFUSED_GRACE_S:
                return True
            raise

    process.wait_until("cassandra", answers, timeout, log_name=NAME, interval=1.0)


def _admin_session(settings):
    """Log in as the admin, creating it first (as the default superuser) if it does not exist yet."""
    from cassandra.metadata import protect_name

    admin, admin_password = _admin_credentials(settings)
    try:
        return _login(settings, admin, admin_password)
    except Exception as exc:
        if not _is_auth_failure(exc):
            raise
    try:
        default = _login(settings, DEFAULT_ROLE, DEFAULT_ROLE)
    except Exception as exc:
        if not _is_auth_failure(exc):
            raise
        raise CassandraAuthError(
            f"cassandra: cannot log in as CASSANDRA_ADMIN_USER={admin!r} with CASSANDRA_ADMIN_PASSWORD from "
            f"the environment, and the default '{DEFAULT_ROLE}' role is already locked. The admin password "
            f"changed since this node was bootstrapped: restore the old value in .env, or (local data only) "
            f"stop Cassandra and delete {DATA_DIR} to bootstrap anew."
        ) from None
    try:
        log.info("cassandra: first bootstrap, creating superuser %s", admin)
        exists = default.execute("SELECT role FROM system_auth.roles WHERE role = %s", (admin,)).one()
        verb = "ALTER" if exists else "CREATE"
        default.execute(f"{verb} ROLE {protect_name(admin)} WITH SUPERUSER = true AND LOGIN = true "
                        f"AND PASSWORD = %s", (admin_password,))
    finally:
        default.cluster.shutdown()
    return _retry_auth(lambda: _login(settings, admin, admin_password))


def _retry_auth(attempt, tries: int = 10):
    """The credentials cache may still hold the old answer for up to credentials_validity (1 s)."""
    for i in range(tries):
        try:
            return attempt()
        except Exception as exc:
            if i == tries - 1 or not _is_auth_failure(exc):
                raise
            time.sleep(0.5)


def _lock_default_role(session) -> None:
    row = session.execute("SELECT can_login, is_superuser FROM system_auth.roles WHERE role = %s",
                          (DEFAULT_ROLE,)).one()
    if row is None or (not row.can_login and not row.is_superuser):
        return
    log.info("cassandra: locking the default '%s' role (no login, no superuser, random password)", DEFAULT_ROLE)
    session.execute(f"ALTER ROLE {DEFAULT_ROLE} WITH LOGIN = false AND SUPERUSER = false AND PASSWORD = %s",
                    (secrets.token_urlsafe(32),))


def _ensure_role(session, keyspace: str, login, wanted: set[str]) -> None:
    """A role with login, not superuser, no granted roles, exactly `wanted` on the keyspace."""
    from cassandra.metadata import protect_name

    app = login.user
    role = protect_name(app)
    exists = session.execute("SELECT role FROM system_auth.roles WHERE role = %s", (app,)).one()
    verb = "ALTER" if exists else "CREATE"
    session.execute(f"{verb} ROLE {role} WITH LOGIN = true AND SUPERUSER = false AND PASSWORD = %s",
                    (login.password.reveal(),))
    member_of = session.execute("SELECT member_of FROM system_auth.roles WHERE role = %s", (app,)).one().member_of
    for granted in member_of or ():
        log.info("cassandra: revoking role %s from %s", granted, app)
        session.execute(f"REVOKE {protect_name(granted)} FROM {role}")
    target = f"data/{keyspace}"
    held: dict[str, set[str]] = {}
    for row in session.execute("SELECT resource, permissions FROM system_auth.role_permissions WHERE role = %s",
                               (app,)):
        held[row.resource] = set(row.permissions or ())
    for resource, permissions in held.items():
        extra = permissions - (wanted if resource == target else set())
        for permission in sorted(extra):
            log.info("cassandra: revoking %s on %s from %s", permission, resource, app)
            session.execute(f"REVOKE {permission} ON {_resource_cql(resource)} FROM {role}")
    for permission in sorted(wanted - held.get(target, set())):
        session.execute(f"GRANT {permission} ON KEYSPACE {protect_name(keyspace)} TO {role}")
    log.info("cassandra: role %s holds %s on keyspace %s only", app, "+".join(sorted(wanted)), keyspace)


def _resource_cql(resource: str) -> str:
    """system_auth resource names (data, data/ks, data/ks/table, roles/x, functions/...) as CQL."""
    from cassandra.metadata import protect_name

    parts = resource.split("/")
    if parts == ["data"]:
        return "ALL KEYSPACES"
    if parts[0] == "data" and len(parts) == 2:
        return f"KEYSPACE {protect_name(parts[1])}"
    if parts[0] == "data" and len(parts) == 3:
        return f"TABLE {protect_name(parts[1])}.{protect_name(parts[2])}"
    if parts == ["roles"]:
        return "ALL ROLES"
    if parts[0] == "roles" and len(parts) == 2:
        return f"ROLE {protect_name(parts[1])}"
    if parts == ["functions"]:
        return "ALL FUNCTIONS"
    if parts[0] == "functions" and len(parts) == 2:
        return f"ALL FUNCTIONS IN KEYSPACE {protect_name(parts[1])}"
    if parts == ["mbean"]:
        return "ALL MBEANS"
    raise RuntimeError(f"cassandra: cannot revoke a permission on unexpected resource {resource!r}")


def bootstrap(settings) -> None:
    from binance_cdc.cassandra_conn import apply_cql_dir

    session = _admin_session(settings)
    try:
        _lock_default_role(session)
        count = apply_cql_dir(session, CQL_DIR, settings.cassandra)
        log.info("cassandra: %d cql statements applied from %s", count, CQL_DIR.relative_to(PROJECT))
        _ensure_role(session, settings.cassandra.keyspace, settings.cassandra_writer, WRITER_PERMISSIONS)
        _ensure_role(session, settings.cassandra.keyspace, settings.cassandra_reader, READER_PERMISSIONS)
    finally:
        session.cluster.shutdown()


def stop() -> None:
    # SIGTERM runs Cassandra's shutdown hook (drain: memtables flushed, commit log closed).
    process.stop(NAME, timeout=90)


def status(settings) -> dict:
    return process.status_row(
        NAME, f"127.0.0.1:{settings.cassandra.port}",
        lambda: _answers(settings, settings.cassandra_writer.user, settings.cassandra_writer.password.reveal()))