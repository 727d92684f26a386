"""The `calls` source: Gong calls with their speakers and transcripts."""

from __future__ import annotations

from datetime import timedelta

from gong_sync.declarations import (
    Column,
    Source,
    Stream,
    Target,
    Touch,
    deleted,
    live,
)
from gong_sync.monologue import unpack_monologue, unpack_monologue_arrow

# A child row whose call is soft-deleted counts as deleted too, so a late transcript of a
# deleted call never resurrects it. LEFT JOIN: a call not landed yet hides nothing.
_CALL_FLAG = "c._fivetran_deleted"


CALLS = Target(
    table="calls",
    key=("gong_call_id",),
    parent="gong_call_id",
    columns=(
        Column("gong_call_id", "text", "c.id"),
        Column("title", "text", "c.title"),
        Column("scheduled_at", "timestamptz", "c.scheduled"),
        Column("started_at", "timestamptz", "c.started"),
        Column("duration_seconds", "bigint", "c.duration"),
        Column("direction", "text", "c.direction"),
        Column("scope", "text", "c.scope"),
        Column("media", "text", "c.media"),
        Column("purpose", "text", "c.purpose"),
        Column("system", "text", "c.system"),
        Column("language", "text", "c.language"),
        Column("url", "text", "c.url"),
        Column("primary_user_id", "text", "c.primary_user_id"),
        Column("source_synced_at", "timestamptz", "c._fivetran_synced", compare=False),
    ),
    from_sql="{call} AS c",
    deleted_sql=deleted("c._fivetran_deleted"),
    metadata_alias="c",
    children=("call_speakers", "transcripts", "call_opportunities"),
)

# One live participant per speaker of a call. Two would repeat the speaker's row, counting
# its talk time twice in the call's total; the first by what they carry (NULLs last) wins, so
# the choice never depends on the order BigQuery reads them in.
_PARTICIPANT = (
    "SELECT call_id, speaker_id, user_id, name, email_address, title, affiliation"
    f" FROM {{call_participant}} WHERE {live('_fivetran_deleted')}"
    " QUALIFY ROW_NUMBER() OVER (PARTITION BY call_id, speaker_id ORDER BY user_id NULLS LAST,"
    " name NULLS LAST, email_address NULLS LAST, title NULLS LAST, affiliation NULLS LAST) = 1"
)

# The speakers of a call are one set: talk-time shares depend on every speaker of the call.
CALL_SPEAKERS = Target(
    table="call_speakers",
    key=("gong_call_id", "speaker_id"),
    parent="gong_call_id",
    columns=(
        Column("gong_call_id", "text", "s.call_id"),
        Column("speaker_id", "text", "s.id"),
        Column("user_id", "text", "COALESCE(s.user_id, p.user_id)"),
        Column(
            "name",
            "text",
            "COALESCE(NULLIF(p.name, ''), NULLIF(TRIM(CONCAT(IFNULL(u.first_name, ''), ' ',"
            " IFNULL(u.last_name, ''))), ''))",
        ),
        Column("email", "text", "LOWER(COALESCE(p.email_address, u.email_address))"),
        Column("title", "text", "COALESCE(p.title, u.title)"),
        Column(
            "company_side",
            "text",
            "CASE LOWER(p.affiliation) WHEN 'internal' THEN 'internal'"
            " WHEN 'external' THEN 'external'"
            " ELSE IF(COALESCE(s.user_id, p.user_id) IS NOT NULL, 'internal', 'unknown') END",
        ),
        Column("talk_time_seconds", "double", "s.talk_time"),
        Column(
            "talk_time_percentage",
            "numeric",
            "ROUND(100 * SAFE_DIVIDE(s.talk_time, SUM(s.talk_time) OVER (PARTITION BY s.call_id)),"
            " 2)",
        ),
    ),
    from_sql=(
        "{call_speaker} AS s"
        f" LEFT JOIN ({_PARTICIPANT}) AS p ON p.call_id = s.call_id AND p.speaker_id = s.id"
        " LEFT JOIN {users} AS u"
        f"   ON u.id = COALESCE(s.user_id, p.user_id) AND {live('u._fivetran_deleted')}"
        " LEFT JOIN {call} AS c ON c.id = s.call_id"
    ),
    deleted_sql=deleted("s._fivetran_deleted", _CALL_FLAG),
)

