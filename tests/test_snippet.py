"""Email snippets: HTML reduced to visible text, compared with the reference's own reading."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gong_sync import html_text
from gong_sync.sources import emails
from tests import reference

WORDS = st.sampled_from(["Hi", "team", "Zoë", "東京", "5", "€", "price,", "a < b", "x>y", "ok."])
ENTITIES = st.sampled_from(["&amp;", "&lt;", "&gt;", "&nbsp;", "&euro;", "&#233;", "&quot;"])
SPACES = st.sampled_from([" ", "\n", "\t ", ""])
TAGS = st.sampled_from(["p", "div", "td", "tr", "table", "li", "strong", "b", "em", "span",
                        "a", "h2", "section", "font", "br"])  # fmt: skip
HIDDEN = st.sampled_from(["script", "style", "title"])


@st.composite
def html_bodies(draw: Any) -> str:
    """Small HTML documents of text, entities, nested tags, hidden elements and comments."""
    parts: list[str] = []
    if draw(st.booleans()):
        parts.append("<!DOCTYPE html><html><head><title>Secret</title><style>p{}</style></head>")
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.integers(0, 5))
        if kind <= 1:
            parts.append(draw(WORDS) + draw(SPACES))
        elif kind == 2:
            parts.append(draw(ENTITIES))
        elif kind == 3:
            tag = draw(TAGS)
            attrs = ' class="x"' if draw(st.booleans()) else ""
            parts.append(f"<{tag}{attrs}>{draw(WORDS)}</{tag}>")
        elif kind == 4:
            tag = draw(HIDDEN)
            parts.append(f"<{tag}>hidden {draw(WORDS)}</{tag}>")
        else:
            parts.append("<!-- note -->")
    return "".join(parts)


@settings(max_examples=300, deadline=None)
@given(html_bodies())
def test_visible_text_equals_the_reference(body: str) -> None:
    assert html_text.plain_text(body) == reference.email_text(body)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80))
def test_plain_text_is_only_collapsed(body: str) -> None:
    if not html_text.is_html(body):
        assert html_text.plain_text(body) == " ".join(body.replace("\x00", "").split())


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ("<strong>Bold</strong> text", "Bold text"),
        ("<table><tr><td>a</td><td>b</td></tr></table>", "a b"),
        ("<style>td {color: red}</style><script>var s = 1;</script>Seen", "Seen"),
        ("<html><head><title>T</title></head><body><p>Body</p></body></html>", "Body"),
        ("<head><title>T</title><p>Head never closed", "Head never closed"),
        ("Dear team, 3 < 4 and 5 > 2", "Dear team, 3 < 4 and 5 > 2"),  # no markup: kept
        ("plain &amp; simple", "plain &amp; simple"),  # entities decode only in HTML
        ("<p>Caf&eacute; &amp; more</p>", "Café & more"),
    ],
)
def test_markup_cases(body: str, text: str) -> None:
    assert html_text.plain_text(body) == text


def _counting_feeds(monkeypatch: Any) -> list[int]:
    """The sizes of what the parser is fed from now on."""
    fed: list[int] = []
    feed = html_text._TextExtractor.feed

    def counting(self: html_text._TextExtractor, data: str) -> None:
        fed.append(len(data))
        feed(self, data)

    monkeypatch.setattr(html_text._TextExtractor, "feed", counting)
    return fed


@pytest.mark.parametrize("quick", [True, False])
def test_a_10_mb_body_is_read_only_until_the_snippet_is_full(monkeypatch: Any, quick: bool) -> None:
    fed = _counting_feeds(monkeypatch)
    # A processing instruction is beyond the quick tokenizer: at the end of the body it is
    # never reached; at its start it sends the whole body to the parser.
    head = "<html><body>" if quick else "<html><?pi?><body>"
    tail = "<?pi?>" if quick else ""
    body = head + "<p>word word word</p>" * 500_000 + tail
    assert len(body) > 10_000_000
    got = emails.snippet(body)
    assert got is not None
    assert got == ("word " * 100)[: emails.SNIPPET_CHARS]
    if quick:
        assert fed == []  # the tokenizer stopped long before the end
    else:
        assert 0 < sum(fed) < 10_000  # a few chunks, not the whole body


def test_a_10_mb_plain_body_is_read_only_until_the_snippet_is_full() -> None:
    plain = "word " * 2_500_000
    assert emails.snippet(plain) == ("word " * 100)[: emails.SNIPPET_CHARS]
