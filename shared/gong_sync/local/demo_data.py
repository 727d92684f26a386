"""Deterministic generator of Fivetran-shaped Gong and Salesforce demo data."""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import math
import random
import re
import time
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from google.api_core.exceptions import GoogleAPIError
from google.cloud import bigquery

from . import demo_edge_cases, fivetran_schemas
from .fivetran_schemas import FIVETRAN_DELETED, FIVETRAN_SYNCED, TABLES

logger = logging.getLogger(__name__)

# All times derive from this instant so output never depends on the wall clock.
BASE_INSTANT: Final = datetime(2026, 11, 1, tzinfo=UTC)
# ~30% of every table's rows carry exactly this value so that keyset page
# boundaries on _fivetran_synced land inside runs of ties.
SHARED_SYNCED: Final = datetime(2026, 10, 20, 12, 0, 0, 123456, tzinfo=UTC)
SHARED_SYNCED_FRACTION: Final = 0.3
SYNC_WINDOW: Final = timedelta(days=30)
MIN_TIMESTAMP: Final = datetime(1, 1, 1, tzinfo=UTC)
MAX_TIMESTAMP: Final = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)

SELLER: Final = "Acme Corp"
SELLER_DOMAIN: Final = "acme.example"
WORKSPACE_ID: Final = "5562739194953732039"
SECONDARY_WORKSPACE_ID: Final = "7340912285561290348"

LONG_TRANSCRIPT_MONOLOGUES: Final = 1500
LONG_MONOLOGUE_SENTENCES: Final = 400

# Request budget for insert_rows_json, measured as the client serialises it
# (ASCII-escaped JSON): well under the 5 MB per request the emulator may reject
# and the 10 MB real BigQuery caps insertAll at.
MAX_INSERT_BYTES: Final = 1_000_000
# Per-row wrapper the client adds around each row: {"insertId": "<uuid>", "json": ...}.
_ROW_WRAPPER_BYTES: Final = 80
INSERT_RETRY_SECONDS: Final = 30.0
INSERT_TIMEOUT_SECONDS: Final = 20.0


def _fixed_gong_id(n: int) -> str:
    """Return a stable Gong-style id; random ids never start with 9 so these cannot collide."""
    return str(9_100_000_000_000_000_000 + n)


def _fixed_sf_id(prefix: str, n: int) -> str:
    """Return a stable 18-character Salesforce-style id with a recognisable middle."""
    return f"{prefix}0000000NASTY{n:02d}A"


def _fixed_email_id(n: int) -> str:
    """Return a stable 32-hex-digit email id."""
    return f"{0xFEED << 112 | n:032x}"


# Fixed call positions carrying the nasty cases; identical at every scale and seed.
_SLOT_SOFT_DELETED: Final = 0
_SLOT_NUL_TITLE: Final = 1
_SLOT_NUL_SENTENCE: Final = 2
_SLOT_MIN_STARTED: Final = 3
_SLOT_MAX_SCHEDULED: Final = 4
_SLOT_NON_ASCII: Final = 5
_SLOT_LONG_TRANSCRIPT: Final = 6
_SLOT_LONG_MONOLOGUE: Final = 7
_SLOT_DELETED_TRANSCRIPT: Final = 8
_SLOT_DELETED_SPEAKER: Final = 9
_SLOT_NULL_SPEAKER_ID: Final = 10
_SLOT_NULL_TRANSCRIPT_KEYS: Final = 11
_SLOT_NULL_CALL_ID: Final = 12

_FIXED_CALL_IDS: Final[dict[int, str | None]] = {
    slot: _fixed_gong_id(100 + slot) for slot in range(_SLOT_NULL_CALL_ID)
} | {_SLOT_NULL_CALL_ID: None}

_NUL_SENTENCE_INDEX: Final = 1
_LONG_MONOLOGUE_INDEX: Final = 3
_DELETED_TRANSCRIPT_INDEX: Final = 2
_DELETED_SPEAKER_ID: Final = _fixed_gong_id(301)
_NULL_KEYS_SPEAKER_ID: Final = _fixed_gong_id(302)
_NULL_ID_CALL_MARKER: Final = "nasty-null-id-call"

_USER_JOSE: Final = _fixed_gong_id(201)
_USER_ZOE: Final = _fixed_gong_id(202)
_USER_TANAKA: Final = _fixed_gong_id(203)
_USER_DELETED: Final = _fixed_gong_id(204)

_ACCOUNT_RTL: Final = _fixed_sf_id("001", 1)
_ACCOUNT_EMOJI: Final = _fixed_sf_id("001", 2)
_ACCOUNT_CJK: Final = _fixed_sf_id("001", 3)
_ACCOUNT_DELETED: Final = _fixed_sf_id("001", 4)

_OPP_IS_DELETED: Final = _fixed_sf_id("006", 1)
_OPP_FIVETRAN_DELETED: Final = _fixed_sf_id("006", 2)
_OPP_NULL_AMOUNT: Final = _fixed_sf_id("006", 3)
_OPP_ON_DELETED_ACCOUNT: Final = _fixed_sf_id("006", 4)
_OPP_LARGE_AMOUNT: Final = _fixed_sf_id("006", 5)
_LARGE_AMOUNT: Final = Decimal("98765432109876543.21")

# Contacts carrying the nasty cases, by (account position, contact position): the accounts
# and their first contact are the same at every scale and seed.
_CONTACT_PADDED_EMAIL: Final = _fixed_sf_id("003", 1)
_CONTACT_ON_DELETED_ACCOUNT: Final = _fixed_sf_id("003", 2)
_CONTACT_IS_DELETED: Final = _fixed_sf_id("003", 3)
_CONTACT_FIVETRAN_DELETED: Final = _fixed_sf_id("003", 4)
_CONTACT_NULL_IS_DELETED: Final = _fixed_sf_id("003", 5)
_CONTACT_NULL_FIVETRAN_DELETED: Final = _fixed_sf_id("003", 6)
_CONTACT_NUL_TITLE: Final = _fixed_sf_id("003", 7)
_CONTACT_NO_EMAIL: Final = _fixed_sf_id("003", 8)
_FIXED_CONTACTS: Final[dict[tuple[int, int], str]] = {
    (1, 0): _CONTACT_PADDED_EMAIL,  # Sam of the emoji account, who also speaks and mails
    (3, 0): _CONTACT_ON_DELETED_ACCOUNT,
    (4, 0): _CONTACT_IS_DELETED,
    (5, 0): _CONTACT_FIVETRAN_DELETED,
    (6, 0): _CONTACT_NULL_IS_DELETED,
    (7, 0): _CONTACT_NULL_FIVETRAN_DELETED,
    (8, 0): _CONTACT_NUL_TITLE,
    (9, 0): _CONTACT_NO_EMAIL,
}
# Every flag NULL, on the edge cases' account and owner whose own flags are NULL too.
_CONTACT_NULL_FLAGS: Final = _fixed_sf_id("003", 9)
_NULL_ID_CONTACT_MARKER: Final = "nasty-null-id-contact"
# A data-loader import: one Salesforce transaction stamps its whole batch with one
# SystemModstamp, so the contact cursor has a run of ties for pages to fall inside.
CONTACTS_IMPORTED: Final = datetime(2026, 10, 6, 9, 30, 0, 250001, tzinfo=UTC)
CONTACTS_IMPORTED_FRACTION: Final = 0.35

