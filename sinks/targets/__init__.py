"""HTTP clients of the systems golden records are pushed to (the demo CRM and ERP APIs).

Plain configuration values in (:class:`~sinks.targets.client.ClientSettings`), no flows models:
sinks import core only. Rate limiting, retries with backoff, batch split-and-retry and the circuit
breaker live here; what to send is decided in :mod:`flows.propagate`.
"""
