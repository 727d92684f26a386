"""Ratios, targets, the printed table and RESULTS.md, from one run's raw results."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from typing import Any

from bench import page_sweep
from gong_sync import sources

# The targets, checked against every run and printed next to the figures.
TARGET_LOAD_VS_CEILING = 0.60
TARGET_SPEEDUP_VS_DLT = 3.0  # both reading BigQuery; the goal beyond issue 17 is 5x
TARGET_READ_SPEEDUP = 5.0  # Storage Read over REST pages, on the emulator
TARGET_NO_CHANGE_SECONDS = 2.0
TARGET_RSS_MB = 300.0
TARGET_RSS_GROWTH = 1.20


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    memory = ""
    try:
        with open("/proc/meminfo") as info:
            kib = int(info.readline().split()[1])  # "MemTotal: 24684084 kB"
            memory = f"{kib / 2**20:.0f} GiB"
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "commit": commit or "unknown",
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory": memory,
        "python": platform.python_version(),
    }


def _rate(rows: float, seconds: float) -> float:
    return round(rows / seconds) if seconds > 0 else 0.0


def _load_phase(run: dict[str, Any]) -> float:
    """Seconds mapping or writing was under way (pages are written while the next maps).

    A run logged before pages were written behind has only the two phases, which did not
    overlap then.
    """
    if "load_phase_seconds" in run:
        return float(run["load_phase_seconds"])
    return float(run["transform_seconds"] + run["load_seconds"])


def _per_source(r: dict[str, Any]) -> dict[str, Any]:
    """Each source's phase rates and its load against the bare-COPY ceiling."""
    out: dict[str, Any] = {}
    for name, source in sources.SOURCES.items():
        run = r["backfill"]["sources"][name]
        tables = [t.table for t in source.targets]
        stored = sum(r["rows"][t] for t in tables)
        written = run["rows_upserted"] + run["rows_unchanged"]
        ceiling_s = sum(r["ceiling"][t]["seconds"] for t in tables)
        load_s = _load_phase(run)
        out[name] = {
            "rows_read": run["rows_read"],
            "rows_stored": stored,
            "rows_written": written,
            "seconds": run["duration_seconds"],
            "read_rows_per_s": _rate(run["rows_read"], run["read_seconds"]),
            "transform_rows_per_s": _rate(written, run["transform_seconds"]),
            "load_rows_per_s": _rate(written, run["load_seconds"]),
            "ceiling_rows_per_s": _rate(stored, ceiling_s),
            # Same final rows: bare COPY's time over ours for mapping and writing them.
            "load_vs_ceiling": round(ceiling_s / load_s, 3) if load_s else None,
            "no_change_seconds": r["no_change"]["sources"][name]["duration_seconds"],
        }
    return out


def summarise(r: dict[str, Any]) -> dict[str, Any]:
    """The derived figures: phase rates, ratios and which targets were met."""
    out: dict[str, Any] = {"sources": _per_source(r)}
    total_ceiling = sum(v["seconds"] for v in r["ceiling"].values())
    total_load = sum(_load_phase(run) for run in r["backfill"]["sources"].values())
    out["load_vs_ceiling"] = round(total_ceiling / total_load, 3)
    out["read_share"] = round(
        sum(run["read_seconds"] for run in r["backfill"]["sources"].values())
        / sum(run["duration_seconds"] for run in r["backfill"]["sources"].values()),
        3,
    )
    if "dlt" in r:
        out["speedup_vs_dlt"] = round(r["dlt"]["seconds"] / r["backfill"]["wall_seconds"], 2)
        out["load_speedup_vs_dlt"] = round(r["dlt"]["seconds"] / total_load, 2)
    if "dlt_bigquery" in r:
        out["speedup_vs_dlt_reading"] = round(
            r["dlt_bigquery"]["seconds"] / r["backfill"]["wall_seconds"], 2
        )
    reads = [x["storage_speedup"] for x in r.get("read_paths", [])]
    rss = [x["peak_rss_mb"] for x in r["rss"]]
    out["rss_growth"] = round(rss[-1] / rss[0], 3) if len(rss) > 1 else None
    out["targets"] = {
        "load >= 60% of bare COPY": out["load_vs_ceiling"] >= TARGET_LOAD_VS_CEILING,
        "read >= 5x REST (call, transcript)": bool(reads) and min(reads) >= TARGET_READ_SPEEDUP,
        "end to end >= 3x dlt, both reading BigQuery": out.get("speedup_vs_dlt_reading", 0)
        >= TARGET_SPEEDUP_VS_DLT,
        "re-import writes 0 tuples": r["reimport"]["tuples_written"] == 0,
        "no-change run < 2 s per source": all(
            v["no_change_seconds"] < TARGET_NO_CHANGE_SECONDS for v in out["sources"].values()
        ),
        "peak RSS <= 300 MB": all(v <= TARGET_RSS_MB for v in rss),
        "peak RSS within 20% across scales": (out["rss_growth"] or 0) <= TARGET_RSS_GROWTH,
    }
    return out


