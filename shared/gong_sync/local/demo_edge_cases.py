"""Rows at fixed ids for the cases an acceptance run found, added to every demo dataset.

NULL deletion flags on every table and join (NULL is alive), children of a call BigQuery
does not have (orphans), live rows whose parent id is NULL, links to opportunities deleted
in Salesforce, and HTML bodies beyond a handful of common tags.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

from .fivetran_schemas import FIVETRAN_DELETED, FIVETRAN_SYNCED, TABLES

# Gong ids from 9_100_000_000_000_000_400 up: the generator's random ids never start with 9,
# and its own fixed ids stay below 400.
_BASE_GONG = 9_100_000_000_000_000_400


def gong_id(n: int) -> str:
    """A fixed Gong id of this module's range."""
    return str(_BASE_GONG + n)


NULL_FLAG_CALL: Final = gong_id(10)
NULL_FLAG_USER: Final = gong_id(1)
ORPHAN_CALL: Final = gong_id(20)  # its children are in BigQuery, the call itself is not
NULL_PARENT_SPEAKER: Final = gong_id(30)
NULL_FLAG_ACCOUNT: Final = "0010000000FLAGS01A"
NULL_FLAG_SF_USER: Final = "0050000000FLAGS01A"
NULL_FLAG_OPPORTUNITY: Final = "0060000000FLAGS01A"
NEVER_LANDED_OPPORTUNITY: Final = "0060000000NEVER01A"  # linked in Gong, unknown to Salesforce
NULL_FLAG_EMAIL: Final = f"{0xF1A6 << 112 | 1:032x}"

# Visible text that a fixed list of tags missed, and text that no reader sees.
HTML_CASES: Final[dict[str, str]] = {
    f"{0xF1A6 << 112 | 2:032x}": "<strong>Bold</strong> move &amp; <em>more</em> soon",
    f"{0xF1A6 << 112 | 3:032x}": (
        "<table><tr><td>Seats</td><td>40</td></tr><tr><td>Term</td><td>2&nbsp;yrs</td></tr></table>"
    ),
    f"{0xF1A6 << 112 | 4:032x}": (
        "<style>td {color: red}</style><script>var secret = 1;</script><div>Visible</div>"
    ),
    f"{0xF1A6 << 112 | 5:032x}": (
        "<!DOCTYPE html><html><head><title>Hidden title</title><meta charset='utf-8'></head>"
        "<body><section><h2>Agenda</h2><!-- a note --><p>Pricing &amp; terms</p></section>"
        "</body></html>"
    ),
}


class _Rows:
    """Appends rows in schema order, with the Fivetran columns, at distinct sync times."""

    def __init__(self, tables: dict[str, list[dict[str, Any]]], start: datetime) -> None:
        self.tables = tables
        self.clock = start

    def add(self, table: str, deleted: bool | None = False, **values: Any) -> None:
        self.clock += timedelta(seconds=1, microseconds=7)
        _, schema = TABLES[table]
        row = {f.name: values.pop(f.name, None) for f in schema}
        if values:
            raise ValueError(f"{table} has no column(s) {sorted(values)}")
        row[FIVETRAN_SYNCED] = self.clock
        row[FIVETRAN_DELETED] = deleted
        self.tables[table].append(row)


def add(tables: dict[str, list[dict[str, Any]]], start: datetime, deleted_opps: list[str]) -> None:
    """Append the edge-case rows; deleted_opps are opportunities deleted in Salesforce."""
    rows = _Rows(tables, start)
    _calls(rows, deleted_opps)
    _salesforce(rows)
    _emails(rows)


def _sentence(index: int) -> list[dict[str, Any]]:
    return [{"start": 1000 * index, "end": 1000 * index + 800, "text": f"Line {index}."}]


