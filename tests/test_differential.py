"""Differential: random small Fivetran states, synced, equal the reference model.

Hypothesis draws every table of every source from small pools of ids, so states hold NULL and
TRUE and FALSE flags on every table and join, cursor ties, orphans (children of a call that
never lands), NULL and blank keys and parent ids, links to deleted and unknown opportunities,
and late rows. Each state is synced at a random page size and compared with the reference
after the run, after visible changes and a second run, and after invisible changes (hard
deletes, flag flips that do not move the cursor, restores) and `verify --fix`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from gong_sync import sources
from gong_sync.local.fivetran_schemas import TABLES
from gong_sync.settings import PostgresSettings
from tests import reference
from tests.conftest import Env, make_env
from tests.factories import (
    at,
    call,
    contact,
    dml,
    email,
    insert,
    opportunity,
    speaker,
    transcript,
)
from tests.faults.matrix import CONTENT, expected

EXAMPLES = int(os.environ.get("GONG_SYNC_DIFFERENTIAL_EXAMPLES", "8"))
T0 = at(0)
TIES = [T0, T0, T0 + timedelta(microseconds=1), T0 + timedelta(seconds=2)]
# One row of every table lands at ANCHOR, so the second run starts reading (its watermark less
# the 1 h lookback) after every other first-state row: a parent reaches a target again only
# through the rows that changed, as in production, not because everything is read again.
ANCHOR = T0 + timedelta(minutes=90)
LATER = T0 + timedelta(hours=3)  # visible changes: newer than every watermark
LATE = T0 + timedelta(minutes=60)  # committed late: older than the watermark, in the lookback
FLAG = st.sampled_from([False, True, None])
SYNCED = st.sampled_from(TIES)
CALLS = ["c1", "c2", "c3"]
PARENTS = [*CALLS, "c9", None, ""]  # c9 never lands: its children are orphans

Row = dict[str, Any]
World = dict[str, list[Row]]


def _rows(
    make: Callable[..., Row], key: Callable[[Row], Any], max_size: int, **fields: Any
) -> st.SearchStrategy[list[Row]]:
    """Lists of rows built by make from drawn fields, unique on key."""
    return st.lists(st.builds(make, **fields), max_size=max_size, unique_by=key)


def _call(id: Any, flag: Any, synced: Any, title: str) -> Row:
    return call(id, synced, title=title, _fivetran_deleted=flag)


def _speaker(id: Any, call_id: Any, user_id: Any, talk: float, flag: Any, synced: Any) -> Row:
    return speaker(id, call_id, synced, user_id=user_id, talk_time=talk, _fivetran_deleted=flag)


def _participant(id: str, call_id: Any, speaker_id: Any, user_id: Any, name: Any, email: Any,
                 side: Any, flag: Any, synced: Any) -> Row:  # fmt: skip
    return {"id": id, "call_id": call_id, "user_id": user_id, "speaker_id": speaker_id,
            "name": name, "email_address": email, "affiliation": side, "title": "CFO",
            "phone_number": None, "_fivetran_synced": synced,
            "_fivetran_deleted": flag}  # fmt: skip


def _user(id: str, first: Any, title: Any, flag: Any, synced: Any) -> Row:
    return {"id": id, "email_address": f"{id.upper()}@Seller.example", "first_name": first,
            "last_name": "Lee", "title": title, "manager_id": None, "active": True,
            "_fivetran_synced": synced, "_fivetran_deleted": flag}  # fmt: skip


def _transcript(call_id: Any, index: Any, flag: Any, synced: Any) -> Row:
    return transcript(call_id, index, synced, _fivetran_deleted=flag)


def _context(call_id: Any, kind: str, object_id: Any, flag: Any, synced: Any) -> Row:
    return {"call_id": call_id, "object_type": kind, "object_id": object_id, "name": "Deal",
            "value": "Open", "_fivetran_synced": synced, "_fivetran_deleted": flag}  # fmt: skip


def _opportunity(id: str, account: Any, owner: Any, is_deleted: Any, flag: Any, synced: Any) -> Row:
    return opportunity(id, synced, account_id=account, owner_id=owner, is_deleted=is_deleted,
                       _fivetran_deleted=flag)  # fmt: skip


def _contact(id: Any, account: Any, owner: Any, address: Any, is_deleted: Any, flag: Any,
             synced: Any) -> Row:  # fmt: skip
    return contact(id, synced, account_id=account, owner_id=owner, email=address,
                   is_deleted=is_deleted, _fivetran_deleted=flag)  # fmt: skip


def _account(id: str, is_deleted: Any, flag: Any, synced: Any) -> Row:
    return {"id": id, "name": f"Account {id}", "is_deleted": is_deleted,
            "_fivetran_synced": synced, "_fivetran_deleted": flag}  # fmt: skip


def _sf_user(id: str, flag: Any, synced: Any) -> Row:
    return {"id": id, "name": f"Owner {id}", "email": f"{id.upper()}@Seller.example",
            "_fivetran_synced": synced, "_fivetran_deleted": flag}  # fmt: skip


def _email(id: Any, body: Any, opportunity_id: Any, flag: Any, synced: Any) -> Row:
    objects = [{"objectType": "Opportunity", "objectId": opportunity_id}]
    context = [{"system": "Salesforce", "objects": objects}] if opportunity_id else None
    return email(id, synced, body=body, context=context, _fivetran_deleted=flag)


def _address(email_id: Any, address: Any, kind: Any, flag: Any, synced: Any) -> Row:
    row = {"email_id": email_id, "email_address": address, "name": "N",
           "_fivetran_synced": synced, "_fivetran_deleted": flag}  # fmt: skip
    return {**row, "type": kind} if kind != "sender" else row


WORLD = st.fixed_dictionaries({
    "call": _rows(_call, lambda r: r["id"], 4, id=st.sampled_from([*CALLS, None, ""]),
                  flag=FLAG, synced=SYNCED, title=st.sampled_from(["A", "B"])),
    "call_speaker": _rows(_speaker, lambda r: r["id"], 5,
                          id=st.sampled_from(["s1", "s2", "s3", "s4", None, ""]),
                          call_id=st.sampled_from(PARENTS), user_id=st.sampled_from(["u1", None]),
                          talk=st.sampled_from([10.0, 30.0, 60.0]), flag=FLAG, synced=SYNCED),
    "call_participant": _rows(_participant, lambda r: r["id"], 3,
                              id=st.sampled_from(["p1", "p2", "p3"]),
                              call_id=st.sampled_from(PARENTS),
                              speaker_id=st.sampled_from(["s1", "s2", None]),
                              user_id=st.sampled_from(["u2", None]),
                              name=st.sampled_from(["Pat", "", None]),
                              email=st.sampled_from(["Pat@Customer.example", None]),
                              side=st.sampled_from(["External", "internal", "Other", None]),
                              flag=FLAG, synced=SYNCED),
    "users": _rows(_user, lambda r: r["id"], 2, id=st.sampled_from(["u1", "u2"]),
                   first=st.sampled_from(["Uma", None]), title=st.sampled_from(["AE", None]),
                   flag=FLAG, synced=SYNCED),
    "transcript": _rows(_transcript, lambda r: (r["call_id"], r["index"]), 5,
                        call_id=st.sampled_from(PARENTS), index=st.sampled_from([0, 1, None]),
                        flag=FLAG, synced=SYNCED),
    "call_context_integration": _rows(
        _context, lambda r: (r["call_id"], r["object_type"], r["object_id"]), 5,
        call_id=st.sampled_from(PARENTS), kind=st.sampled_from(["Opportunity", "Account"]),
        object_id=st.sampled_from(["o1", "o2", "o3", None, ""]), flag=FLAG, synced=SYNCED),
    "opportunity": _rows(_opportunity, lambda r: r["id"], 2, id=st.sampled_from(["o1", "o2"]),
                         account=st.sampled_from(["a1", "a2", None]),
                         owner=st.sampled_from(["v1", None]), is_deleted=FLAG, flag=FLAG,
                         synced=SYNCED),
    "contact": _rows(_contact, lambda r: r["id"], 3, id=st.sampled_from(["k1", "k2", None, ""]),
                     account=st.sampled_from(["a1", "a2", None]),
                     owner=st.sampled_from(["v1", None]),
                     address=st.sampled_from([" Pat@Buyer.Example", None]), is_deleted=FLAG,
                     flag=FLAG, synced=SYNCED),
    "account": _rows(_account, lambda r: r["id"], 2, id=st.sampled_from(["a1", "a2"]),
                     is_deleted=FLAG, flag=FLAG, synced=SYNCED),
    "user": _rows(_sf_user, lambda r: r["id"], 1, id=st.just("v1"), flag=FLAG, synced=SYNCED),
    "email": _rows(_email, lambda r: r["id"], 3, id=st.sampled_from(["e1", "e2", "e3", None]),
                   body=st.sampled_from(["Plain", "<p>Hi &amp; <b>bye</b></p>", None]),
                   opportunity_id=st.sampled_from(["o1", None]), flag=FLAG, synced=SYNCED),
    "email_sender": _rows(_address, lambda r: (r["email_id"], r["email_address"]), 3,
                          email_id=st.sampled_from(["e1", "e2", "e9", None]),
                          address=st.sampled_from(["A@x.example", " b@x.example", None]),
                          kind=st.just("sender"), flag=FLAG, synced=SYNCED),
    "email_recipient": _rows(_address,
                             lambda r: (r["email_id"], r["type"], r["email_address"]), 4,
                             email_id=st.sampled_from(["e1", "e2", "e9", None]),
                             address=st.sampled_from(["A@x.example", "C@x.example", None]),
                             kind=st.sampled_from(["to", "cc", "bcc", None]), flag=FLAG,
                             synced=SYNCED),
})  # fmt: skip
FLAG_COLUMNS = ("_fivetran_deleted", "is_deleted")

# The anchor of each table (ids outside the pools above): live, with its own parents.
_ANCHORS: World = {
    "call": [_call("cA", False, ANCHOR, "A")],
    "call_speaker": [_speaker("sA", "cA", None, 60.0, False, ANCHOR)],
    "call_participant": [_participant("pA", "cA", "sA", None, "Ann", None, "External", False,
                                      ANCHOR)],
    "users": [_user("uA", "Ann", "AE", False, ANCHOR)],
    "transcript": [_transcript("cA", 0, False, ANCHOR)],
    "call_context_integration": [_context("cA", "Account", "aA", False, ANCHOR)],
    "opportunity": [_opportunity("oA", None, None, False, False, ANCHOR)],
    "contact": [_contact("kA", None, None, None, False, False, ANCHOR)],
    "account": [_account("aA", False, False, ANCHOR)],
    "user": [_sf_user("vA", False, ANCHOR)],
    "email": [_email("eA", "Plain", None, False, ANCHOR)],
    "email_sender": [_address("eA", "a@anchor.example", "sender", False, ANCHOR)],
    "email_recipient": [_address("eA", "b@anchor.example", "to", False, ANCHOR)],
}  # fmt: skip


def _anchored(world: World) -> World:
    """The world with every table's anchor row."""
    return {table: [*rows, *_ANCHORS[table]] for table, rows in world.items()}


