"""The quick tokenizer gives the parser's text wherever it answers, and answers on real mail."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gong_sync import html_text

# Markup of the quick path's subset: text, entities (some cut short), tags with quoted or
# plain attributes, raw-text elements without markup inside, comments and a doctype.
INSIDE = [
    "Hi", "team", "東京", "a < b", "3<4", "x>y", "&amp;", "&am", "&", "&#233;", "&#x41;",
    "&nbsp", "&lt;p&gt;", " ", "\n", "\xa0", "\v", "\x00", "\t",
    "<p>", "</p>", "<P CLASS='x'>", '<div class="a">', "<br/>", "<br />", "<img src=x.png>",
    "<td width=100 >", "<p\nclass=x>", "<b>", "</b >", "<head>", "</head>", "<body>",
    "</body>", "<meta charset=utf-8>", "<input disabled/>", "<head/>", "<li>", "<SPAN>",
    "<table><tr><td>", "</td></tr></table>", "<o:p>", "</o:p>", "<x-y>",
    "<title>T &amp; U</title>", "<style>p{color:red}</style>", "<script>x</SCRIPT >",
    "<textarea>t&lt;</textarea>", "<!-- c -->", "<!--[if mso]><p>x</p><![endif]-->", "<!---->",
    "<!DOCTYPE html>", '<!doctype html "x">',
]  # fmt: skip
# Markup it leaves to the parser: read differently by HTMLParser releases (or by the HTML
# standard), or beyond its expressions. Each is refused wherever it stands.
OUTSIDE = [
    "<br/ >", "<img src=/x/>", "<a href=http://x>", "<td width=100/>", "<span\xa0class=x>",
    "<p\vclass=x>", "</ b>", "</>", "</p foo>", "<a href='x'title='y'>", '<div class="a>b">',
    "<style>a<b</style>", "<script>if (a<b) x()</script>", "<style>", "<title>", "<title/>",
    "<noscript>n</noscript>", "<iframe>i</iframe>", "<xmp><b></xmp>", "<!-->", "<!--->",
    "<!-- a -- b -->", "<!-- a --!>", "<!-- a -", "<![CDATA[x]]>", "<?xml version='1.0'?>",
    "<!x>", "<![if !supportLists]>",
]  # fmt: skip


def _parsed(body: str) -> str:
    """The parser's text of the whole body: the reference."""
    return html_text._read_text(body, None, html_text._TextExtractor())


TEXT = st.text(st.characters(blacklist_characters="<"), max_size=4)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(INSIDE) | TEXT, min_size=1, max_size=30))
def test_within_its_subset_the_tokenizer_gives_the_parsers_text(pieces: list[str]) -> None:
    body = "".join(pieces)
    assert html_text._quick_text(body, None) == _parsed(body)


@pytest.mark.parametrize("markup", OUTSIDE)
def test_markup_beyond_the_subset_goes_to_the_parser(markup: str) -> None:
    body = f"<p>Hi {markup} there</p>"
    assert html_text._quick_text(body, None) is None
    assert html_text.plain_text(body) == _parsed(body)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(INSIDE + OUTSIDE + ["<"]) | st.text(max_size=4), max_size=30))
def test_where_the_tokenizer_answers_it_gives_the_parsers_text(pieces: list[str]) -> None:
    body = "".join(pieces)
    quick = html_text._quick_text(body, None)
    if quick is not None:
        assert quick == _parsed(body)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(INSIDE), min_size=1, max_size=30), st.integers(1, 40))
def test_with_a_limit_it_stops_at_a_prefix_of_the_parsers_text(
    pieces: list[str], limit: int
) -> None:
    body = "".join(pieces) * 3
    quick = html_text._quick_text(body, limit)
    assert quick is not None
    whole = _parsed(body)
    assert whole.startswith(quick)
    assert len(quick) > limit or quick == whole


NEWSLETTER = (
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN">\n'
    '<html xmlns="http://www.w3.org/1999/xhtml"><head>\n<meta charset="utf-8">\n'
    '<title>Your Q3 review</title>\n<style type="text/css">body { margin: 0; }\n'
    "td { font-family: Arial; }</style>\n<!--[if mso]><style>table {border:0}</style>"
    '<![endif]-->\n</head>\n<body style="margin:0">\n'
    '<table width="100%" cellpadding=0><tr><td class="hero" align=center>'
    "<h1>Hi Ana,</h1><p>Thanks for your time &amp; the notes.<br/>Pricing: &euro;10/seat."
    '</p><p><a href="https://example.com/x?y=1&amp;z=2">Review the proposal</a></p>'
    "</td></tr></table>\n</body></html>"
)


@pytest.mark.parametrize(
    "body",
    [
        NEWSLETTER,
        "<html><body><p>" + "pricing renewal " * 60 + "</p></body></html>",
        "<head><title>T</title><p>Head never closed",
        "<div>Dear team, 3 < 4</div>",
        "<p>Caf&eacute; &amp; more</p>",
    ],
)
def test_the_tokenizer_answers_for_ordinary_mail(body: str) -> None:
    quick = html_text._quick_text(body, None)
    assert quick is not None
    assert quick == _parsed(body)
    assert html_text.plain_text(body) == quick


def test_the_newsletter_reads_as_its_reader_sees_it() -> None:
    assert html_text.plain_text(NEWSLETTER) == (
        "Hi Ana, Thanks for your time & the notes. Pricing: €10/seat. Review the proposal"
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(INSIDE) | TEXT, min_size=1, max_size=30))
def test_a_body_the_parser_reads_in_several_chunks_gives_the_same_text(
    pieces: list[str],
) -> None:
    body = "".join(pieces)
    body = body * (html_text._CHUNK_CHARS // max(len(body), 1) + 2)  # past a chunk's end
    assert html_text._quick_text(body, None) == _parsed(body)
