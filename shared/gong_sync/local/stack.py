"""Bring up whatever the environment does not name: the embedded Postgres and BigQuery."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from google.api_core.exceptions import NotFound

from gong_sync.bigquery_reader import make_client
from gong_sync.settings import Settings

log = logging.getLogger(__name__)


def seed_demo_if_empty(settings: Settings, scale: int = 1) -> bool:
    """Load the demo dataset into the emulator unless it is already there."""
    from gong_sync.local import demo_data

    client = make_client(settings.bigquery)
    datasets = {
        "gong": settings.bigquery.gong_dataset,
        "salesforce": settings.bigquery.salesforce_dataset,
    }
    try:
        client.get_table(f"{client.project}.{datasets['gong']}.call")
        return False
    except NotFound:
        pass
    log.info("seeding the demo dataset (scale %d) into the BigQuery emulator", scale)
    counts = demo_data.seed_bigquery(client, client.project, datasets, demo_data.generate(scale))
    log.info("seeded %d rows in %d tables", sum(counts.values()), len(counts))
    return True


@contextmanager
def local_stack(settings: Settings, *, bigquery: bool = True, scale: int = 1) -> Iterator[Settings]:
    """Yield settings with every unnamed service started locally; stop them on exit."""
    with ExitStack() as stack:
        root = Path(settings.local_dir)
        if not settings.postgres.is_external:
            from gong_sync.local.postgres_server import LocalPostgres

            pg = LocalPostgres(root / "postgres", settings.postgres.database)
            pg_settings = pg.start()
            stack.callback(pg.stop)
            settings = dataclasses.replace(settings, postgres=pg_settings)
        if bigquery and not settings.bigquery.is_external:
            from gong_sync.local.bigquery_emulator import LocalBigQuery

            bq = LocalBigQuery(root / "bigquery")
            host = bq.start()
            stack.callback(bq.stop)
            settings = dataclasses.replace(
                settings,
                bigquery=dataclasses.replace(
                    settings.bigquery, emulator_host=host, project=bq.project
                ),
            )
            seed_demo_if_empty(settings, scale)
        yield settings