def _grid(rows: Sequence[Sequence[Any]]) -> str:
    text = [[f"{v:,}" if isinstance(v, int) else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in text) for i in range(len(text[0]))]
    return "\n".join(
        "  ".join(
            v.ljust(w) if i == 0 else v.rjust(w)
            for i, (v, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in text
    )


def _rows(r: dict[str, Any]) -> list[list[Any]]:
    s = r["summary"]
    rows: list[list[Any]] = [
        [
            "source",
            "read",
            "stored",
            "read r/s",
            "transform r/s",
            "load r/s",
            "COPY r/s",
            "load/COPY",
            "backfill s",
            "no-change s",
        ],
    ]
    for name, v in s["sources"].items():
        rows.append(
            [
                name,
                v["rows_read"],
                v["rows_stored"],
                int(v["read_rows_per_s"]),
                int(v["transform_rows_per_s"]),
                int(v["load_rows_per_s"]),
                int(v["ceiling_rows_per_s"]),
                v["load_vs_ceiling"],
                v["seconds"],
                v["no_change_seconds"],
            ]
        )
    return rows


def _lines(r: dict[str, Any]) -> list[str]:
    s = r["summary"]
    scale = r["scale"]
    lines = [
        f"scale: {scale['calls']:,} calls, {scale['transcripts']:,} transcript rows;"
        f" seeded {sum(r['seed']['rows'].values()):,} BigQuery rows in {r['seed']['seconds']} s",
        f"backfill (b): {r['backfill']['wall_seconds']} s wall for all sources,"
        f" {s['read_share']:.0%} of it reading BigQuery;"
        f" peak RSS {r['backfill']['peak_rss_mb']} MB",
        f"load phase vs bare COPY (a): {s['load_vs_ceiling']:.2f}",
        f"no-change run (c): {r['no_change']['wall_seconds']} s wall",
        f"re-import run (d): {r['reimport']['wall_seconds']} s wall,"
        f" {r['reimport']['tuples_written']} tuples written",
    ]
    for x in r.get("read_paths", []):
        lines.append(
            f"reading {x['table']} ({x['rows']:,} rows): REST pages {x['rest_rows_per_s']:,} r/s,"
            f" Storage Read API {x['storage_rows_per_s']:,} r/s ({x['storage_speedup']}x)"
        )
    if "dlt" in r:
        lines.append(
            f"dlt {r['dlt'].get('dlt_version', '?')} merge (e): {r['dlt']['seconds']} s;"
            f" dlt's time over ours: {s['speedup_vs_dlt']}x end to end (ours includes reading"
            f" BigQuery, dlt's does not), {s['load_speedup_vs_dlt']}x against our load phase"
        )
    if "dlt_bigquery" in r:
        lines.append(
            f"dlt reading BigQuery (e'): {r['dlt_bigquery']['seconds']} s to read every target's"
            f" query over the Storage Read API and merge it; dlt's time over ours:"
            f" {s['speedup_vs_dlt_reading']}x end to end, both reading BigQuery"
        )
    for x in r["rss"]:
        lines.append(
            f"peak RSS (f) of a calls backfill at {x['scale']['transcripts']:,} transcript rows:"
            f" {x['peak_rss_mb']} MB"
        )
    if s["rss_growth"] is not None:
        lines.append(f"peak RSS growth across the two scales: {s['rss_growth']:.2f}x")
    lines += [f"target {'met   ' if ok else 'MISSED'}  {name}" for name, ok in s["targets"].items()]
    return lines


def table(r: dict[str, Any]) -> str:
    """The printed report."""
    sweep = page_sweep.markdown(r.get("page_sizes", []))
    return _grid(_rows(r)) + "\n\n" + "\n".join([*_lines(r), "", *sweep])


def markdown(r: dict[str, Any]) -> str:
    """bench/RESULTS.md: the latest figures with the date and the machine."""
    rows = _rows(r)
    m = r["machine"]
    head = "| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]) + "\n"
    body = "".join(
        "| " + " | ".join(f"{v:,}" if isinstance(v, int) else str(v) for v in row) + " |\n"
        for row in rows[1:]
    )
    sweep = page_sweep.markdown(r.get("page_sizes", []))
    sweep_text = (
        "\n## Page size\n\nA calls backfill at each page size (`GONG_SYNC_PAGE_SIZE`), same"
        " data, each query serving the same million rows; peak RSS is the CLI process's.\n\n"
        + "\n".join(sweep)
        + "\n"
        if sweep
        else ""
    )
    return (
        "# Benchmark results\n\n"
        f"Measured {r['started_at']} at commit {m.get('commit', '?')} on {m['platform']},"
        f" {m['cpus']} CPUs, {m['memory']}, Python {m['python']}, with `make bench`"
        " (`python -m bench`). The BigQuery side is the"
        " local emulator; Postgres is the embedded server. Compare ratios, not absolute figures:"
        " this machine is shared and noisy.\n\n"
        + head
        + body
        + "\n"
        + "".join(f"- {line}\n" for line in _lines(r))
        + sweep_text
    )


def failures(r: dict[str, Any]) -> list[str]:
    """Hard checks that make the run fail (targets are reported, not enforced)."""
    out: list[str] = []
    if r["reimport"]["tuples_written"] != 0:
        out.append(f"the re-import run wrote {r['reimport']['tuples_written']} tuples")
    for name, run in r["no_change"]["sources"].items():
        if run["rows_upserted"] or run["rows_deleted"]:
            out.append(f"the no-change run of {name} wrote rows")
    for peer in ("dlt", "dlt_bigquery"):
        for table, count in r["rows"].items() if peer in r else ():
            if r[peer]["rows"].get(table) != count:
                out.append(
                    f"{peer} loaded {r[peer]['rows'].get(table)} rows of {table}, ours {count}"
                )
    return out