_EMAIL_DELETED: Final = _fixed_email_id(1)
_EMAIL_NUL_BODY: Final = _fixed_email_id(2)
_EMAIL_DUPLICATE_RECIPIENT: Final = _fixed_email_id(3)
_EMAIL_MULTIBYTE: Final = _fixed_email_id(4)
_EMAIL_HTML: Final = _fixed_email_id(5)
# Multi-byte text whose 500th character is followed by a combining accent.
MULTIBYTE_BODY: Final = (
    ("Grüße aus 東京 🚀 " * 40)[:499] + "e\u0301" + " and the rest of the message, cut off."
)
HTML_BODY: Final = (
    "<html><head><style>p {color: red}</style></head><body><p>Hi Zoë &amp; team,</p>"
    "<p>Price: 5&nbsp;&euro; &lt;net&gt;</p><script>var x = 1;</script>"
    "<ul><li>one</li><li>two</li></ul>Thanks<br>Ana</body></html>"
)

NASTY: Final[dict[str, Any]] = {
    "shared_synced": SHARED_SYNCED,
    "soft_deleted_call": _FIXED_CALL_IDS[_SLOT_SOFT_DELETED],
    "nul_title_call": _FIXED_CALL_IDS[_SLOT_NUL_TITLE],
    "nul_sentence": {
        "call_id": _FIXED_CALL_IDS[_SLOT_NUL_SENTENCE],
        "index": _NUL_SENTENCE_INDEX,
    },
    "nul_body_email": _EMAIL_NUL_BODY,
    "duplicate_recipient_email": _EMAIL_DUPLICATE_RECIPIENT,
    "multibyte_email": _EMAIL_MULTIBYTE,
    "html_email": _EMAIL_HTML,
    "invalid_timestamp_call": _FIXED_CALL_IDS[_SLOT_MIN_STARTED],
    "far_future_scheduled_call": _FIXED_CALL_IDS[_SLOT_MAX_SCHEDULED],
    "non_ascii_call": _FIXED_CALL_IDS[_SLOT_NON_ASCII],
    "non_ascii_users": {"accented": _USER_JOSE, "diaeresis": _USER_ZOE, "cjk": _USER_TANAKA},
    "non_ascii_accounts": {"rtl": _ACCOUNT_RTL, "emoji": _ACCOUNT_EMOJI, "cjk": _ACCOUNT_CJK},
    "long_transcript_call": _FIXED_CALL_IDS[_SLOT_LONG_TRANSCRIPT],
    "long_transcript_monologues": LONG_TRANSCRIPT_MONOLOGUES,
    "long_monologue": {
        "call_id": _FIXED_CALL_IDS[_SLOT_LONG_MONOLOGUE],
        "index": _LONG_MONOLOGUE_INDEX,
        "sentences": LONG_MONOLOGUE_SENTENCES,
    },
    "deleted_transcript": {
        "call_id": _FIXED_CALL_IDS[_SLOT_DELETED_TRANSCRIPT],
        "index": _DELETED_TRANSCRIPT_INDEX,
    },
    "deleted_call_speaker": _DELETED_SPEAKER_ID,
    "deleted_user": _USER_DELETED,
    "is_deleted_opportunity": _OPP_IS_DELETED,
    "fivetran_deleted_opportunity": _OPP_FIVETRAN_DELETED,
    "null_amount_opportunity": _OPP_NULL_AMOUNT,
    "large_amount_opportunity": _OPP_LARGE_AMOUNT,
    "large_amount": _LARGE_AMOUNT,
    "deleted_account": _ACCOUNT_DELETED,
    "opportunity_on_deleted_account": _OPP_ON_DELETED_ACCOUNT,
    "deleted_email": _EMAIL_DELETED,
    "padded_email_contact": _CONTACT_PADDED_EMAIL,
    "contact_on_deleted_account": _CONTACT_ON_DELETED_ACCOUNT,
    "is_deleted_contact": _CONTACT_IS_DELETED,
    "fivetran_deleted_contact": _CONTACT_FIVETRAN_DELETED,
    "null_is_deleted_contact": _CONTACT_NULL_IS_DELETED,
    "null_fivetran_deleted_contact": _CONTACT_NULL_FIVETRAN_DELETED,
    "nul_title_contact": _CONTACT_NUL_TITLE,
    "no_email_contact": _CONTACT_NO_EMAIL,
    "null_flags_contact": _CONTACT_NULL_FLAGS,
    # table -> matchers; each matcher selects exactly one row (all items equal).
    "null_key_rows": {
        "call": [{"id": None, "client_unique_id": _NULL_ID_CALL_MARKER}],
        "call_speaker": [{"id": None, "call_id": _FIXED_CALL_IDS[_SLOT_NULL_SPEAKER_ID]}],
        "transcript": [
            {"call_id": None, "speaker_id": _NULL_KEYS_SPEAKER_ID},
            {"call_id": _FIXED_CALL_IDS[_SLOT_NULL_TRANSCRIPT_KEYS], "index": None},
        ],
        "contact": [{"id": None, "last_name": _NULL_ID_CONTACT_MARKER}],
    },
}

_FIRST_NAMES: Final = (
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Mateo", "Sofia", "Lucas", "Mia", "Ethan",
    "Amara", "Kenji", "Priya", "Wei", "Fatima", "Jonas", "Ingrid", "Diego", "Chloé",
    "François", "Siobhán", "Łukasz", "Ngozi", "Björn", "Aiko", "Rahul", "Elena", "Marcus",
    "Hannah", "Tomás", "Renée", "Søren", "Grace", "Omar", "Lena", "Kwame",
)  # fmt: skip
_LAST_NAMES: Final = (
    "Smith", "Johnson", "García", "Nguyen", "Patel", "Kim", "O'Brien", "Kowalski", "Rossi",
    "Schmidt", "Dubois", "Okafor", "Andersson", "Silva", "Haddad", "Cohen", "Yamamoto",
    "Novak", "Fernández", "Brennan", "Lindqvist", "Mbeki", "Costa", "Walsh", "Ivanova",
    "Østergaard", "Nakamura", "Reyes", "Fischer", "Byrne", "Chen", "Mensah",
)  # fmt: skip
_INTERNAL_TITLES: Final = (
    "Account Executive", "Senior Account Executive", "Enterprise Account Executive",
    "Sales Development Representative", "Solutions Engineer", "Customer Success Manager",
)  # fmt: skip
_MANAGER_TITLES: Final = ("Sales Manager", "Regional Sales Director")
_EXTERNAL_TITLES: Final = (
    "CTO", "VP of Engineering", "Head of Procurement", "IT Director", "Director of Operations",
    "CFO", "Product Manager", "Data Engineer", "Head of Revenue Operations",
    "Chief Revenue Officer", "Directeur Général", "Jefa de Compras", "Security Architect",
    "Sales Enablement Lead",
)  # fmt: skip
_ACCOUNT_NAMES: Final = (
    "Initech", "Globex", "Umbrella Health", "Hooli", "Stark Industries", "Wayne Enterprises",
    "Soylent", "Cyberdyne Systems", "Tyrell Corporation", "Wonka Confections",
    "Dunder Mifflin", "Pied Piper", "Massive Dynamic", "Oscorp", "Gringotts Financial",
    "Monarch Solutions", "Nakatomi Trading", "Sterling Cooper", "Prestige Worldwide",
    "Bluth Company", "Aperture Science", "Black Mesa", "Virtucon", "Gekko & Co",
    "Los Pollos Hermanos", "Duff Brewing", "Vehement Capital", "Rekall", "Weyland-Yutani",
    "Ollivanders", "Bubba Gump", "Planet Express", "Frobozz Magic", "Omni Consumer Products",
    "InGen", "Zorg Industries", "Spacely Sprockets", "Cogswell Cogs", "Buy n Large",
    "Sirius Cybernetics",
)  # fmt: skip
_ACCOUNT_SUFFIXES: Final = ("EMEA", "APAC", "North America", "LATAM", "Labs", "Holdings")
_CALL_TYPES: Final = (
    ("Discovery call", "Discovery"), ("Product demo", "Demo"),
    ("Technical deep dive", "Demo"), ("Pricing discussion", "Negotiation"),
    ("Negotiation", "Negotiation"), ("Kickoff", "Onboarding"),
    ("Quarterly business review", "QBR"), ("Security review", "Discovery"),
    ("Check-in", "Account Management"), ("Executive alignment", "Negotiation"),
)  # fmt: skip
_INTERNAL_CALL_TITLES: Final = (
    "Deal review: {account}", "Forecast call – {account}", "Pipeline review ({account})",
    "Call prep: {account}",
)  # fmt: skip
_SYSTEMS: Final = ("Zoom", "Google Meet", "Microsoft Teams", "Webex")
_LANGUAGES: Final = ("eng",) * 17 + ("fre", "spa", "ger")
_OPP_KINDS: Final = (
    "New Business", "Expansion", "Renewal 2027", "Platform Upgrade", "Pilot",
    "Enterprise Rollout", "Add-on Seats",
)  # fmt: skip
# Stage → probability (%) as in the default Salesforce sales process.
_STAGES: Final = (
    ("Prospecting", 10.0), ("Qualification", 20.0), ("Needs Analysis", 30.0),
    ("Value Proposition", 40.0), ("Id. Decision Makers", 50.0), ("Perception Analysis", 60.0),
    ("Proposal/Price Quote", 70.0), ("Negotiation/Review", 90.0), ("Closed Won", 100.0),
    ("Closed Lost", 0.0),
)  # fmt: skip
_COMPETITORS: Final = ("Chorus", "Clari", "Outreach", "Salesloft", "a homegrown tool")
_FEATURES: Final = ("forecasting", "deal board", "coaching", "call library", "analytics")
_PROCESSES: Final = ("pipeline reviews", "rep onboarding", "forecasting", "call coaching")
_ROLES: Final = ("CFO", "CISO", "VP of Sales", "legal team", "procurement lead")
_WEEKDAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
_MONTHS: Final = ("January", "March", "June", "September", "December")
_TOPICS_MIDDLE: Final = (
    "Product", "Pricing", "Integration", "Security", "Timeline", "Competition", "Use Cases",
)  # fmt: skip