MODSTAMPED = ("opportunity", "contact")  # streams whose cursor is Salesforce's system_modstamp


@st.composite
def changes(draw: Any, world: World, *, visible: bool) -> World:
    """The world after changes: visible ones move the cursor, invisible ones do not."""
    out: World = {}
    for table, rows in world.items():
        kept: list[Row] = []
        for row in rows:
            action = draw(st.sampled_from(["keep", "keep", "reimport", "flags", "drop"]))
            if action == "drop" and not visible:  # a hard delete: the cursor cannot see it
                continue
            new = dict(row)
            if action == "flags":  # a delete, a restore, or a flag emptied
                new.update({c: draw(FLAG) for c in FLAG_COLUMNS if c in row})
            if visible and action in ("reimport", "flags"):
                new["_fivetran_synced"] = LATER
                if table in MODSTAMPED:  # its own cursor moves with any Salesforce edit
                    new["system_modstamp"] = new["last_modified_date"] = LATER
            kept.append(new)
        out[table] = kept
    if visible:  # late rows of every table: older than the watermark, inside the lookback
        late = draw(WORLD)
        for table, rows in late.items():
            key = KEYS[table]
            taken = {key(r) for r in out[table]}
            for row in rows[:1]:
                if key(row) not in taken:
                    out[table].append({**row, "_fivetran_synced": LATE,
                                       **({"system_modstamp": LATE} if table in MODSTAMPED
                                          else {})})  # fmt: skip
    return out