def _calls(rows: _Rows, deleted_opps: list[str]) -> None:
    call = NULL_FLAG_CALL
    rows.add("users", None, id=NULL_FLAG_USER, email_address="nell.null@acme.example",
             first_name="Nell", last_name="Null", title="Account Executive",
             active=True)  # fmt: skip
    rows.add("call", None, id=call, workspace_id="5562739194953732039", title="Flags unset",
             scheduled=rows.clock - timedelta(days=2), started=rows.clock - timedelta(days=2),
             duration=900, direction="Outbound", scope="External", media="Video",
             primary_user_id=NULL_FLAG_USER, custom_data={})  # fmt: skip
    rows.add("call_speaker", None, id=gong_id(11), call_id=call, user_id=NULL_FLAG_USER,
             talk_time=30.0)  # fmt: skip
    rows.add("call_speaker", False, id=gong_id(12), call_id=call, talk_time=90.0)
    rows.add("call_participant", None, id=gong_id(13), call_id=call, speaker_id=gong_id(12),
             name="Pat Null", email_address="Pat@Customer.example", affiliation="External",
             title="CFO")  # fmt: skip
    rows.add(
        "transcript", None, call_id=call, index=0, speaker_id=gong_id(11), sentence=_sentence(0)
    )
    rows.add("transcript", False, call_id=call, index=1, speaker_id=gong_id(12),
             sentence=_sentence(1))  # fmt: skip
    for opportunity in (NULL_FLAG_OPPORTUNITY, NEVER_LANDED_OPPORTUNITY, *deleted_opps):
        rows.add("call_context_integration", None, call_id=call, object_type="Opportunity",
                 object_id=opportunity, name="Deal", value="Negotiation")  # fmt: skip
    rows.add("call_context_integration", None, call_id=call, object_type="Account",
             object_id=NULL_FLAG_ACCOUNT, name="Null Flag Co", value="Customer")  # fmt: skip
    # Children of a call that never landed: synced (a child may come first), then orphans.
    orphan = ORPHAN_CALL
    rows.add("call_speaker", False, id=gong_id(21), call_id=orphan, talk_time=12.5)
    rows.add("transcript", None, call_id=orphan, index=0, speaker_id=gong_id(21),
             sentence=_sentence(0))  # fmt: skip
    rows.add("call_context_integration", False, call_id=orphan, object_type="Opportunity",
             object_id=NULL_FLAG_OPPORTUNITY, name="Deal", value="Open")  # fmt: skip
    # Live rows with no parent id: each is a dead letter, never dropped in silence.
    rows.add("call_speaker", False, id=NULL_PARENT_SPEAKER, call_id=None, talk_time=5.0)
    rows.add("call_speaker", True, id=gong_id(31), call_id=None, talk_time=5.0)  # deleted: nothing
    rows.add("call_context_integration", None, call_id=None, object_type="Opportunity",
             object_id=NULL_FLAG_OPPORTUNITY, name="Deal", value="Open")  # fmt: skip
    rows.add("call_context_integration", False, call_id=None, object_type="Account",
             object_id=NULL_FLAG_ACCOUNT, name="Null Flag Co", value="Customer")  # fmt: skip


def _salesforce(rows: _Rows) -> None:
    rows.add("account", None, id=NULL_FLAG_ACCOUNT, name="Null Flag Co", is_deleted=None)
    rows.add("user", None, id=NULL_FLAG_SF_USER, name="Nell Null", email="Nell.Null@acme.example")
    rows.add("opportunity", None, id=NULL_FLAG_OPPORTUNITY, name="Null flags renewal",
             account_id=NULL_FLAG_ACCOUNT, owner_id=NULL_FLAG_SF_USER, stage_name="Negotiation",
             is_deleted=None, system_modstamp=rows.clock)  # fmt: skip


def _emails(rows: _Rows) -> None:
    email = NULL_FLAG_EMAIL
    rows.add("email", None, id=email, subject="Flags unset", sent_at=rows.clock,
             body="Plain body.", thread_id="f1a6", direction="Outbound", headers={})  # fmt: skip
    rows.add("email_sender", None, email_id=email, email_address="Nell.Null@acme.example")
    rows.add("email_recipient", None, email_id=email, email_address="to@customer.example",
             type="to")  # fmt: skip
    rows.add("email_recipient", False, email_id=email, email_address="cc@customer.example",
             type="cc")  # fmt: skip
    rows.add("email_recipient", True, email_id=email, email_address="gone@customer.example",
             type="bcc")  # fmt: skip
    for email_id, body in HTML_CASES.items():
        rows.add("email", False, id=email_id, subject="Markup", sent_at=rows.clock, body=body,
                 thread_id="f1a6", direction="Inbound", headers={})  # fmt: skip
        rows.add("email_sender", False, email_id=email_id, email_address="ana@customer.example")
