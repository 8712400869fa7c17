"""Grafana's provisioning substitution rules and the shape of our provisioning files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from binance_cdc.serve import dashboard as dash
from binance_cdc.serve.grafana_provisioning import (
    GRAFANA_SSLMODES, ProvisioningError, datasource_login, go_expand_env, interpolate, interpolate_value,
    load_provisioning,
)
from binance_cdc.settings import VARIABLES

DATASOURCE_YAML = dash.PROVISIONING_DIR / "datasources" / "postgres.yaml"
PROVIDER_YAML = dash.PROVISIONING_DIR / "dashboards" / "provider.yaml"
ENV = {"HOST": "db.example", "PORT": "5433", "EMPTY": ""}


@pytest.mark.parametrize("raw, expected", [
    ("${HOST}:${PORT}", "db.example:5433"),
    ("$__env{HOST}", "db.example"),
    ("$HOST", "db.example"),
    ("$HOST.x", "db.example.x"),
    ("${UNSET}", ""),                  # unset: empty, silently
    ("$__env{UNSET}", ""),
    ("a$UNSET-b", "a-b"),
    ("pa$$word", "pa$word"),           # $$ is a literal $
    ("$${HOST}", "${HOST}"),           # ... and protects what follows
    ("$$HOST", "$HOST"),
    ("100$", "100$"),                  # a trailing $ stays
    ("a$ b", "a$ b"),                  # $ followed by no name stays
    ("a${}b", "ab"),                   # bad syntax is eaten (Go os.Expand)
    ("no dollars", "no dollars"),
])
def test_interpolate_value(raw, expected):
    assert interpolate_value(raw, ENV) == expected


def test_file_expander_reads_and_trims(tmp_path: Path):
    secret = tmp_path / "pw"
    secret.write_text("  s3cret \n")
    assert interpolate_value(f"$__file{{{secret}}}", ENV) == "s3cret"
    with pytest.raises(ProvisioningError):
        interpolate_value(f"$__file{{{tmp_path / 'missing'}}}", ENV)


def test_go_expand_env_special_names():
    assert go_expand_env("$1 ${1} $HOST", {"1": "one", "HOST": "h"}) == "one one h"


def test_only_strings_are_interpolated_recursively():
    node = {"a": "${HOST}", "n": 1500, "b": False, "l": ["$PORT", {"x": "$$"}], "z": None}
    assert interpolate(node, ENV) == {"a": "db.example", "n": 1500, "b": False, "l": ["5433", {"x": "$"}],
                                      "z": None}


def test_datasource_file_shape():
    doc = yaml.safe_load(DATASOURCE_YAML.read_text())
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["type"] == "grafana-postgresql-datasource" and ds["uid"] == dash.DATASOURCE_UID
    assert ds["url"] == "${SERVING_PG_HOST}:${SERVING_PG_PORT}"  # host:port, no scheme, no database
    assert ds["user"] == "${GRAFANA_PG_USER}"
    assert "database" not in ds and "password" not in ds  # dropped by Grafana 12: jsonData / secureJsonData
    assert ds["jsonData"]["database"] == "${SERVING_PG_DATABASE}"
    assert ds["jsonData"]["sslmode"] == "${SERVING_PG_SSLMODE}"
    assert ds["jsonData"]["postgresVersion"] == 1500 and ds["jsonData"]["timescaledb"] is False
    assert ds["secureJsonData"] == {"password": "${GRAFANA_PG_PASSWORD}"}


def test_provisioning_only_references_declared_project_variables():
    declared = {v.env for v in VARIABLES} | {"GF_PATHS_PROVISIONING"}
    for path in (DATASOURCE_YAML, PROVIDER_YAML):
        text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        used = set(re.findall(r"\$(?:__env)?\{(\w+)\}", text))
        assert used <= declared, used - declared


def test_trap_a_dollar_inside_a_substituted_value_is_expanded_again(tmp_path: Path):
    # ExpandVar inserts the value, then os.ExpandEnv runs over the result: a password holding `$` is
    # mangled by Grafana (so generated passwords must avoid `$`; the integration test checks ours).
    assert interpolate_value("${PW}", {"PW": "p$$w"}) == "pw"
    assert interpolate_value("${PW}", {"PW": "a$HOST"}) == "a"
    secret = tmp_path / "pw"
    secret.write_text("s3cr$t\n")
    assert interpolate_value(f"$__file{{{secret}}}", ENV) == "s3cr"


def test_rendered_datasource_yields_the_login():
    env = {"SERVING_PG_HOST": "10.0.0.5", "SERVING_PG_PORT": "6432", "SERVING_PG_DATABASE": "binance",
           "SERVING_PG_SSLMODE": "require", "GRAFANA_PG_USER": "binance_grafana", "GRAFANA_PG_PASSWORD": "pw-1_x"}
    login = datasource_login(load_provisioning(DATASOURCE_YAML, env), dash.DATASOURCE_UID)
    assert (login.host, login.port, login.database, login.sslmode, login.user, login.password) == \
        ("10.0.0.5", 6432, "binance", "require", "binance_grafana", "pw-1_x")
    assert "pw-1_x" not in repr(login)


def test_an_unset_host_renders_an_invalid_url():
    with pytest.raises(ProvisioningError):
        datasource_login(load_provisioning(DATASOURCE_YAML, {}), dash.DATASOURCE_UID)


def test_provider_points_at_the_dashboard_folder():
    doc = load_provisioning(PROVIDER_YAML, {"GF_PATHS_PROVISIONING": str(dash.PROVISIONING_DIR)})
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file" and provider["name"] and provider["folder"]
    assert {"disableDeletion", "allowUiUpdates", "updateIntervalSeconds"} <= provider.keys()
    folder = Path(provider["options"]["path"])
    assert folder.resolve() == dash.DASHBOARD_PATH.parent.resolve()
    assert dash.DASHBOARD_PATH in list(folder.glob("*.json"))


def test_default_sslmode_is_one_grafana_accepts():
    # Grafana's Postgres data source accepts disable, require, verify-ca and verify-full, not libpq's prefer.
    var = next(v for v in VARIABLES if v.env == "SERVING_PG_SSLMODE")
    assert var.default in GRAFANA_SSLMODES
    for mode in GRAFANA_SSLMODES:
        assert var.parse(mode) == mode
    with pytest.raises(ValueError):
        var.parse("prefer")
