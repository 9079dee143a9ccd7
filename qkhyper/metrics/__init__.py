"""Prometheus metrics and health checks of a supervisor and its workers (README "Metrics").

Workers count in plain dicts (`recorder.py`) and send a snapshot with every
heartbeat over the report pipe; the supervisor keeps the last snapshot of each
worker and a total of those that exited (`store.py`), and renders everything
with prometheus-client when scraped (`collector.py`) on its own small HTTP
listener (`endpoint.py`), which also answers `/healthz` and `/readyz`
(`health.py`). No multiprocess directory, no global registry.
"""