_SELLER_PHRASES: Final = (
    "Thanks for making the time today, {first}.",
    "Before we dive in, could you walk me through how your team handles {process} today?",
    "What does success look like for {account} by the end of the quarter?",
    "We typically see teams cut ramp time by about {pct} percent in the first ninety days.",
    "Let me share my screen and show you the {feature} dashboard.",
    "Pricing is per seat, and at {seats} seats you would land in our Growth tier.",
    "I can get you a mutual action plan by {weekday}.",
    "Who else should be involved in the evaluation on your side?",
    "Totally fair question, and it comes up a lot with security teams.",
    "We integrate natively with Salesforce, HubSpot and Snowflake.",
    "If we can get the paperwork signed this month, I can hold the current discount.",
    "Does it make sense to loop in your {role} next week?",
    "Our SOC 2 Type II report is available under NDA, I'll send it over.",
    "Let me recap what I heard so far, and correct me if I'm wrong.",
    "Compared to {competitor}, the main difference is how we capture every conversation.",
    "I'll send the deck and a recording of this call right after we hang up.",
    "Most customers your size go live in about six weeks.",
    "What would happen if you didn't solve this before {month}?",
)
_BUYER_PHRASES: Final = (
    "Right now we are mostly doing this in spreadsheets, which is painful.",
    "Our biggest concern is the migration away from {competitor}.",
    "Budget is approved for this fiscal year, but it's tight.",
    "Can you tell me more about where the data is stored?",
    "We looked at {competitor} last year and adoption was the problem.",
    "Honestly, the price is higher than we expected.",
    "I'd need to run this by our {role} before we commit to anything.",
    "That {feature} view is exactly what my managers keep asking for.",
    "How long does a typical implementation take?",
    "We have about {seats} reps across three regions.",
    "Security review usually takes us four to six weeks.",
    "Sounds good, let's pencil in {weekday} afternoon.",
    "Do you offer a pilot or a proof of concept?",
    "Our contract with the current tool renews in {month}.",
    "The team at {account} is stretched thin this quarter, so timing matters.",
)
_INTERNAL_PHRASES: Final = (
    "Where are we on the {account} deal?",
    "Legal still has redlines on the MSA.",
    "I think we can pull {account} into this quarter.",
    "Let's make sure the forecast reflects that.",
    "What's the next step with the champion?",
    "Their {role} hasn't been in any meeting yet, that's a risk.",
    "They mentioned {competitor} twice on the last call.",
    "Can you build a business case around {process}?",
)
_FILLERS: Final = ("Yeah.", "Mm-hmm.", "Got it.", "Okay, great.", "That makes sense.", "Sure.")
_NON_ASCII_SENTENCES: Final = (
    "¡Hola José! Ça va? Schön, dass Sie alle da sind.",
    "田中です。本日はよろしくお願いします。",
    "شكراً جزيلاً على وقتكم اليوم، شركة الأفق مهتمة جداً.",
    "Zoë here — let's ship this 🚀🚀 before Q1!",
    "The contract with شركة الأفق للتقنية starts on 1 December, 田中さん confirmed.",
    "Family emoji 👨‍👩‍👧‍👦, flags 🇯🇵🇸🇦 and combining marks (e\u0301) should survive too.",
)
_NUL_SENTENCE: Final = "The exported report had a stray\x00byte in the middle of it."

