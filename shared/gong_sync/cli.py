"""The `gong-sync` command: run syncs and show their status."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gong_sync import (
    check,
    cost,
    live_check,
    migrate,
    runs,
    secret_manager,
    sources,
    state,
    sync,
    trigger,
    verify,
)
from gong_sync import log as gs_log
from gong_sync.bigquery_reader import BigQueryReader, make_client
from gong_sync.dead_letters import PostgresDeadLetterSink
from gong_sync.local.stack import local_stack
from gong_sync.postgres import connect
from gong_sync.settings import ConfigError, Settings

log = logging.getLogger("gong_sync")


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp with an explicit offset (a naive time would be ambiguous)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an RFC 3339 time: {text!r} (e.g. 2026-11-01T00:00:00Z)"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset; add Z or +00:00")
    return value


def _add_sources(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument(
        "--source",
        action="append",
        choices=sorted(sources.SOURCES),
        dest="sources",
        help=f"a source to {verb} (repeatable; default: all)",
    )


def _add_scope(parser: argparse.ArgumentParser) -> None:
    """What a run covers, the same for a local run and a published resync."""
    parser.add_argument("--full-refresh", action="store_true", help="ignore watermarks, read all")
    parser.add_argument("--since", type=parse_time, help="read rows synced at or after this time")
    parser.add_argument("--until", type=parse_time, help="read rows synced at or before this time")
    parser.add_argument("--ids", nargs="+", help="re-derive only these parent ids (e.g. call ids)")


def _add_verify(sub: Any) -> None:
    check = sub.add_parser(
        "verify", help="compare Postgres with BigQuery; exit 1 on drift or orphans"
    )
    _add_sources(check, "verify")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.add_argument(
        "--fix",
        action="store_true",
        help="delete extra and orphaned rows, re-sync missing and changed ones by id,"
        " then verify again",
    )
    check.add_argument(
        "--sample",
        type=int,
        default=500,
        help="parents per table whose values are compared (default 500; 0: keys only)",
    )


def _add_resync(sub: Any) -> None:
    """The resync command: publish a trigger, as the schedules and operators do."""
    resync = sub.add_parser("resync", help="publish a trigger message to the trigger topic")
    resync.add_argument(
        "--source",
        action="append",
        choices=sorted(sources.SOURCES),
        dest="sources",
        required=True,
        help="a source to resync (repeatable)",
    )
    _add_scope(resync)
    resync.add_argument(
        "--verify", action="store_true", help="reconcile instead of sync (as the daily trigger)"
    )
    resync.add_argument("--fix", action="store_true", help="with --verify: repair the drift")
    resync.add_argument(
        "--sample",
        type=int,
        help="with --verify: parents per table whose values are compared (0: keys only)",
    )


def parser() -> argparse.ArgumentParser:
    """The command line: run, verify, resync and status."""
    parser = argparse.ArgumentParser(prog="gong-sync", description=__doc__)
    parser.add_argument(
        "--log-format",
        choices=("json", "text"),
        default=None,
        help="log format on stderr (default: text on a terminal, json otherwise)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="sync sources from BigQuery into Postgres")
    _add_sources(run, "sync")
    _add_scope(run)
    run.add_argument(
        "--scale", type=int, default=1, help="demo data size when seeding the local emulator"
    )
    _add_verify(sub)
    _add_resync(sub)
    status = sub.add_parser("status", help="show each source's watermark and last run")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    preflight = sub.add_parser(
        "check", help="preflight: reach every service, find every table, project the cost"
    )
    preflight.add_argument("--json", action="store_true", help="machine-readable output")
    preflight.add_argument(
        "--live",
        action="store_true",
        help="after a deploy: trigger every source, wait for its run, verify a sample",
    )
    preflight.add_argument(
        "--timeout", type=float, default=900.0, help="seconds to wait for the runs (--live)"
    )
    preflight.add_argument(
        "--sample", type=int, default=50, help="parents verified per table (--live)"
    )
    return parser


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, datetime):
        return value.isoformat()
    return "" if value is None else str(value)


# The summary table of `run`: a header and the RunStats field it shows.
_RUN_COLUMNS = (
    ("source", "source"),
    ("status", "status"),
    ("read", "rows_read"),
    ("upserted", "rows_upserted"),
    ("unchanged", "rows_unchanged"),
    ("deleted", "rows_deleted"),
    ("failed", "rows_failed"),
    ("bytes", "bytes_processed"),
    ("billed", "bytes_billed"),
    ("seconds", "duration_seconds"),
)


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """Sync the chosen sources and print a summary table."""
    names = args.sources or list(sources.SOURCES)
    options = runs.RunOptions(
        full_refresh=args.full_refresh,
        since=args.since,
        until=args.until,
        ids=tuple(args.ids or ()),
    )
    with local_stack(settings, scale=args.scale) as live:
        conn = connect(live.postgres)
        migrate.apply(conn)
        conn.close()
        reader = BigQueryReader(make_client(live.bigquery), live.bigquery)
        results = [_run_one(name, live, reader, options) for name in names]
    rows = [tuple(getattr(r, field) for _, field in _RUN_COLUMNS) for r in results]
    sys.stdout.write(_table(rows, [header for header, _ in _RUN_COLUMNS]) + "\n")
    return 1 if any(r.status in ("failed", "degraded") for r in results) else 0


def _run_one(
    name: str, live: Settings, reader: BigQueryReader, options: runs.RunOptions
) -> runs.RunStats:
    """One source's run; a failure is logged and reported, and the next source still runs."""
    try:
        return sync.run_source(
            sources.get(name),
            live,
            reader,
            lambda: connect(live.postgres),
            PostgresDeadLetterSink,
            options,
        )
    except Exception as exc:
        log.error("source %s failed: %s", name, exc, exc_info=True)
        return runs.RunStats(name, status="failed")


