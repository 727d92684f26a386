"""bqemulator, with query results readable over the Storage Read API as BigQuery serves them.

BigQuery writes every query's result to an anonymous table (the job's `destination`) that
the Storage Read API reads like any other; google-cloud-bigquery's `to_arrow` with a
`bqstorage_client` does exactly that. bqemulator keeps results in memory and names that
table but cannot open a read session on it, so this launcher teaches its engine to serve
the table from the job's result before starting it.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa

# How bqemulator's read servicer quotes an anonymous result table in the SELECT it runs.
_ANONYMOUS = re.compile(
    r'^SELECT (?P<cols>.+?) FROM "[^"]*___bqemu_anonymous"\."anon(?P<job>[0-9A-Za-z_]+)"$'
)


# bqemulator answers ReadRows with messages of 65,536 rows (about 90 MB of transcripts), and a
# reader holds at least one: peak memory then measured the emulator's choice, not the engine.
# BigQuery does not document its response size; the stand-in sends this many rows a message.
RESPONSE_ROWS = 4096


def _result_table(job: str, cols: str) -> pa.Table:
    """A finished job's result, by the hyphenless id its anonymous table carries."""
    from bqemulator.jobs.executor import JOB_RESULTS

    for job_id, table in list(JOB_RESULTS.items()):
        if job_id.replace("-", "") == job:
            if cols.strip() != "*":
                table = table.select([c.strip().strip('"') for c in cols.split(",")])
            return pa.Table.from_batches(
                table.to_batches(max_chunksize=RESPONSE_ROWS), table.schema
            )
    raise LookupError(f"no result for job {job}: it expired or never finished")


def serve_results() -> None:
    """Patch the emulator's engine so a read session on a query result reads that result."""
    from bqemulator.storage.engine import DuckDBEngine

    plain = DuckDBEngine.fetch_arrow

    def fetch_arrow(self: Any, sql: str, parameters: list[Any] | None = None) -> pa.Table:
        found = _ANONYMOUS.match(sql.strip())
        if found is None:
            return plain(self, sql, parameters)
        return _result_table(found["job"], found["cols"])

    DuckDBEngine.fetch_arrow = fetch_arrow  # type: ignore[method-assign]


def main() -> None:
    """Start bqemulator (same arguments) with query results served to Storage Read."""
    from bqemulator.cli import main as emulator

    serve_results()
    emulator()


if __name__ == "__main__":
    main()