KEYS: dict[str, Callable[[Row], Any]] = {
    "call": lambda r: r["id"], "call_speaker": lambda r: r["id"],
    "call_participant": lambda r: r["id"], "users": lambda r: r["id"],
    "transcript": lambda r: (r["call_id"], r["index"]),
    "call_context_integration": lambda r: (r["call_id"], r["object_type"], r["object_id"]),
    "opportunity": lambda r: r["id"], "contact": lambda r: r["id"],
    "account": lambda r: r["id"], "user": lambda r: r["id"],
    "email": lambda r: r["id"], "email_sender": lambda r: (r["email_id"], r["email_address"]),
    "email_recipient": lambda r: (r["email_id"], r["type"], r["email_address"]),
}  # fmt: skip


def _land(env: Env, world: World, *, replace: bool) -> None:
    """Make BigQuery hold exactly the world."""
    for table, rows in world.items():
        role = TABLES[table][0]
        if replace:
            full = f"`{env.bq.project}.{env.datasets[role]}.{table}`"
            dml(env.bq, f"DELETE FROM {full} WHERE TRUE")
        if rows:
            insert(env.bq, env.datasets, table, rows)


def _multiset(rows: Iterable[Iterable[Any]]) -> Counter[tuple[Any, ...]]:
    return Counter(
        tuple(
            json.dumps(v, sort_keys=True, default=str) if isinstance(v, dict | list) else v
            for v in row
        )
        for row in rows
    )


