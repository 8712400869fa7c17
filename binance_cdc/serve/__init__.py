"""Stage 4, the serving side: Cassandra -> Postgres serving schema (bridge), Grafana panels, charts, reconcile."""