TRANSCRIPTS = Target(
    table="transcripts",
    key=("gong_call_id", "sequence_number"),
    parent="gong_call_id",
    columns=(
        Column("gong_call_id", "text", "t.call_id"),
        Column("sequence_number", "integer", "t.index"),
        Column("speaker_id", "text", "t.speaker_id"),
        Column("topic", "text", "t.topic"),
        Column("timestamp_seconds", "numeric"),
        Column("end_seconds", "numeric"),
        Column("text", "text"),
        Column("sentences", "jsonb"),
        Column("source_synced_at", "timestamptz", "t._fivetran_synced", compare=False),
    ),
    from_sql="{transcript} AS t LEFT JOIN {call} AS c ON c.id = t.call_id",
    deleted_sql=deleted("t._fivetran_deleted", _CALL_FLAG),
    transform=unpack_monologue,
    arrow_transform=unpack_monologue_arrow,
    inputs=(Column("sentence", "jsonb", "t.sentence"),),
)

_NOT_AN_OPPORTUNITY = "COALESCE(x.object_type, '') != 'Opportunity'"


def _call_opportunities(with_salesforce: bool) -> Target:
    """Gong's CRM context of a call: its Opportunity objects are the call's opportunities.

    With Salesforce's `opportunity` table, a link to an opportunity deleted there goes, as
    the links of a deleted call go with the call; an id Salesforce never had is kept (the
    opportunity may still land).
    """
    from_sql = "{call_context_integration} AS x LEFT JOIN {call} AS c ON c.id = x.call_id"
    flags = ["x._fivetran_deleted", _CALL_FLAG]
    if with_salesforce:
        from_sql += " LEFT JOIN {opportunity} AS o ON o.id = x.object_id"
        flags += ["o.is_deleted", "o._fivetran_deleted"]
    return Target(
        table="call_opportunities",
        key=("gong_call_id", "gong_opportunity_id"),
        parent="gong_call_id",
        columns=(
            Column("gong_call_id", "text", "x.call_id"),
            Column("gong_opportunity_id", "text", "x.object_id"),
        ),
        from_sql=from_sql,
        deleted_sql=f"({deleted(*flags)} OR {_NOT_AN_OPPORTUNITY})",
    )


_STREAMS = (
    Stream(table="call", alias="c", key=("id",), drives="calls"),
    Stream(
        table="call_speaker",
        alias="s",
        key=("id",),
        touches=(Touch("call_speakers", column="call_id", was=("id", "speaker_id")),),
    ),
    Stream(
        table="call_participant",
        alias="p",
        key=("id",),
        # The speaker it fed, in the call it was in: found by the speaker id it names.
        touches=(Touch("call_speakers", column="call_id", was=("speaker_id", "speaker_id")),),
    ),
    # A user's name or title feeds every speaker row derived with its id (the user id the
    # speaker or its participant names): found in Postgres, where BigQuery would bill both
    # tables' user and call ids in full (some 290 MiB at a million calls) to find them. Those
    # calls span all of time, so deriving them reads both speaker tables from the oldest on
    # (some 970 MiB at a million calls): a day's user changes share one such read.
    Stream(
        table="users",
        alias="u",
        key=("id",),
        touches=(Touch("call_speakers", was=("id", "user_id"), every=timedelta(days=1)),),
    ),
    Stream(table="transcript", alias="t", key=("call_id", "index"), drives="transcripts"),
    Stream(
        table="call_context_integration",
        alias="x",
        key=("call_id", "object_type", "object_id"),
        touches=(Touch("call_opportunities", column="call_id"),),
    ),
)

# An opportunity deleted (or restored) in Salesforce re-derives the links of its calls.
_OPPORTUNITY_STREAM = Stream(
    table="opportunity",
    alias="o",
    key=("id",),
    touches=(
        Touch(
            "call_opportunities",
            lookup_sql=(
                "SELECT call_id AS k FROM {call_context_integration}"
                " WHERE object_id IN UNNEST(@ids)"
            ),
        ),
    ),
)

_GONG_DATASETS = {
    "call": "gong",
    "call_speaker": "gong",
    "call_participant": "gong",
    "users": "gong",
    "transcript": "gong",
    "call_context_integration": "gong",
}

# Without a Salesforce dataset, every Opportunity object of a call is linked.
GONG_ONLY = Source(
    name="calls",
    streams=_STREAMS,
    targets=(CALLS, CALL_SPEAKERS, TRANSCRIPTS, _call_opportunities(with_salesforce=False)),
    datasets=_GONG_DATASETS,
)

SOURCE = Source(
    name="calls",
    streams=(*_STREAMS, _OPPORTUNITY_STREAM),
    targets=(CALLS, CALL_SPEAKERS, TRANSCRIPTS, _call_opportunities(with_salesforce=True)),
    datasets={**_GONG_DATASETS, "opportunity": "salesforce"},
    fallback=GONG_ONLY,
    fallback_for=("opportunity",),  # no Salesforce opportunities: Gong's record
)
