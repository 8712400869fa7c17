"""The two Debezium configs (self-managed Connect, Confluent Cloud V2) agree with each other, with the
dataset description and with the publication in sql/, hold no secret, and render completely: the cloud
one through connectors.confluent, the local one through connectors.register (every ${NAME} from typed
settings, never a secret, ${env:...} left for Connect, an unknown placeholder named)."""

from __future__ import annotations

import json
import re

import pytest

from binance_cdc import datasets
from binance_cdc.settings import PROJECT_ROOT, VARIABLES, SettingsError, load_settings
from connectors import confluent, register

LOCAL = PROJECT_ROOT / "connectors" / "debezium-postgres-local.json"
CLOUD = confluent.TEMPLATE

# Property names of PostgresCdcSourceV2 as documented by Confluent (connector page's property table and its
# configuration example; the CLI reference for the {"name", "config"} file). Confluent rejects unknown names,
# so a new property has to be checked there before it is added here. heartbeat.action.query: listed (type
# STRING) among PostgresCdcSourceV2's parameters as Confluent Cloud reports them for a created connector
# (vdesabou/kafka-docker-playground issues 7146 and 7550, "list of all available parameters").
DOCUMENTED_V2 = {
    "connector.class", "name", "kafka.auth.mode", "kafka.api.key", "kafka.api.secret",
    "kafka.service.account.id", "database.hostname", "database.port", "database.user", "database.password",
    "database.dbname", "database.sslmode", "topic.prefix", "table.include.list", "table.exclude.list",
    "plugin.name", "slot.name", "publication.name", "publication.autocreate.mode", "snapshot.mode",
    "output.data.format", "output.key.format", "after.state.only", "decimal.handling.mode",
    "time.precision.mode", "tombstones.on.delete", "heartbeat.interval.ms", "heartbeat.action.query", "tasks.max",
    "skipped.operations",
}
MUST_AGREE = (
    "topic.prefix", "plugin.name", "slot.name", "publication.name", "publication.autocreate.mode",
    "snapshot.mode", "skipped.operations", "decimal.handling.mode", "time.precision.mode", "tombstones.on.delete",
    "heartbeat.interval.ms", "heartbeat.action.query", "database.hostname", "database.port", "database.dbname",
    "database.user",
    "database.sslmode",
)


def config(path):
    return json.loads(path.read_text())["config"]


def tables(cfg):
    return set(cfg["table.include.list"].split(","))


def test_both_configs_capture_exactly_the_five_datasets():
    expected = {f"binance.{name}" for name in datasets.DATASETS}
    assert tables(config(LOCAL)) == expected
    assert tables(config(CLOUD)) == expected


HEARTBEAT_TABLE = "cdc_heartbeat.beats"


def test_publication_sql_lists_the_same_tables_and_the_heartbeat_table():
    sql = (PROJECT_ROOT / "sql" / "04_publication.sql").read_text()
    listed = set(re.findall(r"[a-z_]+\.[a-z_]+", sql.split("SET TABLE", 1)[1]))
    # pgoutput sends the connector only the publication's changes: without the heartbeat table there, the
    # heartbeat's write never reaches it and the slot cannot move while the five tables are idle.
    assert listed == {f"binance.{name}" for name in datasets.DATASETS} | {HEARTBEAT_TABLE}


def test_heartbeat_writes_the_heartbeat_table_per_slot_and_never_reaches_a_topic():
    ddl = (PROJECT_ROOT / "sql" / "03_heartbeat.sql").read_text()
    assert f"CREATE TABLE IF NOT EXISTS {HEARTBEAT_TABLE}" in ddl
    for cfg in (config(LOCAL), config(CLOUD)):
        query = cfg["heartbeat.action.query"]
        assert f"INSERT INTO {HEARTBEAT_TABLE} (slot_name, beat_at, beat_lsn)" in query
        assert "'${DEBEZIUM_SLOT_NAME}'" in query and "pg_current_wal_lsn()" in query
        assert HEARTBEAT_TABLE not in cfg["table.include.list"]  # its events are filtered, not published
    assert config(LOCAL)["schema.include.list"] == "binance"


@pytest.mark.parametrize("key", MUST_AGREE)
def test_configs_agree(key):
    assert config(LOCAL)[key] == config(CLOUD)[key]


def test_modes_keep_data_exact_and_deletes_visible():
    for cfg in (config(LOCAL), config(CLOUD)):
        assert cfg["decimal.handling.mode"] == "string"  # never base64 bytes or doubles
        assert cfg["time.precision.mode"] == "adaptive_time_microseconds"
        assert cfg["tombstones.on.delete"] == "true"
        assert int(cfg["heartbeat.interval.ms"]) > 0  # an idle slot must not hold WAL forever
        assert cfg["plugin.name"] == "pgoutput"


def test_truncates_are_emitted_not_skipped():
    # Debezium's default skipped.operations=t drops TRUNCATEs, and Cassandra would silently keep the rows.
    for cfg in (config(LOCAL), config(CLOUD)):
        assert cfg.get("skipped.operations") == "none"


def test_cloud_config_uses_only_documented_properties():
    assert set(config(CLOUD)) <= DOCUMENTED_V2, set(config(CLOUD)) - DOCUMENTED_V2
    assert config(CLOUD)["connector.class"] == "PostgresCdcSourceV2"
    assert config(CLOUD)["after.state.only"] == "false"  # the stream needs the whole envelope


def test_no_secret_is_stored_in_either_file():
    for cfg in (config(LOCAL), config(CLOUD)):
        for key, value in cfg.items():
            if any(word in key for word in ("password", "secret", "api.key")):
                assert value.startswith("${"), f"{key} holds a literal value"


