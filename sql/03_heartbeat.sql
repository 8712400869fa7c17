-- The heartbeat table (issue 9, finding 6). Debezium confirms a WAL position to Postgres only after it has
-- seen a change of a published table; with pgoutput, transactions that touch only unpublished tables send
-- nothing at all, so while the five tables are idle the slot would hold every byte of WAL written elsewhere.
-- The connector's heartbeat.action.query writes one row here every heartbeat.interval.ms; the table is in the
-- publication (04_publication.sql: Debezium's docs require it for pgoutput) but not in table.include.list,
-- so the change reaches the connector, moves its offset and is confirmed, while no topic ever gets it.
-- Each row also records the WAL position at which it was written: `make status` judges the slot by whether
-- it has confirmed the heartbeats written more than a minute ago (stack/change_path_verdicts.py).
-- Rows are keyed by slot, so a second connector (the tests' throwaway ones) never masks the pipeline's own.
CREATE SCHEMA IF NOT EXISTS cdc_heartbeat;

CREATE TABLE IF NOT EXISTS cdc_heartbeat.beats (
    slot_name   text        NOT NULL,
    beat_at     timestamptz NOT NULL,
    beat_lsn    pg_lsn      NOT NULL,
    PRIMARY KEY (slot_name, beat_at)
);

-- Least privilege: the replication role writes this one table (insert, and delete for the pruning the
-- action query does; both need SELECT for their WHERE) and nothing else; the app role never touches it.
REVOKE ALL ON SCHEMA cdc_heartbeat FROM PUBLIC;
REVOKE ALL ON cdc_heartbeat.beats FROM PUBLIC;
GRANT USAGE ON SCHEMA cdc_heartbeat TO :"cdc_role", :"reader_role";
GRANT SELECT, INSERT, DELETE ON cdc_heartbeat.beats TO :"cdc_role";
GRANT SELECT ON cdc_heartbeat.beats TO :"reader_role";
