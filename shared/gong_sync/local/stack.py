"""Bring up whatever the environment does not name: the embedded Postgres and BigQuery."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from gong_sync.bigquery_reader import make_client
from gong_sync.settings import Settings

log = logging.getLogger(__name__)


def seed_demo_if_empty(settings: Settings, scale: int = 1) -> bool:
    """Load the demo dataset into every source table the emulator does not have yet.

    Tables already there keep their rows, so a checkout seeded before a source was added
    gets that source's tables on its next run instead of a 404.
    """
    from gong_sync.local import demo_data, fivetran_schemas

    client = make_client(settings.bigquery)
    datasets = {
        "gong": settings.bigquery.gong_dataset,
        "salesforce": settings.bigquery.salesforce_dataset,
    }
    missing = [t for t in fivetran_schemas.TABLES if not _exists(client, datasets, t)]
    if not missing:
        return False
    log.info("seeding the demo dataset (scale %d) into the BigQuery emulator", scale)
    # The generator draws every table from one random stream: build all, load the missing.
    everything = demo_data.generate(scale)
    data = {t: everything[t] for t in missing if t in everything}
    counts = demo_data.seed_bigquery(client, client.project, datasets, data)
    log.info("seeded %d rows in %d tables", sum(counts.values()), len(counts))
    return True


def _exists(client: bigquery.Client, datasets: dict[str, str], table: str) -> bool:
    from gong_sync.local import fivetran_schemas

    try:
        client.get_table(fivetran_schemas.table_id(client.project, datasets, table))
        return True
    except NotFound:
        return False


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
                    settings.bigquery,
                    emulator_host=host,
                    storage_emulator_host=bq.grpc_host,
                    project=bq.project,
                ),
            )
            seed_demo_if_empty(settings, scale)
        yield settings
