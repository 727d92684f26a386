"""A stand-in for Pub/Sub's server-side subscription filter: the subset of its language we use.

Google's Pub/Sub emulator accepts a subscription's `filter` but delivers every message
(seen here with the emulator of Google Cloud SDK 528), so the platform tests apply the filter
themselves. The language, from "Filter messages from a subscription" in Pub/Sub's docs:
`attributes:KEY` (the attribute exists), `attributes.KEY = "VALUE"` and `!=`, `NOT`, `AND`,
`OR` and parentheses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_TOKEN = re.compile(
    r"\s*(?:(?P<op>\(|\)|!=|=)|(?P<word>NOT|AND|OR)\b|attributes(?P<has>:)(?P<key>\w+)"
    r'|attributes\.(?P<name>\w+)|"(?P<text>[^"]*)")'
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    at = 0
    while at < len(text.rstrip()):
        found = _TOKEN.match(text, at)
        if found is None:
            raise ValueError(f"unsupported filter at {text[at:]!r}")
        at = found.end()
        if found["op"] or found["word"]:
            out.append(("op", found["op"] or found["word"]))
        elif found["has"]:
            out.append(("has", found["key"]))
        elif found["name"]:
            out.append(("attr", found["name"]))
        else:
            out.append(("text", found["text"]))
    return out


def matches(text: str, attributes: Mapping[str, str]) -> bool:
    """Whether a message with these attributes passes the filter."""
    tokens = _tokens(text)

    def expr(i: int) -> tuple[bool, int]:
        value, i = term(i)
        while i < len(tokens) and tokens[i] == ("op", "OR"):
            right, i = term(i + 1)
            value = value or right
        return value, i

    def term(i: int) -> tuple[bool, int]:
        value, i = factor(i)
        while i < len(tokens) and tokens[i] == ("op", "AND"):
            right, i = factor(i + 1)
            value = value and right
        return value, i

    def factor(i: int) -> tuple[bool, int]:
        kind, word = tokens[i]
        if (kind, word) == ("op", "NOT"):
            value, i = factor(i + 1)
            return not value, i
        if (kind, word) == ("op", "("):
            value, i = expr(i + 1)
            return value, i + 1  # the closing parenthesis
        if kind == "has":
            return word in attributes, i + 1
        if kind == "attr":
            (_, op), (_, literal) = tokens[i + 1], tokens[i + 2]
            equal = attributes.get(word) == literal
            return (equal if op == "=" else not equal), i + 3
        raise ValueError(f"unexpected {word!r} in {text!r}")

    value, end = expr(0)
    if end != len(tokens):
        raise ValueError(f"trailing tokens in {text!r}")
    return value