_EMAIL_SUBJECTS: Final = (
    "Follow-up: {seller} <> {account} discovery call",
    "Pricing proposal for {account}",
    "Security questionnaire – {account}",
    "Next steps & mutual action plan",
    "Intro: {seller} x {account}",
    "Contract redlines v{n}",
    "Recap from today's demo",
    "Quick question about your {feature} rollout",
    "Renewal timeline for {account}",
)
_OUTBOUND_PARAGRAPHS: Final = (
    "Thanks again for the time today. As promised, I'm attaching the deck & the recording.",
    "Could you share the security questionnaire with our team by {weekday}?",
    "Our proposal for {seats} seats comes to ${amount} per year, including onboarding.",
    "Let me know if {weekday} at 10am works for a follow-up with your {role}.",
    "Looping in my colleague who runs implementation for accounts like {account}.",
    "We reviewed the redlines internally; only clause 7.2 (limitation of liability) is open.",
    "Customers that moved off {competitor} usually see results within a quarter.",
)
_INBOUND_PARAGRAPHS: Final = (
    "Thanks for sending this over, the team is reviewing it now.",
    "We need to loop in procurement before we can sign anything.",
    "Can you confirm whether our data would be stored in the EU?",
    "The demo landed well with the managers <3 but our {role} has questions on pricing.",
    "We're comparing your offer with {competitor}; can you sharpen the numbers a bit?",
    "Please send the order form to me & our legal team.",
)
_SIGNOFFS: Final = ("Best", "Cheers", "Thanks", "Kind regards")
_FOLD: Final = str.maketrans({"ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "ß": "ss", "æ": "ae"})


@dataclass(frozen=True, slots=True)
class _Person:
    """Someone who can appear on a call or an email."""

    first: str
    last: str
    name: str
    email: str
    title: str
    user_id: str | None = None
    phone: str | None = None


@dataclass(frozen=True, slots=True)
class _Opportunity:
    """The bits of an opportunity that calls refer to."""

    id: str
    name: str
    stage: str


@dataclass(slots=True)
class _Account:
    """A customer account with its contacts and opportunities."""

    id: str
    name: str
    domain: str
    kind: str
    contacts: list[_Person] = field(default_factory=list)
    opportunities: list[_Opportunity] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Speaker:
    """A call speaker and the participant behind them."""

    id: str
    person: _Person
    internal: bool


def _ascii_slug(text: str) -> str:
    """Fold accents and drop everything but ASCII letters and digits."""
    folded = unicodedata.normalize("NFKD", text.translate(_FOLD))
    return re.sub(r"[^a-z0-9]", "", folded.encode("ascii", "ignore").decode().lower())


def _sub_millisecond(t: datetime) -> datetime:
    """Nudge a timestamp so its microseconds are not a whole millisecond."""
    # Whole-millisecond values would hide a consumer that truncates to ms.
    if t.microsecond % 1000 == 0:
        t += timedelta(microseconds=1)
    return t


class _Generator:
    """Builds all tables from one seeded random stream."""

    def __init__(self, scale: int, seed: int) -> None:
        """Prepare empty tables and the id registry."""
        # A string seed is hashed with SHA-512, so it is stable across processes.
        self.rng = random.Random(f"gong-sync-demo:{seed}")
        self.scale = scale
        self.tables: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLES}
        self._columns = {
            name: tuple(f.name for f in schema) for name, (_, schema) in TABLES.items()
        }
        self._seen_ids: set[str] = set()
        self.users: list[_Person] = []
        self.accounts: list[_Account] = []

    # -- primitives -------------------------------------------------------

    def emit(self, table: str, *, deleted: bool | None = False, **values: Any) -> None:
        """Append a row in schema column order, adding the Fivetran columns (None: NULL)."""
        row = {**values, FIVETRAN_SYNCED: self.synced(), FIVETRAN_DELETED: deleted}
        if tuple(row) != self._columns[table]:
            raise AssertionError(f"{table}: columns {tuple(row)} != schema {self._columns[table]}")
        self.tables[table].append(row)

    def instant(self, lo: datetime, hi: datetime) -> datetime:
        """Return a uniformly random instant in [lo, hi) with sub-millisecond digits."""
        span = (hi - lo) // timedelta(microseconds=1)
        t = _sub_millisecond(lo + timedelta(microseconds=self.rng.randrange(span)))
        if t == SHARED_SYNCED:
            t += timedelta(microseconds=1)
        return t

    def synced(self) -> datetime:
        """Return a _fivetran_synced value, often the shared tie value."""
        if self.rng.random() < SHARED_SYNCED_FRACTION:
            return SHARED_SYNCED
        return self.instant(BASE_INSTANT - SYNC_WINDOW, BASE_INSTANT)

    def _unique(self, candidate: str) -> str | None:
        """Register an id, or return None if it was already taken."""
        if candidate in self._seen_ids:
            return None
        self._seen_ids.add(candidate)
        return candidate

    def gong_id(self) -> str:
        """Return a new 19-digit Gong-style id (never starting with 9)."""
        while (new := self._unique(str(self.rng.randrange(10**18, 9 * 10**18)))) is None:
            pass
        return new

    def sf_id(self, prefix: str) -> str:
        """Return a new 18-character Salesforce-style id."""
        alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
        while True:
            body = "".join(self.rng.choices(alphabet, k=12))
            suffix = "".join(self.rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ", k=3))
            if (new := self._unique(f"{prefix}{body}{suffix}")) is not None:
                return new

    def hex_id(self, digits: int) -> str:
        """Return a new random lowercase hex id."""
        while (new := self._unique(f"{self.rng.getrandbits(4 * digits):0{digits}x}")) is None:
            pass
        return new

    def phone(self) -> str:
        """Return a fictional North American phone number."""
        return f"+1 {self.rng.randint(201, 989)}-555-{self.rng.randint(100, 199):04d}"

    def person(self, domain: str, titles: tuple[str, ...], taken: set[str]) -> _Person:
        """Return a random person with an email unique within `taken`."""
        first = self.rng.choice(_FIRST_NAMES)
        last = self.rng.choice(_LAST_NAMES)
        local = f"{_ascii_slug(first)}.{_ascii_slug(last)}"
        email, n = f"{local}@{domain}", 1
        while email in taken:
            n += 1
            email = f"{local}{n}@{domain}"
        taken.add(email)
        phone = self.phone() if self.rng.random() < 0.3 else None
        title = self.rng.choice(titles)
        return _Person(first, last, f"{first} {last}", email, title, phone=phone)

    # -- tables -----------------------------------------------------------

    def build_users(self) -> None:
        """Emit Gong users and their Salesforce counterparts."""
        fixed = [
            _Person(
                "José",
                "Müller",
                "José Müller",
                f"jose.muller@{SELLER_DOMAIN}",
                "VP of Sales",
                _USER_JOSE,
            ),
            _Person(
                "Zoë",
                "Lefèvre",
                "Zoë Lefèvre",
                f"zoe.lefevre@{SELLER_DOMAIN}",
                "Regional Sales Director",
                _USER_ZOE,
            ),
            _Person(
                "太郎",
                "田中",
                "田中太郎",
                f"taro.tanaka@{SELLER_DOMAIN}",
                "Solutions Engineer",
                _USER_TANAKA,
            ),
            _Person(
                "Dana",
                "Whitfield",
                "Dana Whitfield",
                f"dana.whitfield@{SELLER_DOMAIN}",
                "Account Executive",
                _USER_DELETED,
            ),
        ]
        self._seen_ids.update(p.user_id for p in fixed if p.user_id)
        taken = {p.email for p in fixed}
        users = list(fixed)
        for _ in range(25 * self.scale - len(fixed)):
            p = self.person(SELLER_DOMAIN, _INTERNAL_TITLES, taken)
            users.append(_Person(p.first, p.last, p.name, p.email, p.title, self.gong_id()))
        # Managers: José at the top, Zoë plus a few others below him; never the
        # deleted user, so the hierarchy itself stays valid.
        n_managers = max(2, len(users) // 8)
        managers = [users[1], *users[4 : 4 + n_managers - 1]]
        for i, user in enumerate(users):
            if i == 0:
                manager_id = None
            elif user in managers:
                manager_id = users[0].user_id
            else:
                manager_id = self.rng.choice(managers).user_id
            title = self.rng.choice(_MANAGER_TITLES) if user in managers[1:] else user.title
            users[i] = user = dataclasses.replace(user, title=title)
            is_deleted = user.user_id == _USER_DELETED
            self.emit(
                "users",
                deleted=is_deleted,
                id=user.user_id,
                email_address=user.email,
                first_name=user.first,
                last_name=user.last,
                title=user.title,
                manager_id=manager_id,
                active=not is_deleted and self.rng.random() > 0.08,
            )
        self.users = users
        for user in users:
            self.emit("user", id=self.sf_id("005"), name=user.name, email=user.email)

    def _account_names(self) -> Iterator[str]:
        """Yield an endless, seed-shuffled stream of distinct account names."""
        base = list(_ACCOUNT_NAMES)
        self.rng.shuffle(base)
        yield from base
        for suffix in _ACCOUNT_SUFFIXES:
            yield from (f"{name} {suffix}" for name in base)
        n = 2
        while True:
            yield from (f"{name} {n}" for name in base)
            n += 1

    def build_accounts(self) -> None:
        """Emit Salesforce accounts and invent their contacts."""
        accounts = [
            _Account(_ACCOUNT_RTL, "شركة الأفق للتقنية", "alofoq.example", "Customer"),
            _Account(_ACCOUNT_EMOJI, "🚀 Rocket Ventures", "rocketventures.example", "Prospect"),
            _Account(_ACCOUNT_CJK, "田中商事株式会社", "tanaka-shoji.example", "Customer"),
            _Account(_ACCOUNT_DELETED, "Vandelay Industries", "vandelay.example", "Prospect"),
        ]
        self._seen_ids.update(a.id for a in accounts)
        accounts[0].contacts.append(
            _Person("ليلى", "حداد", "ليلى حداد", "layla.haddad@alofoq.example", "مديرة المشتريات")
        )
        accounts[1].contacts.append(
            _Person(
                "Sam 🚀",
                "Rivera",
                "Sam 🚀 Rivera",
                "sam.rivera@rocketventures.example",
                "Founder & CEO",
                phone="+1 415-555-0142",
            )
        )
        accounts[2].contacts.append(
            _Person(
                "花子",
                "佐藤",
                "佐藤花子",
                "hanako.sato@tanaka-shoji.example",
                "情報システム部 部長",
            )
        )
        names = self._account_names()
        for _ in range(15 * self.scale - len(accounts)):
            name = next(names)
            kind = "Customer" if self.rng.random() < 0.5 else "Prospect"
            accounts.append(_Account(self.sf_id("001"), name, f"{_ascii_slug(name)}.example", kind))
        for account in accounts:
            taken = {c.email for c in account.contacts}
            while len(account.contacts) < 3 or (
                len(account.contacts) < 6 and self.rng.random() < 0.5
            ):
                account.contacts.append(self.person(account.domain, _EXTERNAL_TITLES, taken))
            self.emit(
                "account",
                id=account.id,
                name=account.name,
                is_deleted=account.id == _ACCOUNT_DELETED,
            )
        self.accounts = accounts

    def build_opportunities(self) -> None:
        """Emit opportunities; every account gets at least one."""
        sf_owner_ids = [row["id"] for row in self.tables["user"]]
        fixed_ids = [
            _OPP_IS_DELETED,
            _OPP_FIVETRAN_DELETED,
            _OPP_NULL_AMOUNT,
            _OPP_ON_DELETED_ACCOUNT,
            _OPP_LARGE_AMOUNT,
        ]
        self._seen_ids.update(fixed_ids)
        today = BASE_INSTANT.date()
        for i in range(30 * self.scale):
            # Round-robin first so the deleted account (position 3) owns fixed opp 3.
            account = self.accounts[i] if i < len(self.accounts) else self.rng.choice(self.accounts)
            opp_id = fixed_ids[i] if i < len(fixed_ids) else self.sf_id("006")
            stage, probability = self.rng.choice(_STAGES)
            closed = stage.startswith("Closed")
            close_date: date | None
            if closed:
                close_date = today - timedelta(days=self.rng.randint(1, 200))
            else:
                close_date = today + timedelta(days=self.rng.randint(1, 180))
            amount: Decimal | None = Decimal(self.rng.randrange(250_000, 25_000_000)).scaleb(-2)
            if opp_id == _OPP_NULL_AMOUNT:
                amount, close_date = None, None
            elif opp_id == _OPP_LARGE_AMOUNT:
                amount = _LARGE_AMOUNT
            name = f"{account.name} - {self.rng.choice(_OPP_KINDS)}"
            modified = self.instant(BASE_INSTANT - timedelta(days=60), BASE_INSTANT)
            modstamp = _sub_millisecond(
                modified + timedelta(microseconds=self.rng.randrange(0, 5_000_000))
            )
            self.emit(
                "opportunity",
                deleted=opp_id == _OPP_FIVETRAN_DELETED,
                id=opp_id,
                name=name,
                account_id=account.id,
                owner_id=self.rng.choice(sf_owner_ids),
                stage_name=stage,
                close_date=close_date,
                amount=amount,
                probability=probability,
                is_closed=closed,
                is_won=stage == "Closed Won",
                is_deleted=opp_id == _OPP_IS_DELETED,
                last_modified_date=modified,
                system_modstamp=modstamp,
            )
            account.opportunities.append(_Opportunity(opp_id, name, stage))

    def build_contacts(self) -> None:
        """Emit a Salesforce contact for every person invented for an account."""
        sf_owner_ids = [row["id"] for row in self.tables["user"]]
        self._seen_ids.update(_FIXED_CONTACTS.values())
        self._seen_ids.add(_CONTACT_NULL_FLAGS)
        for a, account in enumerate(self.accounts):
            for n, person in enumerate(account.contacts):
                contact_id = _FIXED_CONTACTS.get((a, n)) or self.sf_id("003")
                email: str | None = person.email
                title = person.title
                if contact_id == _CONTACT_PADDED_EMAIL:
                    # Salesforce keeps the case it was typed in; a paste brings spaces.
                    email = f"  {person.email.upper()} "
                elif contact_id == _CONTACT_NUL_TITLE:
                    title = f"{title}\x00"
                elif contact_id == _CONTACT_NO_EMAIL:
                    email = None
                if self.rng.random() < CONTACTS_IMPORTED_FRACTION:
                    modified = modstamp = CONTACTS_IMPORTED
                else:
                    modified = self.instant(BASE_INSTANT - timedelta(days=90), BASE_INSTANT)
                    modstamp = _sub_millisecond(
                        modified + timedelta(microseconds=self.rng.randrange(0, 5_000_000))
                    )
                is_deleted: bool | None = contact_id == _CONTACT_IS_DELETED
                if contact_id == _CONTACT_NULL_IS_DELETED:
                    is_deleted = None
                fivetran_deleted: bool | None = contact_id == _CONTACT_FIVETRAN_DELETED
                if contact_id == _CONTACT_NULL_FIVETRAN_DELETED:
                    fivetran_deleted = None
                self.emit(
                    "contact",
                    deleted=fivetran_deleted,
                    id=contact_id,
                    account_id=account.id,
                    owner_id=self.rng.choice(sf_owner_ids),
                    first_name=person.first,
                    last_name=person.last,
                    name=person.name,
                    email=email,
                    title=title,
                    phone=person.phone,
                    mobile_phone=self.phone() if self.rng.random() < 0.3 else None,
                    is_deleted=is_deleted,
                    last_modified_date=modified,
                    system_modstamp=modstamp,
                )
        # A NULL flag on the contact and on both rows it joins: all three are alive.
        self.emit(
            "contact",
            deleted=None,
            id=_CONTACT_NULL_FLAGS,
            account_id=demo_edge_cases.NULL_FLAG_ACCOUNT,
            owner_id=demo_edge_cases.NULL_FLAG_SF_USER,
            first_name="Nora",
            last_name="Null",
            name="Nora Null",
            email="Nora.Null@NullFlag.example",
            title="Head of Procurement",
            phone=None,
            mobile_phone=None,
            is_deleted=None,
            last_modified_date=BASE_INSTANT - timedelta(days=12),
            system_modstamp=BASE_INSTANT - timedelta(days=12, microseconds=-1),
        )
        # A live row without a key: a dead letter, never dropped in silence.
        self.emit(
            "contact",
            id=None,
            account_id=self.accounts[2].id,
            owner_id=sf_owner_ids[0],
            first_name="Nobody",
            last_name=_NULL_ID_CONTACT_MARKER,
            name=f"Nobody {_NULL_ID_CONTACT_MARKER}",
            email=None,
            title=None,
            phone=None,
            mobile_phone=None,
            is_deleted=False,
            last_modified_date=BASE_INSTANT - timedelta(days=11),
            system_modstamp=BASE_INSTANT - timedelta(days=11, microseconds=-1),
        )

    def _monologue(
        self, pool: tuple[str, ...], ctx: Mapping[str, str], n_sentences: int, long_one: bool
    ) -> list[str]:
        """Return sentence texts drawn from `pool` without back-to-back repeats."""
        phrases: list[str] = []

        def next_phrase() -> str:
            # Deal from a reshuffled deck so a speaker does not repeat themselves.
            if not phrases:
                phrases.extend(self.rng.sample(pool, len(pool)))
            return phrases.pop().format_map(ctx)

        texts = []
        for _ in range(n_sentences):
            if long_one:
                # 2-3 phrases per sentence puts 400 sentences at roughly 60k characters.
                parts = self.rng.choice((2, 3, 3))
                texts.append(" ".join(next_phrase() for _ in range(parts)))
            elif self.rng.random() < 0.15:
                texts.append(self.rng.choice(_FILLERS))
            else:
                texts.append(next_phrase())
        return texts

    def _transcript(
        self,
        slot: int,
        call_id: str,
        speakers: list[_Speaker],
        internal_call: bool,
        ctx: Mapping[str, str],
    ) -> tuple[list[dict[str, Any]], int, dict[str, int]]:
        """Return transcript rows, the last sentence end (ms) and talk ms per speaker."""
        n_mono = (
            LONG_TRANSCRIPT_MONOLOGUES if slot == _SLOT_LONG_TRANSCRIPT else self.rng.randint(5, 40)
        )
        rows: list[dict[str, Any]] = []
        talk_ms = {s.id: 0 for s in speakers}
        cursor = last_end = self.rng.randint(500, 4000)
        previous: _Speaker | None = None
        for index in range(n_mono):
            speaker = self.rng.choice([s for s in speakers if s is not previous])
            previous = speaker
            pool: tuple[str, ...]
            if internal_call:
                pool = _INTERNAL_PHRASES
            else:
                pool = _SELLER_PHRASES if speaker.internal else _BUYER_PHRASES
            long_one = slot == _SLOT_LONG_MONOLOGUE and index == _LONG_MONOLOGUE_INDEX
            n_sent = LONG_MONOLOGUE_SENTENCES if long_one else self.rng.randint(1, 6)
            texts = self._monologue(pool, ctx, n_sent, long_one)
            if slot == _SLOT_NUL_SENTENCE and index == _NUL_SENTENCE_INDEX:
                texts[0] = _NUL_SENTENCE
            if slot == _SLOT_NON_ASCII and index < len(_NON_ASCII_SENTENCES):
                texts[0] = _NON_ASCII_SENTENCES[index]
            sentences: list[dict[str, Any]] = []
            for text in texts:
                # Roughly speaking pace: ~55 ms per character, never under 0.6 s.
                duration = max(600, len(text) * self.rng.randint(45, 65))
                sentences.append({"start": cursor, "end": cursor + duration, "text": text})
                talk_ms[speaker.id] += duration
                last_end = cursor + duration
                cursor = last_end + self.rng.randint(80, 600)
            cursor += self.rng.randint(200, 1500)
            progress = index / n_mono
            topic: str | None
            if self.rng.random() < 0.2:
                topic = None
            elif progress < 0.1:
                topic = self.rng.choice(("Call Setup", "Small Talk"))
            elif progress > 0.85:
                topic = "Next Steps"
            else:
                topic = self.rng.choice(_TOPICS_MIDDLE)
            deleted = slot == _SLOT_DELETED_TRANSCRIPT and index == _DELETED_TRANSCRIPT_INDEX
            rows.append(
                {
                    "deleted": deleted,
                    "call_id": call_id,
                    "index": index,
                    "speaker_id": speaker.id,
                    "topic": topic,
                    "sentence": sentences,
                }
            )
        return rows, last_end, talk_ms

    def _call_people(
        self, slot: int, account: _Account, internal_call: bool
    ) -> tuple[list[_Person], list[_Person]]:
        """Pick the internal and external speakers of a call."""
        if slot == _SLOT_NON_ASCII:
            by_id = {u.user_id: u for u in self.users}
            return [by_id[_USER_JOSE], by_id[_USER_TANAKA]], account.contacts[:2]
        n_speakers = 2 if slot == _SLOT_LONG_TRANSCRIPT else self.rng.randint(2, 4)
        n_internal = n_speakers if internal_call else self.rng.randint(1, n_speakers - 1)
        internal = self.rng.sample(self.users, n_internal)
        external = self.rng.sample(account.contacts, n_speakers - n_internal)
        return internal, external

    def build_calls(self) -> None:
        """Emit calls with speakers, participants, transcripts and CRM context."""
        self._seen_ids.update(i for i in _FIXED_CALL_IDS.values() if i is not None)
        self._seen_ids.update((_DELETED_SPEAKER_ID, _NULL_KEYS_SPEAKER_ID))
        by_id = {a.id: a for a in self.accounts}
        for slot in range(100 * self.scale):
            if slot in _FIXED_CALL_IDS:
                call_id = _FIXED_CALL_IDS[slot]
                internal_call = False
            else:
                call_id = self.gong_id()
                internal_call = self.rng.random() < 0.1
            if slot == _SLOT_NON_ASCII:
                account = by_id[_ACCOUNT_RTL]
            else:
                account = self.rng.choice(self.accounts)
            self._call(slot, call_id, account, internal_call)

    def _call(self, slot: int, call_id: str | None, account: _Account, internal_call: bool) -> None:
        """Emit one call and everything hanging off it."""
        rng = self.rng
        internal, external = self._call_people(slot, account, internal_call)
        speakers = [_Speaker(self.gong_id(), p, True) for p in internal]
        speakers += [_Speaker(self.gong_id(), p, False) for p in external]
        if slot == _SLOT_DELETED_SPEAKER:
            speakers[-1] = _Speaker(_DELETED_SPEAKER_ID, speakers[-1].person, False)
        if slot == _SLOT_NULL_TRANSCRIPT_KEYS:
            speakers[0] = _Speaker(_NULL_KEYS_SPEAKER_ID, speakers[0].person, True)

        call_type, purpose = rng.choice(_CALL_TYPES)
        if slot == _SLOT_NON_ASCII:
            title = f"{SELLER} <> {account.name} | Kickoff 🚀 — 田中太郎 & José Müller"
        elif slot == _SLOT_NUL_TITLE:
            title = f"{SELLER} <> {account.name} | Discovery\x00call"
        elif internal_call:
            title = f"{SELLER} | " + rng.choice(_INTERNAL_CALL_TITLES).format(account=account.name)
        else:
            title = f"{SELLER} <> {account.name} | {call_type}"
        ctx = {
            "first": external[0].first if external else internal[-1].first,
            "account": account.name,
            "competitor": rng.choice(_COMPETITORS),
            "feature": rng.choice(_FEATURES),
            "process": rng.choice(_PROCESSES),
            "role": rng.choice(_ROLES),
            "seats": str(rng.choice((25, 40, 80, 150, 300, 1200))),
            "pct": str(rng.randint(15, 45)),
            "weekday": rng.choice(_WEEKDAYS),
            "month": rng.choice(_MONTHS),
        }

        day = BASE_INSTANT - timedelta(days=rng.randint(31, 180))
        scheduled = day.replace(hour=rng.randint(13, 22), minute=rng.choice((0, 15, 30, 45)))
        started = _sub_millisecond(
            scheduled
            + timedelta(seconds=rng.randint(-60, 420), microseconds=rng.randrange(1, 10**6))
        )
        if slot == _SLOT_MIN_STARTED:
            started = MIN_TIMESTAMP
        if slot == _SLOT_MAX_SCHEDULED:
            scheduled = MAX_TIMESTAMP

        transcript: list[dict[str, Any]] = []
        last_end_ms, talk_ms = rng.randint(60_000, 600_000), {s.id: 0 for s in speakers}
        if call_id is not None:
            transcript, last_end_ms, talk_ms = self._transcript(
                slot, call_id, speakers, internal_call, ctx
            )
        system = rng.choice(_SYSTEMS)
        custom_data: dict[str, Any] | None = None
        if rng.random() < 0.4:
            custom_data = {
                "crm_account_id": account.id,
                "region": rng.choice(("EMEA", "AMER", "APAC")),
                "tags": rng.sample(("q4", "priority", "renewal", "upsell", "at-risk"), 2),
                "attendees_expected": len(speakers),
            }
        self.emit(
            "call",
            deleted=slot == _SLOT_SOFT_DELETED,
            id=call_id,
            workspace_id=WORKSPACE_ID if rng.random() < 0.9 else SECONDARY_WORKSPACE_ID,
            title=title,
            url=f"https://app.gong.io/call?id={call_id}" if call_id else None,
            scheduled=scheduled,
            started=started,
            duration=math.ceil(last_end_ms / 1000) + rng.randint(5, 90),
            direction="Conference" if rng.random() < 0.8 else rng.choice(("Inbound", "Outbound")),
            scope="Internal" if internal_call else "External",
            media="Video" if rng.random() < 0.85 else "Audio",
            purpose=purpose if rng.random() < 0.3 else None,
            system=system,
            language="eng" if slot == _SLOT_NON_ASCII else rng.choice(_LANGUAGES),
            primary_user_id=internal[0].user_id,
            is_private=rng.random() < 0.05,
            meeting_url=self._meeting_url(system),
            custom_data=custom_data,
            calendar_event_id=self.hex_id(26) if rng.random() < 0.9 else None,
            client_unique_id=(
                _NULL_ID_CALL_MARKER
                if call_id is None
                else f"{_ascii_slug(system)}-{self.hex_id(12)}"
            ),
        )
        if call_id is None:
            # A row without a key cannot be referenced by any child row.
            return

        for speaker in speakers:
            self.emit(
                "call_speaker",
                deleted=speaker.id == _DELETED_SPEAKER_ID,
                id=speaker.id,
                call_id=call_id,
                user_id=speaker.person.user_id if speaker.internal else None,
                talk_time=round(talk_ms[speaker.id] / 1000, 3),
            )
        if slot == _SLOT_NULL_SPEAKER_ID:
            self.emit("call_speaker", id=None, call_id=call_id, user_id=None, talk_time=0.0)
        for speaker in speakers:
            self._participant(call_id, speaker.person, speaker.internal, speaker.id)
        self._silent_participants(call_id, account, speakers)

        for row in transcript:
            self.emit("transcript", **row)
        if slot == _SLOT_NULL_TRANSCRIPT_KEYS:
            for key_call_id, key_index in ((None, 0), (call_id, None)):
                self.emit(
                    "transcript",
                    call_id=key_call_id,
                    index=key_index,
                    speaker_id=speakers[0].id,
                    topic="Next Steps",
                    sentence=[{"start": 1000, "end": 2500, "text": "Let's wrap up here."}],
                )

        self._context(slot, call_id, account)

    def _meeting_url(self, system: str) -> str:
        """Return a plausible join link for a conferencing system."""
        rng = self.rng
        if system == "Zoom":
            return f"https://acme.zoom.us/j/{rng.randrange(10**9, 10**10)}"
        if system == "Google Meet":
            letters = "abcdefghijkmnopqrstuvwxyz"
            code = "-".join("".join(rng.choices(letters, k=k)) for k in (3, 4, 3))
            return f"https://meet.google.com/{code}"
        if system == "Microsoft Teams":
            return f"https://teams.microsoft.com/l/meetup-join/{self.hex_id(24)}"
        return f"https://acme.webex.com/meet/{rng.randrange(10**8, 10**9)}"

    def _participant(
        self, call_id: str, person: _Person, internal: bool, speaker_id: str | None
    ) -> None:
        """Emit one call_participant row."""
        self.emit(
            "call_participant",
            id=self.gong_id(),
            call_id=call_id,
            user_id=person.user_id if internal else None,
            speaker_id=speaker_id,
            name=person.name,
            email_address=person.email,
            affiliation="Internal" if internal else "External",
            title=person.title,
            phone_number=person.phone,
        )

    def _silent_participants(
        self, call_id: str, account: _Account, speakers: list[_Speaker]
    ) -> None:
        """Emit 0-2 invitees who never spoke (speaker_id NULL)."""
        present = {s.person.email for s in speakers}
        for _ in range(self.rng.randint(0, 2)):
            roll = self.rng.random()
            if roll < 0.2:
                # Dial-ins Gong cannot match to anyone show up as 'Unknown'.
                number = self.phone()
                self.emit(
                    "call_participant",
                    id=self.gong_id(),
                    call_id=call_id,
                    user_id=None,
                    speaker_id=None,
                    name=number,
                    email_address=None,
                    affiliation="Unknown",
                    title=None,
                    phone_number=number,
                )
                continue
            internal = roll < 0.6
            pool = self.users if internal else account.contacts
            candidates = [p for p in pool if p.email not in present]
            if candidates:
                person = self.rng.choice(candidates)
                present.add(person.email)
                self._participant(call_id, person, internal, None)

    def _context(self, slot: int, call_id: str, account: _Account) -> None:
        """Emit CRM objects linked to a call (~60% opportunities, ~30% account)."""
        link_opps = slot == _SLOT_NON_ASCII or self.rng.random() < 0.6
        link_account = slot == _SLOT_NON_ASCII or self.rng.random() < 0.3
        if link_opps and account.opportunities:
            k = min(self.rng.randint(1, 2), len(account.opportunities))
            for opp in self.rng.sample(account.opportunities, k):
                self.emit(
                    "call_context_integration",
                    call_id=call_id,
                    object_type="Opportunity",
                    object_id=opp.id,
                    name=opp.name,
                    value=opp.stage,
                )
        if link_account:
            self.emit(
                "call_context_integration",
                call_id=call_id,
                object_type="Account",
                object_id=account.id,
                name=account.name,
                value=account.kind,
            )

    def _email_body(
        self, paragraphs: list[str], as_html: bool, to_first: str, sender: _Person
    ) -> str:
        """Render an email body as plain text or simple HTML."""
        signoff = self.rng.choice(_SIGNOFFS)
        if not as_html:
            parts = [f"Hi {to_first},", *paragraphs, f"{signoff},\n{sender.first}"]
            return "\n\n".join(parts)
        items = "".join(f"<p>{html.escape(p, quote=True)}</p>" for p in paragraphs)
        return (
            f"<html><body><p>Hi {html.escape(to_first)},</p>{items}"
            f"<p>{signoff},<br>{html.escape(sender.first)}<br>"
            f"{html.escape(sender.title)}&nbsp;&middot;&nbsp;{html.escape(SELLER)}</p>"
            "</body></html>"
        )

    def _email_context(self, email_id: str, account: _Account) -> list[dict[str, Any]] | None:
        """Gong's CRM context of an email: its account and (mostly) one opportunity."""
        # A generator of its own, so adding context did not move any other random draw.
        rng = random.Random(email_id)
        if rng.random() < 0.3:
            return None
        objects: list[dict[str, str]] = [{"objectType": "Account", "objectId": account.id}]
        if account.opportunities and rng.random() < 0.8:
            opp = rng.choice(account.opportunities)
            objects.append({"objectType": "Opportunity", "objectId": opp.id})
        return [{"system": "Salesforce", "objects": objects}]

    def build_emails(self) -> None:
        """Emit ~1 email per call with one sender and 1-5 recipients."""
        rng = self.rng
        fixed = [
            _EMAIL_DELETED, _EMAIL_NUL_BODY, _EMAIL_DUPLICATE_RECIPIENT, _EMAIL_MULTIBYTE,
            _EMAIL_HTML,
        ]  # fmt: skip
        self._seen_ids.update(fixed)
        last_in_account: dict[str, tuple[str, str, datetime]] = {}
        for i in range(100 * self.scale):
            email_id = fixed[i] if i < len(fixed) else self.hex_id(32)
            account = rng.choice(self.accounts)
            outbound = rng.random() < 0.65
            senders, receivers = (
                (self.users, account.contacts) if outbound else (account.contacts, self.users)
            )
            sender = rng.choice(senders)
            # First recipient is always on the other side; the rest mix sides.
            recipients = [("to", rng.choice(receivers))]
            pool = [p for p in [*account.contacts, *rng.sample(self.users, 3)] if p != sender]
            for _ in range(rng.randint(0, 4)):
                options = [p for p in pool if all(p.email != r.email for _, r in recipients)]
                if not options:
                    break
                kind = rng.choices(("to", "cc", "bcc"), weights=(5, 4, 1))[0]
                recipients.append((kind, rng.choice(options)))
            ctx = {
                "seller": SELLER,
                "account": account.name,
                "n": str(rng.randint(2, 6)),
                "feature": rng.choice(_FEATURES),
                "weekday": rng.choice(_WEEKDAYS),
                "seats": str(rng.choice((25, 40, 80, 150, 300))),
                "amount": f"{rng.randrange(20, 400) * 1000:,}",
                "role": rng.choice(_ROLES),
                "competitor": rng.choice(_COMPETITORS),
            }
            previous = last_in_account.get(account.id)
            headers: dict[str, Any] = {}
            # Replies only to older mail, so no reply lands after BASE_INSTANT.
            reply = previous is not None and previous[2] < BASE_INSTANT - timedelta(days=4)
            if previous is not None and reply and rng.random() < 0.35:
                thread_id, base_subject, prev_sent = previous
                subject = f"Re: {base_subject}"
                sent_at = _sub_millisecond(
                    prev_sent
                    + timedelta(hours=rng.randint(1, 72), microseconds=rng.randrange(10**6))
                )
                headers["In-Reply-To"] = f"<{thread_id}@mail.{SELLER_DOMAIN}>"
                headers["References"] = [f"<{thread_id}@mail.{SELLER_DOMAIN}>"]
            else:
                thread_id = self.hex_id(16)
                base_subject = rng.choice(_EMAIL_SUBJECTS).format_map(ctx)
                subject = base_subject
                sent_at = self.instant(BASE_INSTANT - timedelta(days=180), BASE_INSTANT)
            last_in_account[account.id] = (thread_id, base_subject, sent_at)

            source = _OUTBOUND_PARAGRAPHS if outbound else _INBOUND_PARAGRAPHS
            paragraphs = [p.format_map(ctx) for p in rng.sample(source, rng.randint(1, 3))]
            as_html = rng.random() < 0.5
            if email_id == _EMAIL_NUL_BODY:
                paragraphs[0] = "Pasted from the PDF:\x00 pricing table follows."
                as_html = False
            body = self._email_body(paragraphs, as_html, recipients[0][1].first, sender)
            if email_id == _EMAIL_MULTIBYTE:
                body = MULTIBYTE_BODY
            elif email_id == _EMAIL_HTML:
                body = HTML_BODY
            elif email_id == _EMAIL_DUPLICATE_RECIPIENT:
                # The same person twice, as cc in capitals: one address in the target.
                first = recipients[0][1]
                recipients.append(("cc", dataclasses.replace(first, email=first.email.upper())))
            sender_domain = sender.email.split("@", 1)[1]
            headers = {
                "Message-ID": f"<{self.hex_id(20)}@mail.{sender_domain}>",
                "From": f"{sender.name} <{sender.email}>",
                "To": ", ".join(r.email for kind, r in recipients if kind == "to"),
                "Content-Type": f"text/{'html' if as_html else 'plain'}; charset=UTF-8",
                **headers,
            }
            self.emit(
                "email",
                deleted=email_id == _EMAIL_DELETED,
                id=email_id,
                subject=subject,
                sent_at=sent_at,
                body=body,
                thread_id=thread_id,
                direction="Outbound" if outbound else "Inbound",
                headers=headers,
                context=self._email_context(email_id, account),
            )
            self.emit(
                "email_sender", email_id=email_id, email_address=sender.email, name=sender.name
            )
            for kind, person in recipients:
                self.emit(
                    "email_recipient",
                    email_id=email_id,
                    email_address=person.email,
                    name=person.name,
                    type=kind,
                )


def generate(scale: int = 1, seed: int = 7) -> dict[str, list[dict[str, Any]]]:
    """Return deterministic demo rows (Python values) for every source table."""
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    gen = _Generator(scale, seed)
    gen.build_users()
    gen.build_accounts()
    gen.build_opportunities()
    gen.build_calls()
    gen.build_emails()
    # Last among the random tables: its draws move no row of the tables before it.
    gen.build_contacts()
    demo_edge_cases.add(
        gen.tables, BASE_INSTANT - timedelta(days=10), [_OPP_IS_DELETED, _OPP_FIVETRAN_DELETED]
    )
    return gen.tables


def _timestamp_text(value: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with microseconds."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}; TIMESTAMP values must be timezone-aware")
    t = value.astimezone(UTC)
    # Hand-formatted: strftime does not zero-pad years below 1000 on every platform.
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T"
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond:06d}Z"
    )


def _json_value(column_type: str, value: Any) -> Any:
    """Convert one Python value to what insert_rows_json expects for its column type."""
    if value is None:
        return None
    if column_type == "JSON":
        # The emulator only accepts JSON columns as JSON text, never as nested objects.
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, str):
        return value
    if column_type == "TIMESTAMP" and isinstance(value, datetime):
        return _timestamp_text(value)
    if column_type == "DATE" and isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    if column_type in ("NUMERIC", "BIGNUMERIC") and isinstance(value, Decimal | int):
        # Fixed-point text: str(Decimal) may use exponent notation, and floats lose cents.
        return format(value, "f") if isinstance(value, Decimal) else str(value)
    if column_type in ("TIMESTAMP", "DATE", "NUMERIC", "BIGNUMERIC"):
        raise TypeError(f"cannot load {type(value).__name__} {value!r} into a {column_type}")
    return value


