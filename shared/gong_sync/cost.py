"""What BigQuery on-demand queries cost: the price, a month from a day, bytes for people."""

from __future__ import annotations

# On-demand compute, per TiB billed (BigQuery pricing, "On-demand compute pricing", US and EU
# multi-regions); the first TiB of a month is free and is left out, so figures are upper bounds.
USD_PER_TIB = 6.25
TIB = 2**40
# On-demand bills each table a query references at least 10 MB ("On-demand compute pricing").
MIN_BILLED_PER_TABLE = 10 * 2**20
DAYS_PER_MONTH = 30


def usd(bytes_billed: int | float) -> float:
    """Dollars for these bytes at the on-demand price."""
    return bytes_billed / TIB * USD_PER_TIB


def monthly_usd(bytes_per_day: int | float) -> float:
    """A month of the same day, in dollars."""
    return usd(bytes_per_day * DAYS_PER_MONTH)


def human(n: int | float) -> str:
    """Bytes in binary units, as the BigQuery console shows them."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