def _verify_all(
    names: Sequence[str], live: Settings, reader: BigQueryReader, sample: int
) -> list[verify.SourceReport]:
    conn = connect(live.postgres)
    try:
        return [verify.verify_source(sources.get(n), live, reader, conn, sample) for n in names]
    finally:
        conn.close()


def _print_reports(reports: Sequence[verify.SourceReport], as_json: bool, title: str) -> None:
    if as_json:
        doc = [
            {
                "source": r.source,
                "drift": r.drift,
                "clean": r.clean,
                "bytes_processed": r.bytes_processed,
                "targets": [t.summary() for t in r.targets],
            }
            for r in reports
        ]
        sys.stdout.write(json.dumps({"phase": title, "sources": doc}, indent=2) + "\n")
        return
    rows = [
        (r.source, t.target, t.bigquery_rows, t.postgres_rows, *(t.count(k) for k in verify.KINDS),
         t.rejected, t.values_checked, r.bytes_processed)
        for r in reports
        for t in r.targets
    ]  # fmt: skip
    header = ("source", "target", "bigquery", "postgres", "missing", "extra", "changed",
              "orphans", "rejected", "checked", "bytes")  # fmt: skip
    sys.stdout.write(f"{title}\n{_table(rows, header)}\n")
    for r in reports:
        for t in r.targets:
            for kind, keys in t.summary()["samples"].items():
                sys.stdout.write(f"  {t.target} {kind}: {keys}\n")


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Report drift between Postgres and BigQuery; with --fix, repair it and check again."""
    names = args.sources or list(sources.SOURCES)
    with local_stack(settings) as live:
        conn = connect(live.postgres)
        migrate.apply(conn)
        conn.close()
        reader = BigQueryReader(make_client(live.bigquery), live.bigquery)
        reports = _verify_all(names, live, reader, args.sample)
        clean = all(r.clean for r in reports)
        _print_reports(reports, args.json, "before --fix" if args.fix else "verify")
        if clean or not args.fix:
            return 0 if clean else 1
        for report in reports:
            if not report.clean:
                verify.fix(
                    sources.get(report.source),
                    report,
                    live,
                    reader,
                    lambda: connect(live.postgres),
                    PostgresDeadLetterSink,
                )
        reports = _verify_all(names, live, reader, args.sample)
        _print_reports(reports, args.json, "after --fix")
        return 0 if all(r.clean for r in reports) else 1


def resync_trigger(args: argparse.Namespace) -> trigger.Trigger:
    """The trigger a `resync` command line asks for."""
    mode: trigger.Mode = "incremental"
    if args.verify:
        mode = "verify"
    elif args.full_refresh:
        mode = "full_refresh"
    return trigger.Trigger(
        sources=tuple(args.sources),
        mode=mode,
        since=args.since,
        until=args.until,
        ids=tuple(args.ids or ()),
        fix=args.fix,
        sample=args.sample,
    )


def cmd_resync(args: argparse.Namespace, settings: Settings) -> int:
    """Publish a trigger to the configured topic (cloud, or the emulator if one is set)."""
    from google.cloud.pubsub_v1 import PublisherClient

    wanted = resync_trigger(args)
    body = wanted.to_json()
    try:
        trigger.parse(body, list(sources.SOURCES))  # the same rules the functions apply
        topic = settings.cloud.topic_path(settings.cloud.trigger_topic)
    except (trigger.BadMessage, ConfigError) as exc:
        log.error("not published: %s", exc)
        return 2
    message = json.dumps(body)
    attributes = trigger.attributes_for(wanted.sources)
    future = PublisherClient().publish(topic, message.encode(), **attributes)
    message_id = future.result(timeout=60)
    emulator = os.environ.get("PUBSUB_EMULATOR_HOST")
    sys.stdout.write(
        f"published {message_id} to {topic}: {message}\n"
        f"equivalent: {gcloud_publish(topic, message, attributes, emulator)}\n"
    )
    return 0


def gcloud_publish(
    topic: str, message: str, attributes: dict[str, str], emulator: str | None
) -> str:
    """The gcloud command that publishes the same message.

    gcloud ignores PUBSUB_EMULATOR_HOST (only the client libraries read it): it reaches an
    emulator through the `api_endpoint_overrides/pubsub` property, with credentials off.
    """
    prefix = (
        f"CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB=http://{emulator}/"
        " CLOUDSDK_AUTH_DISABLE_CREDENTIALS=true "
        if emulator
        else ""
    )
    pairs = ",".join(f"{k}={v}" for k, v in attributes.items())
    return (
        f"{prefix}gcloud pubsub topics publish {topic.rsplit('/', 1)[-1]}"
        f" --project {topic.split('/')[1]} --message {shlex.quote(message)}"
        + (f" --attribute {shlex.quote(pairs)}" if pairs else "")
    )


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Print each source's watermark, last run, counts and last error."""
    with local_stack(settings, bigquery=False) as live:
        conn = connect(live.postgres)
        migrate.apply(conn)
        items = state.status(conn)
        conn.close()
    if args.json:
        sys.stdout.write(json.dumps(items, default=str, indent=2) + "\n")
        return 0
    rows = [
        (
            i["source"],
            i["last_status"],
            i["watermark"],
            i["last_run_at"],
            i["rows_read"],
            i["rows_upserted"],
            i["rows_unchanged"],
            i["rows_deleted"],
            i["rows_failed"],
            i["waiting_derivations"],
            cost.human(i["bytes_billed_24h"]),
            f"${i['projected_month_usd']:.2f}",
            (i["error_details"] or {}).get("message", ""),
        )
        for i in items
    ]
    header = ("source", "status", "watermark", "last run", "read", "upserted", "unchanged",
              "deleted", "failed", "waiting", "billed 24h", "month at that",
              "last error")  # fmt: skip
    sys.stdout.write(_table(rows, header) + "\n")
    return 0


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    """The preflight: print one line per finding; exit 1 on any error."""
    with local_stack(settings) as stack:
        stack = secret_manager.resolve(stack)  # the deployed password, where it names one
        reader = BigQueryReader(make_client(stack.bigquery), stack.bigquery)
        findings = check.run_checks(stack, reader)
        if args.live and not check.failed(findings):
            findings += live_check.run(stack, reader, args.timeout, args.sample)
    if args.json:
        sys.stdout.write(json.dumps(check.as_json(findings), default=str, indent=2) + "\n")
    else:
        width = max(len(f.check) for f in findings)
        for f in findings:
            sys.stdout.write(f"{f.level.upper():8} {f.check:{width}}  {f.message}\n")
    return 1 if check.failed(findings) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = parser().parse_args(argv)
    gs_log.configure(args.log_format or ("text" if sys.stderr.isatty() else "json"))
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return 2
    handler = {"run": cmd_run, "verify": cmd_verify, "resync": cmd_resync,
               "status": cmd_status, "check": cmd_check}[args.command]  # fmt: skip
    return handler(args, settings)


if __name__ == "__main__":
    sys.exit(main())