def test_render_fills_every_placeholder_and_escapes_values():
    text = CLOUD.read_text()
    values = {name: f"v-{name}" for name in confluent.placeholders(text)}
    values["PG_REPLICATION_PASSWORD"] = 'pa"ss\\word'
    rendered = confluent.render(values)["config"]
    assert rendered["database.password"] == 'pa"ss\\word'
    assert "${" not in json.dumps(rendered)


def test_render_names_every_missing_variable():
    values = {name: "x" for name in confluent.placeholders(CLOUD.read_text())}
    values["KAFKA_SASL_PASSWORD"] = ""
    del values["PG_HOST"]
    with pytest.raises(SettingsError) as err:
        confluent.render(values)
    assert "KAFKA_SASL_PASSWORD" in str(err.value) and "PG_HOST" in str(err.value)


# --- connectors.register: the local config rendered from typed settings ---

REPLICATION_PASSWORD = "pw-Rn7q!never-in-the-config"
LOCAL_ENV = {
    "PG_HOST": "pg.example.internal", "PG_PORT": "6543", "PG_DATABASE": "binance_x", "PG_SSLMODE": "require",
    "PG_REPLICATION_USER": "cdc_x", "PG_REPLICATION_PASSWORD": REPLICATION_PASSWORD,
    "TOPIC_PREFIX": "prefix_x", "DEBEZIUM_SLOT_NAME": "slot_x", "DEBEZIUM_PUBLICATION": "pub_x",
    "KAFKA_SASL_PASSWORD": "sasl-secret-x",
}


def local_settings(**env):
    return load_settings(*register.SETTINGS_GROUPS, env={**LOCAL_ENV, **env})


def test_render_local_fills_every_placeholder_from_settings():
    template = config(LOCAL)
    names = {n for v in template.values() for n in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", v)}
    assert names  # the file does use settings placeholders
    rendered = register.render_local(local_settings())
    assert rendered["name"] == json.loads(LOCAL.read_text())["name"]
    cfg = rendered["config"]
    assert set(cfg) == set(template)
    expected = {
        "database.hostname": "pg.example.internal", "database.port": "6543", "database.dbname": "binance_x",
        "database.sslmode": "require", "database.user": "cdc_x", "topic.prefix": "prefix_x",
        "slot.name": "slot_x", "publication.name": "pub_x",
    }
    assert {k: cfg[k] for k in expected} == expected
    # every ${NAME} of the file was filled (each by the setting of the same variable name)
    assert all(LOCAL_ENV[n] in json.dumps(cfg) for n in names)
    assert not re.search(r"\$\{(?!env:)", json.dumps(cfg))
    # keys without placeholders are copied as they are
    assert {k: v for k, v in cfg.items() if "${" not in template[k]} == \
        {k: v for k, v in template.items() if "${" not in v}


def test_render_local_leaves_the_secret_to_connect():
    rendered = register.render_local(local_settings())
    assert rendered["config"]["database.password"] == "${env:PG_REPLICATION_PASSWORD}"
    text = json.dumps(rendered)
    assert REPLICATION_PASSWORD not in text and "sasl-secret-x" not in text


def test_secrets_are_never_substituted_even_when_a_file_names_them():
    values = register.settings_mapping(local_settings())
    secret_names = {v.env for v in VARIABLES if v.secret}
    assert not secret_names & set(values)
    assert REPLICATION_PASSWORD not in values.values()
    leaky = {"name": "leaky", "config": {"database.password": "${PG_REPLICATION_PASSWORD}"}}
    with pytest.raises(register.ConnectorError, match="PG_REPLICATION_PASSWORD"):
        register.render(leaky, values)


def test_render_names_every_unknown_placeholder():
    template = {"name": "t", "config": {"a": "${NO_SUCH_SETTING}", "b": "x-${ALSO_MISSING}-y",
                                        "c": "${PG_HOST}", "d": "${env:LEFT_FOR_CONNECT}"}}
    with pytest.raises(register.ConnectorError) as err:
        register.render(template, register.settings_mapping(local_settings()))
    message = str(err.value)
    assert "connector t" in message and "ALSO_MISSING" in message and "NO_SUCH_SETTING" in message
    assert "PG_HOST" not in message and "LEFT_FOR_CONNECT" not in message


def test_render_local_overrides_and_name_for_throwaway_copies():
    rendered = register.render_local(local_settings(), {"slot.name": "it_slot", "topic.prefix": "it"},
                                     name="binance-it")
    assert rendered["name"] == "binance-it"
    assert (rendered["config"]["slot.name"], rendered["config"]["topic.prefix"]) == ("it_slot", "it")
    assert rendered["config"]["database.hostname"] == "pg.example.internal"
    # the overridden slot also names the heartbeat rows, so a throwaway connector never masks the pipeline's
    query = rendered["config"]["heartbeat.action.query"]
    assert "'it_slot'" in query and "slot_x" not in query
    assert "'slot_x'" in register.render_local(local_settings())["config"]["heartbeat.action.query"]


def test_a_slot_name_that_could_break_the_heartbeat_query_is_refused():
    with pytest.raises(SettingsError, match="DEBEZIUM_SLOT_NAME"):
        local_settings(DEBEZIUM_SLOT_NAME="x'); DROP TABLE binance.klines; --")
    with pytest.raises(SettingsError, match="DEBEZIUM_SLOT_NAME"):
        local_settings(DEBEZIUM_SLOT_NAME="Binance_Slot")
