"""The page-size sweep: one calls backfill per page size, same data, same rows per query.

A page is one transaction and one COPY; its size trades round trips against memory. Each
size gets a fresh database, and `GONG_SYNC_PAGES_PER_QUERY` is set so every run's query
serves the same million rows: only the page size differs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bench import sync_process
from gong_sync.settings import PostgresSettings

ROWS_PER_QUERY = 1_000_000
SIZES = (500, 1_000, 5_000, 20_000)


def sweep(
    database: Callable[[str], PostgresSettings],
    env_for: Callable[[PostgresSettings], dict[str, str]],
    sizes: Sequence[int] = SIZES,
) -> list[dict[str, Any]]:
    """Backfill calls at each page size into its own database; throughput and peak RSS."""
    out = []
    for size in sizes:
        env = env_for(database(f"pages{size}"))
        env["GONG_SYNC_PAGE_SIZE"] = str(size)
        env["GONG_SYNC_PAGES_PER_QUERY"] = str(max(1, ROWS_PER_QUERY // size))
        result = sync_process.run(env, "--source", "calls")
        stats = result.runs["calls"]
        out.append({
            "page_size": size,
            "rows": stats["rows_read"],
            "wall_seconds": round(result.wall_seconds, 2),
            "rows_per_second": round(stats["rows_read"] / result.wall_seconds),
            "read_seconds": stats.get("read_seconds"),
            "load_seconds": stats.get("load_seconds"),
            "peak_rss_mb": round(result.peak_rss_mb, 1),
        })  # fmt: skip
    return out


def markdown(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The sweep as a Markdown table, throughput relative to the fastest size."""
    if not rows:
        return []
    best = max(r["rows_per_second"] for r in rows)
    lines = [
        "| page size | rows | wall s | rows/s | vs fastest | read s | load s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['page_size']:,} | {r['rows']:,} | {r['wall_seconds']} |"
            f" {r['rows_per_second']:,} | {r['rows_per_second'] / best:.2f} |"
            f" {r['read_seconds']} | {r['load_seconds']} | {r['peak_rss_mb']} |"
        )
    return lines
