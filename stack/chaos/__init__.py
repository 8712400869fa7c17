"""`make chaos`: kill -9 one process of the local stack at a time under a steady mixed load, recover the way
the README tells a user, and prove with `make reconcile` that Postgres, Cassandra and the serving tables
still agree exactly; then send poison messages through the live stream.

Faults, in order: Kafka Connect, the Kafka broker, the streaming job, Cassandra, Postgres (stack/chaos/
faults.py). The load (stack/chaos/load.py) writes about 200 rows a second as the app role: single and
multi-row INSERTs, COPY, UPDATEs, DELETEs (and their tombstones), re-inserts, all under symbols CHAOS*,
which the suite deletes again at the end. Per fault it reports rows written, recovery time (kill ->
`make status` exits 0), time until the end-to-end lag is under 5 s, and reconcile's missing/extra/differing
counts (stack/chaos/report.py), printed and saved to .local/logs/chaos.md and chaos.json.

Needs: the local stack up (`make up`) from this checkout; it kills only processes whose command line names
this checkout. It uses the pipeline's own namespaces (keyspace, schema, connector, checkpoint) and starts
the streaming job if none runs, as `make demo` does. Takes about 8-12 minutes on 2 cores.

    make chaos                                   # or: .venv/bin/python -m stack.chaos
    .venv/bin/python -m stack.chaos --faults streaming,Cassandra --no-poison   # a subset
"""
