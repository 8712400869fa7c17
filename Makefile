# The project's two commands are `make demo` (the pipeline on the local stack) and `make test`.
# Everything is installed idempotently into .venv/ and .local/ (both git-ignored).
SHELL := /bin/bash
.DEFAULT_GOAL := help
include stack/versions.env

PY      := .venv/bin/python
PYTEST  := .venv/bin/pytest
MVN_PROPS := -Dkafka.version=$(KAFKA_VERSION) -Ddebezium.version=$(DEBEZIUM_VERSION) \
	-Dcassandra.version=$(CASSANDRA_VERSION) -Dspark.version=$(SPARK_VERSION) \
	-Dscala.binary=$(SCALA_BINARY) \
	-Dlog4j2.version=$(LOG4J2_VERSION)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: help setup system-packages up down status clean test test-unit demo bench simulator bridge reconcile \
	psql cqlsh charts chaos

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: system-packages .venv/.installed .local/lib/.installed .env  ## install everything (safe to rerun)

system-packages:  ## Debian packages: PostgreSQL, Java 17, Maven (only what is missing)
	@missing=""; \
	[ -x /usr/lib/postgresql/$(POSTGRES_MAJOR)/bin/postgres ] || missing="$$missing postgresql-$(POSTGRES_MAJOR) postgresql-client-$(POSTGRES_MAJOR)"; \
	command -v java >/dev/null && java -version 2>&1 | grep -q 'version "17' || missing="$$missing openjdk-17-jre-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	command -v pgrep >/dev/null || missing="$$missing procps"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	  if [ -d /etc/postgresql ]; then $(SUDO) service postgresql stop >/dev/null 2>&1 || true; fi; \
	fi

.venv/.installed: requirements.txt
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

.local/lib/.installed: stack/versions.env stack/maven/pom.xml $(wildcard stack/maven/*/pom.xml)
	rm -rf .local/lib/spark  # a jar dropped from a pom must not linger on spark.jars
	mvn -B -q -f stack/maven/pom.xml package $(MVN_PROPS)
	touch $@

.env: .env.example
	@$(PY) -m stack env

up: setup  ## start every service and wait until each answers
	$(PY) -m stack up

down:  ## stop every service (data is kept)
	@[ -x $(PY) ] && $(PY) -m stack down || true

status:  ## each service, then the change path (connector, slot, stream, bridge); exit 0 only when all are healthy
	@$(PY) -m stack status

clean:  ## stop everything and delete the local data and logs (.local/data, .local/logs)
	@echo "This deletes every local database, topic and table under .local/data."
	@[ -x $(PY) ] && $(PY) -m stack clean || true

test: up  ## the whole test suite (brings the stack up first)
	$(PYTEST) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose" >&2; exit 1; fi; exit $$rc

test-unit: .venv/.installed  ## only the tests that need no service
	$(PYTEST) -m "not integration" $(PYTEST_ARGS)

demo: up  ## the main job: the whole pipeline on the local stack (real API when reachable, else the simulator)
	$(PY) -m stack.demo

bridge: up  ## one bridge run: new Cassandra changes -> the serving tables Grafana reads
	$(PY) pg_cassandra_bridge.py

reconcile: up  ## compare Postgres, Cassandra and the serving tables exactly; non-zero exit on any drift
	$(PY) -m binance_cdc.serve.reconcile

charts: up  ## the dashboard's panels as PNGs in docs/charts (the same SQL as Grafana, as the Grafana role)
	$(PY) -m binance_cdc.serve.charts --out docs/charts

psql: up  ## a psql shell on schemas serving and binance as the read-only role
	@$(PY) -m stack.shells psql

cqlsh: up  ## a cqlsh shell on the keyspace as the read-only role
	@$(PY) -m stack.shells cqlsh

bench: up .local/lib/seed/.installed  ## every benchmark side by side with the naive way; writes bench/results.json
	$(PY) -m bench

chaos: up  ## kill -9 each service under load, recover, reconcile; poison messages (.local/logs/chaos.md)
	$(PY) -m stack.chaos

# Bench only: the spark-cassandra-connector for bench/seed_job.py (the original project's job pattern). Its own
# folder, so resolving it never touches .local/lib/spark, which running jobs load.
.local/lib/seed/.installed: bench/seed_jars/pom.xml
	rm -rf .local/lib/seed  # a jar dropped from the pom must not linger
	mvn -B -q -f bench/seed_jars/pom.xml package -Dscala.binary=$(SCALA_BINARY)
	touch $@

simulator: .venv/.installed  ## the Binance simulator on 127.0.0.1:8765 (offline demos)
	$(PY) -m simulator --port 8765