def to_json_row(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a generated row to insert_rows_json form (JSON columns take Python values)."""
    types = fivetran_schemas.column_types(table)
    out: dict[str, Any] = {}
    for column, value in row.items():
        if column not in types:
            raise ValueError(f"table {table!r} has no column {column!r}")
        out[column] = _json_value(types[column], value)
    return out


def _chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Split JSON-ready rows into requests below MAX_INSERT_BYTES."""
    batch: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        # Default json.dumps escapes non-ASCII exactly as the client does on the wire.
        row_bytes = len(json.dumps(row)) + _ROW_WRAPPER_BYTES
        if batch and size + row_bytes > MAX_INSERT_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += row_bytes
    if batch:
        yield batch


def seed_bigquery(
    client: bigquery.Client,
    project: str,
    datasets: dict[str, str],
    data: dict[str, list[dict[str, Any]]],
) -> dict[str, int]:
    """Create the source tables and stream `data` into them; return rows loaded per table."""
    unknown = sorted(set(data) - set(TABLES))
    if unknown:
        raise ValueError(f"unknown tables: {', '.join(unknown)}")
    fivetran_schemas.create_tables(client, project, datasets)
    # Short retry so a rejected row fails within ~30 s instead of the 600 s default.
    retry = bigquery.DEFAULT_RETRY.with_timeout(INSERT_RETRY_SECONDS)
    loaded: dict[str, int] = {}
    for table in TABLES:
        if table not in data:
            continue
        started = time.monotonic()
        full_id = fivetran_schemas.table_id(project, datasets, table)
        json_rows = [to_json_row(table, row) for row in data[table]]
        count = 0
        for batch in _chunks(json_rows):
            try:
                errors = client.insert_rows_json(
                    full_id, batch, retry=retry, timeout=INSERT_TIMEOUT_SECONDS
                )
            except GoogleAPIError as exc:
                # The emulator answers a malformed value with HTTP 500 rather than
                # per-row errors, so name the table here too.
                raise RuntimeError(f"insert into {full_id} failed: {exc}") from exc
            if errors:
                raise RuntimeError(
                    f"insert into {full_id} failed for {len(errors)} rows; first: {errors[0]}"
                )
            count += len(batch)
        loaded[table] = count
        logger.info("loaded %d rows into %s in %.2fs", count, full_id, time.monotonic() - started)
    return loaded
