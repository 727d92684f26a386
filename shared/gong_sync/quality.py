"""The data-quality rule of a run: too large a share of its rows dead-lettered degrades it.

A degraded run still committed every valid row (nothing is lost); it ends with status
`degraded` and one ERROR line naming the top reasons, which the errors metric alerts on.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from gong_sync.runs import RunStats
from gong_sync.settings import QualitySettings

TOP_REASONS = 3
# A reason quotes the bad value (`title: expected a date, got 'x'`); the rule is the rest.
_QUOTED = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|(?<!\w)-?\d\S*""")


def rule_of(reason: str) -> str:
    """A dead letter's reason without the values it quotes: the rule the rows broke."""
    return _QUOTED.sub("…", reason)[:200]


def count_rules(reasons: Iterable[str]) -> Counter[str]:
    """How many dead letters broke each rule."""
    return Counter(rule_of(r) for r in reasons)


def verdict(stats: RunStats, quality: QualitySettings) -> str | None:
    """Why the run is degraded, or None when its share of dead letters is acceptable."""
    read = max(stats.rows_read, stats.rows_failed)
    limit = quality.max_share_for(stats.source)
    if read < quality.min_rows or stats.rows_failed <= limit * read:
        return None
    top = Counter(stats.rejected_rules).most_common(TOP_REASONS)
    reasons = "; ".join(f"{rule} ({n})" for rule, n in top)
    return (
        f"{stats.rows_failed} of {read} rows dead-lettered ({stats.rows_failed / read:.0%},"
        f" over the {limit:.0%} allowed): {reasons}"
    )