def _same(what: str, want: Iterable[Iterable[Any]], got: Iterable[Iterable[Any]]) -> None:
    wanted, found = _multiset(want), _multiset(got)
    assert wanted == found, f"{what}: missing {wanted - found}, extra {found - wanted}"


def _check(env: Env, world: World, orphans: bool) -> None:
    """Postgres equals the reference for what BigQuery holds; orphans=False after a fix."""

    def live(rows: dict[Any, Any]) -> dict[Any, Any]:
        return rows if orphans else reference.without_orphans(rows, world)

    for target in ("calls", "emails", "opportunities", "contacts"):
        _same(target, expected(target, world), env.query(CONTENT[target]))
    transcripts = live(reference.transcripts(world)[0])
    _same("transcripts", [r[:-1] for r in transcripts.values()], env.query(CONTENT["transcripts"]))
    speakers = live(reference.speakers(world)[0])
    _same("call_speakers", [r[:8] for r in speakers.values()],
          env.query("SELECT gong_call_id, speaker_id, user_id, name, email, title, company_side,"
                    " talk_time_seconds FROM call_speakers"))  # fmt: skip
    shares = dict(env.query("SELECT gong_call_id || '/' || speaker_id, talk_time_percentage"
                            " FROM call_speakers"))  # fmt: skip
    for (cid, sid), row in speakers.items():
        got = shares[f"{cid}/{sid}"]
        # BigQuery rounds the share; its last digit may differ from Python's.
        assert (got is None) == (row[8] is None), (cid, sid)
        assert got is None or abs(got - row[8]) <= Decimal("0.01"), (cid, sid)
    links = reference.call_opportunities(world)[0]
    if not orphans:
        links = {k for k in links if k[0] in reference.live_calls(world)}
    stored = env.query("SELECT gong_call_id, gong_opportunity_id FROM call_opportunities")
    _same("call_opportunities", links, stored)


def _check_letters(env: Env, world: World) -> None:
    """The calls source's dead letters are exactly the rows the reference rejects."""
    want = {("calls", (k,)) for k in reference.calls(world)[1]}
    want |= {("call_speakers", k) for k in reference.speakers(world)[1]}
    want |= {("transcripts", k) for k in reference.transcripts(world)[1]}
    want |= {("call_opportunities", k) for k in reference.call_opportunities(world)[1]}
    got = env.query("SELECT target, record_key FROM dead_letters WHERE source = 'calls'")
    assert {(t, tuple(json.loads(k))) for t, k in got} == want


def _sync(env: Env) -> None:
    for name in sources.SOURCES:
        assert env.sync(name).status == "success", name


def _verify_fix(env: Env) -> None:
    for name in sources.SOURCES:
        after = env.reconcile(name, sample=1000)
        assert after.clean, [t.summary() for t in after.targets]


@pytest.fixture(scope="module")
def server(pg_server: PostgresSettings, bq_host: str) -> tuple[PostgresSettings, str]:
    return pg_server, bq_host


# Each example syncs three sources three times: shrinking a failure is bounded (its report
# still names the seed that replays it).
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate]
    if os.environ.get("GONG_SYNC_NO_SHRINK")
    else list(Phase),
)
@given(data=st.data(), page_size=st.integers(1, 4), pages_per_query=st.integers(1, 3))
def test_sync_and_verify_equal_the_reference(
    server: tuple[PostgresSettings, str],
    data: st.DataObject,
    page_size: int,
    pages_per_query: int,
) -> None:
    env = make_env(*server)
    env.settings = dataclasses.replace(
        env.settings, page_size=page_size, pages_per_query=pages_per_query
    )
    world: World = _anchored(data.draw(WORLD, label="first state"))
    _land(env, world, replace=False)
    _sync(env)
    _check(env, world, orphans=True)
    _check_letters(env, world)

    world = data.draw(changes(world, visible=True), label="after visible changes")
    _land(env, world, replace=True)
    _sync(env)
    env.settle()  # the users' changes wait for the day's end (Touch.every)
    _check(env, world, orphans=True)

    world = data.draw(changes(world, visible=False), label="after invisible changes")
    _land(env, world, replace=True)
    _verify_fix(env)
    _check(env, world, orphans=False)
