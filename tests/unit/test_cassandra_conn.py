"""The .cql statement splitter and the keyspace/replication substitution (no Cassandra needed)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from binance_cdc.cassandra_conn import CqlSyntaxError, cql_decimal_literal, cql_statements, split_statements, substitute

CQL_DIR = Path(__file__).resolve().parents[2] / "cql"
NTS = "{'class': 'NetworkTopologyStrategy', 'dc1': 3}"


def test_splits_on_semicolons_and_drops_comments():
    text = """
    -- a leading comment; with a semicolon
    CREATE TABLE t (a int PRIMARY KEY); // trailing comment
    /* block; comment */ INSERT INTO t (a) VALUES (1);

    SELECT * FROM t
    """
    assert split_statements(text) == [
        "CREATE TABLE t (a int PRIMARY KEY)",
        "INSERT INTO t (a) VALUES (1)",
        "SELECT * FROM t",
    ]


def test_keeps_comment_markers_and_semicolons_inside_quotes():
    text = "INSERT INTO t (a, b) VALUES ('x -- y; z', 'it''s // fine');\nSELECT \"odd;name\" FROM t;"
    assert split_statements(text) == [
        "INSERT INTO t (a, b) VALUES ('x -- y; z', 'it''s // fine')",
        'SELECT "odd;name" FROM t',
    ]


def test_keeps_dollar_quoted_bodies_whole():
    text = "CREATE FUNCTION f(a int) RETURNS NULL ON NULL INPUT RETURNS int LANGUAGE java AS $$ return a; $$;"
    assert split_statements(text) == [text[:-1]]


def test_only_comments_and_blank_lines_give_no_statements():
    assert split_statements("-- nothing\n\n  ;\n/* x */") == []


@pytest.mark.parametrize("text", ["SELECT 'open", "SELECT 1 /* open", 'SELECT "open'])
def test_unterminated_quote_or_comment_is_an_error_naming_it(text):
    with pytest.raises(CqlSyntaxError, match="unterminated"):
        split_statements(text)


def test_substitutes_keyspace_as_a_whole_word_only():
    stmt = "CREATE TABLE IF NOT EXISTS binance_test.klines (binance_test_id int PRIMARY KEY)"
    assert substitute(stmt, "prod_ks", NTS) == (
        "CREATE TABLE IF NOT EXISTS prod_ks.klines (binance_test_id int PRIMARY KEY)")


def test_substitutes_the_single_node_replication_map_whatever_its_spacing():
    stmt = "CREATE KEYSPACE binance_test WITH replication = {'class':'SimpleStrategy','replication_factor' : 1}"
    assert substitute(stmt, "prod_ks", NTS) == f"CREATE KEYSPACE prod_ks WITH replication = {NTS}"


def test_other_replication_maps_are_left_alone():
    stmt = "CREATE KEYSPACE x WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}"
    assert substitute(stmt, "prod_ks", NTS) == stmt


def test_keyspace_file_becomes_one_create_keyspace_for_the_configured_names():
    statements = cql_statements((CQL_DIR / "00_keyspace.cql").read_text(), "prod_ks", NTS)
    assert len(statements) == 1
    assert statements[0].startswith("CREATE KEYSPACE IF NOT EXISTS prod_ks")
    assert NTS in statements[0]
    assert "binance_test" not in statements[0]


def test_every_cql_file_splits_and_mentions_no_literal_keyspace_after_substitution():
    files = sorted(CQL_DIR.glob("*.cql"))
    assert files, "cql/ has no files"
    for path in files:
        statements = cql_statements(path.read_text(), "prod_ks", NTS)
        assert statements, f"{path.name} has no statements"
        assert not any("binance_test" in s for s in statements), path.name


@pytest.mark.parametrize("text", ["2820413769.36626970", "0.00000001", "1E-8", "-12.50", "1E+3", "NaN", "-Infinity"])
def test_decimal_literal_keeps_every_digit_and_the_scale(text):
    literal = cql_decimal_literal(Decimal(text))
    assert Decimal(literal).as_tuple() == Decimal(text).as_tuple()
    assert "." in literal or "E" in literal or text.lstrip("-").isalpha()  # never a float repr


def test_signalling_nan_has_no_literal():
    with pytest.raises(ValueError, match="signalling NaN"):
        cql_decimal_literal(Decimal("sNaN"))
