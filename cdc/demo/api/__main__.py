"""Run one demo API: ``python -m cdc.demo.api {crm,erp} [--host H] [--port P]``.

Settings come from ``config/goldstream.yaml`` (or ``$GOLDSTREAM_CONFIG``), credentials from the
environment. Before serving, the API adds the columns and trigger it needs to its database
(idempotent). One uvicorn worker: rate limits, tokens and faults are per process.
"""

from __future__ import annotations

import argparse
import logging
import sys

import psycopg
import uvicorn

from cdc.demo.api import crm, erp
from cdc.demo.api.store import PgStore, ensure_schema
from cdc.pg import admin_dsn
from core.errors import GoldstreamError
from core.settings import load_settings

log = logging.getLogger("cdc.demo.api")
_SYSTEMS = {"crm": crm, "erp": erp}


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; exit 2 when settings, credentials or the database are not usable."""
    parser = argparse.ArgumentParser(prog="python -m cdc.demo.api", description=__doc__)
    parser.add_argument("system", choices=sorted(_SYSTEMS))
    parser.add_argument("--host", help="default: demo_apis.<system>.host")
    parser.add_argument("--port", type=int, help="default: demo_apis.<system>.port")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    module = _SYSTEMS[args.system]
    try:
        settings = load_settings()
        api = getattr(settings.demo_apis, args.system)
        dsn = admin_dsn(settings, args.system)
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            for change in ensure_schema(conn, module.SPECS):
                log.info("schema: %s", change)
        store = PgStore(
            dsn,
            pool_size=settings.demo_apis.db_pool_size,
            application_name=f"goldstream-demo-api-{args.system}",
        )
        app = module.create_app(settings, store)
    except (GoldstreamError, psycopg.Error) as exc:
        log.error("%s API: cannot start: %s", args.system, exc)
        return 2
    host, port = args.host or api.host, args.port or api.port
    log.info(
        "%s API: serving on http://%s:%s (rate limit %s/s, burst %s)",
        args.system,
        host,
        port,
        api.rate_limit_per_s or "unlimited",
        api.rate_limit_burst,
    )
    try:
        uvicorn.run(
            app, host=host, port=port, workers=1, log_level=args.log_level, timeout_graceful_shutdown=5
        )
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
