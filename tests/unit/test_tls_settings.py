"""TLS settings of the remote paths, from the environment to what each client receives: libpq's sslmode and
sslrootcert (psycopg2, SQLAlchemy, Debezium, Confluent Cloud, psql), Kafka SASL_SSL (librdkafka and the
Spark Kafka source), and the Cassandra driver's ssl.SSLContext (checked by real TLS handshakes on loopback
with certificates made here by the openssl command). Bad values are errors naming the variable.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from binance_cdc import postgres_conn
from binance_cdc.cassandra_conn import ssl_context
from binance_cdc.kafka_client import client_conf
from binance_cdc.settings import LIBPQ_SSLMODES, VARIABLES, SettingsError, load_settings
from binance_cdc.stream.job import kafka_options
from connectors import confluent, register
from stack.shells import cqlsh_ssl_section

SECRETS = {v.env: f"s3cret-{v.env.lower()}" for v in VARIABLES if v.secret}


def settings_with(*groups: str, **env: str):
    return load_settings(*groups, env={**SECRETS, **env})


def problems(*groups: str, **env: str) -> str:
    with pytest.raises(SettingsError) as err:
        settings_with(*groups, **env)
    return str(err.value)


# --- certificates ------------------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(directory: Path, name: str, ca: str, san: str) -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=directory)
    (directory / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=directory)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """ca.pem (our CA), other-ca.pem (a CA nobody uses), server.pem for localhost / 127.0.0.1, client.pem."""
    directory = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2", "-subj", f"/CN=test {ca}", cwd=directory)
    _issue(directory, "server", "ca", "DNS:localhost,IP:127.0.0.1")
    _issue(directory, "client", "ca", "DNS:client")
    return directory


class TlsServer:
    """A one-connection-at-a-time TLS server on loopback that answers b'ok' after the handshake."""

    def __init__(self, pki: Path, require_client_cert: bool = False) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pki / "server.pem", pki / "server.key")
        if require_client_cert:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(pki / "ca.pem")
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass

    def handshake(self, context: ssl.SSLContext, server_hostname: str) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=server_hostname) as tls:
                return tls.recv(2)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server(pki):
    srv = TlsServer(pki)
    yield srv
    srv.close()


# --- Postgres ----------------------------------------------------------------------------------------


def test_pg_sslmode_is_one_libpq_knows_and_a_typo_is_named():
    for mode in LIBPQ_SSLMODES:
        assert settings_with("postgres", PG_SSLMODE=mode).postgres.sslmode == mode
    # Before: any text was taken, and libpq refused it only at the first connection, unnamed.
    assert "PG_SSLMODE: invalid value" in problems("postgres", PG_SSLMODE="requir")


def test_sslrootcert_must_be_a_readable_file(tmp_path):
    message = problems("postgres", "serving", PG_SSLROOTCERT=str(tmp_path / "absent.pem"),
                       SERVING_PG_SSLROOTCERT=str(tmp_path))
    assert "PG_SSLROOTCERT: invalid value (no readable file" in message
    assert "SERVING_PG_SSLROOTCERT: invalid value (no readable file" in message


def test_libpq_gets_sslmode_and_the_root_certificate(pki):
    remote = settings_with("postgres", "postgres_app", "serving", PG_SSLMODE="verify-full",
                           PG_SSLROOTCERT=str(pki / "ca.pem"), SERVING_PG_SSLMODE="require")
    params = postgres_conn.connect_params(remote.postgres, remote.postgres_app, "test")
    assert (params["sslmode"], params["sslrootcert"]) == ("verify-full", str(pki / "ca.pem"))
    assert postgres_conn.connect_params(remote.serving, remote.postgres_app, "test")["sslmode"] == "require"
    assert "sslrootcert" not in postgres_conn.connect_params(remote.serving, remote.postgres_app, "test")
    url = postgres_conn.sqlalchemy_url(remote.postgres, remote.postgres_app)
    assert dict(url.query) == {"sslmode": "verify-full", "sslrootcert": str(pki / "ca.pem")}
    local = settings_with("postgres", "postgres_app")
    assert postgres_conn.tls_params(local.postgres) == {"sslmode": "prefer"}


def test_debezium_and_confluent_get_the_same_postgres_tls(pki):
    remote = settings_with("postgres", "replication", "kafka", "connect", PG_SSLMODE="verify-full",
                           PG_SSLROOTCERT=str(pki / "ca.pem"))
    config = register.render_local(remote)["config"]
    assert (config["database.sslmode"], config["database.sslrootcert"]) == ("verify-full", str(pki / "ca.pem"))
    assert "database.sslrootcert" not in register.render_local(settings_with("postgres", "replication", "kafka",
                                                                             "connect"))["config"]
    cloud = confluent.render(confluent.values_from_settings(settings_with(
        "postgres", "replication", "kafka", "connect", PG_SSLMODE="require", KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_USERNAME="KEY")))
    assert cloud["config"]["database.sslmode"] == "require"


# --- Kafka -------------------------------------------------------------------------------------------


def test_sasl_ssl_without_the_api_key_is_named_when_settings_load():
    message = problems("kafka", KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_PASSWORD="")
    assert "KAFKA_SASL_USERNAME: missing" in message and "KAFKA_SASL_PASSWORD: missing" in message


def test_a_kafka_ca_file_without_tls_is_named(pki):
    assert "KAFKA_SSL_CA_FILE: set, but KAFKA_SECURITY_PROTOCOL is PLAINTEXT" in problems(
        "kafka", KAFKA_SSL_CA_FILE=str(pki / "ca.pem"))


def test_librdkafka_verifies_the_broker_under_sasl_ssl(pki):
    assert client_conf(settings_with("kafka").kafka) == {"bootstrap.servers": "127.0.0.1:19092"}
    cloud = settings_with("kafka", KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_USERNAME="KEY",
                          KAFKA_BOOTSTRAP_SERVERS="pkc-1.europe-west1.gcp.confluent.cloud:9092").kafka
    conf = client_conf(cloud)
    assert conf["security.protocol"] == "SASL_SSL" and conf["ssl.endpoint.identification.algorithm"] == "https"
    assert "ssl.ca.location" not in conf  # the system's CAs: Confluent Cloud chains to a public CA
    own_ca = settings_with("kafka", KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_USERNAME="KEY",
                           KAFKA_SSL_CA_FILE=str(pki / "ca.pem")).kafka
    assert client_conf(own_ca)["ssl.ca.location"] == str(pki / "ca.pem")


def test_spark_kafka_source_verifies_the_broker_under_sasl_ssl(pki):
    base = dict(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_USERNAME="KEY")
    options = kafka_options(settings_with("kafka", "spark", **base))
    assert options["kafka.security.protocol"] == "SASL_SSL"
    assert options["kafka.ssl.endpoint.identification.algorithm"] == "https"
    assert "kafka.ssl.truststore.location" not in options  # the JVM's CAs
    options = kafka_options(settings_with("kafka", "spark", **base, KAFKA_SSL_CA_FILE=str(pki / "ca.pem")))
    assert (options["kafka.ssl.truststore.type"], options["kafka.ssl.truststore.location"]) == \
        ("PEM", str(pki / "ca.pem"))
    assert not any(k.startswith("kafka.ssl") for k in kafka_options(settings_with("kafka", "spark")))


# --- Cassandra ---------------------------------------------------------------------------------------


def test_cassandra_without_ssl_gets_no_context():
    cassandra = settings_with("cassandra").cassandra
    assert (cassandra.ssl, cassandra.ssl_verify_hostname) == (False, True)
    assert ssl_context(cassandra) is None


def test_bad_cassandra_tls_values_are_each_named(pki, tmp_path):
    message = problems("cassandra", CASSANDRA_SSL="maybe", CASSANDRA_SSL_VERIFY_HOSTNAME="sometimes",
                       CASSANDRA_SSL_CA_FILE=str(tmp_path / "absent.pem"))
    for name in ("CASSANDRA_SSL:", "CASSANDRA_SSL_VERIFY_HOSTNAME:", "CASSANDRA_SSL_CA_FILE: invalid value (no readable"):
        assert name in message
    # A CA file with TLS off would look safe and send the password in clear text.
    assert "CASSANDRA_SSL_CA_FILE: set, but CASSANDRA_SSL is false" in problems(
        "cassandra", CASSANDRA_SSL_CA_FILE=str(pki / "ca.pem"))
    assert "CASSANDRA_SSL_KEY_FILE: missing" in problems(
        "cassandra", CASSANDRA_SSL="true", CASSANDRA_SSL_CERT_FILE=str(pki / "client.pem"))


def test_cassandra_context_verifies_chain_and_name(pki):
    context = ssl_context(settings_with("cassandra", CASSANDRA_SSL="true",
                                        CASSANDRA_SSL_CA_FILE=str(pki / "ca.pem")).cassandra)
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert [dict(x[0] for x in c["subject"])["commonName"] for c in context.get_ca_certs()] == ["test ca"]
    no_name = ssl_context(settings_with("cassandra", CASSANDRA_SSL="yes", CASSANDRA_SSL_VERIFY_HOSTNAME="false",
                                        CASSANDRA_SSL_CA_FILE=str(pki / "ca.pem")).cassandra)
    assert (no_name.verify_mode, no_name.check_hostname) == (ssl.CERT_REQUIRED, False)


def test_cassandra_context_completes_a_handshake_only_with_the_right_ca_and_name(pki, server):
    settings = dict(CASSANDRA_SSL="true", CASSANDRA_SSL_CA_FILE=str(pki / "ca.pem"))
    context = ssl_context(settings_with("cassandra", **settings).cassandra)
    assert server.handshake(context, "localhost") == b"ok"
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        server.handshake(context, "cassandra.example.com")
    stranger = ssl_context(settings_with("cassandra", CASSANDRA_SSL="true",
                                         CASSANDRA_SSL_CA_FILE=str(pki / "other-ca.pem")).cassandra)
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer certificate"):
        server.handshake(stranger, "localhost")
    system_cas = ssl_context(settings_with("cassandra", CASSANDRA_SSL="true").cassandra)
    with pytest.raises(ssl.SSLCertVerificationError):  # our private CA is not among the system's
        server.handshake(system_cas, "localhost")
    unnamed = ssl_context(settings_with("cassandra", **settings, CASSANDRA_SSL_VERIFY_HOSTNAME="false").cassandra)
    assert server.handshake(unnamed, "cassandra.example.com") == b"ok"


def test_cassandra_client_certificate_is_presented(pki):
    server = TlsServer(pki, require_client_cert=True)
    try:
        with_cert = ssl_context(settings_with(
            "cassandra", CASSANDRA_SSL="true", CASSANDRA_SSL_CA_FILE=str(pki / "ca.pem"),
            CASSANDRA_SSL_CERT_FILE=str(pki / "client.pem"), CASSANDRA_SSL_KEY_FILE=str(pki / "client.key"))
            .cassandra)
        assert server.handshake(with_cert, "localhost") == b"ok"
        without = ssl_context(settings_with("cassandra", CASSANDRA_SSL="true",
                                            CASSANDRA_SSL_CA_FILE=str(pki / "ca.pem")).cassandra)
        with pytest.raises((ssl.SSLError, ConnectionError)):  # TLS 1.3: the refusal arrives with the first read
            server.handshake(without, "localhost")
    finally:
        server.close()
    mismatched = settings_with("cassandra", CASSANDRA_SSL="true", CASSANDRA_SSL_CERT_FILE=str(pki / "client.pem"),
                               CASSANDRA_SSL_KEY_FILE=str(pki / "server.key")).cassandra
    with pytest.raises(ssl.SSLError):
        ssl_context(mismatched)


def test_cqlsh_gets_the_same_tls(pki):
    assert cqlsh_ssl_section(settings_with("cassandra").cassandra) == ""
    section = cqlsh_ssl_section(settings_with(
        "cassandra", CASSANDRA_SSL="true", CASSANDRA_SSL_CA_FILE=str(pki / "ca.pem"),
        CASSANDRA_SSL_CERT_FILE=str(pki / "client.pem"), CASSANDRA_SSL_KEY_FILE=str(pki / "client.key")).cassandra)
    assert section.splitlines() == ["[ssl]", "validate = true", f"certfile = {pki / 'ca.pem'}",
                                    f"usercert = {pki / 'client.pem'}", f"userkey = {pki / 'client.key'}"]
