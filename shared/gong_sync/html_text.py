"""The visible text of an email body: HTML reduced to what a reader sees, spaces collapsed.

The stdlib's HTMLParser is the reference, and it costs some 5 µs a tag in pure Python: most
of an email's mapping. Most bodies are plain markup (tags with quoted attributes, entities, a
doctype, comments, a style sheet), which one regular expression tokenizes the way every
HTMLParser release does; `_quick_text` drives the same handlers from it and gives up at the
first thing outside that subset (a processing instruction, a stray `</`, markup inside a
style sheet, a bare attribute value), which then goes to the parser. Whatever the path, the
text is the same, as tests/test_html_text.py checks against the parser on generated bodies.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from html.parser import HTMLParser

# Reading stops once the text is long enough, so a 10 MB body costs what a short one does.
_CHUNK_CHARS = 4096
# A body is HTML when its start holds a doctype, a comment, or a tag of an HTML element; the
# quick path reads no further than this either.
_DETECT_CHARS = 65536


def _names(text: str) -> frozenset[str]:
    """Tag names from a space-separated list."""
    return frozenset(text.split())


# Every element of the WHATWG HTML standard, plus the obsolete ones mail clients still send.
_HTML_ELEMENTS = _names(
    "a abbr address area article aside audio b base bdi bdo big blockquote body br button"
    " canvas caption center cite code col colgroup data datalist dd del details dfn dialog div"
    " dl dt em embed fieldset figcaption figure font footer form h1 h2 h3 h4 h5 h6 head header"
    " hgroup hr html i iframe img input ins kbd label legend li link main map mark menu meta"
    " meter nav noscript object ol optgroup option output p picture pre progress q rp rt ruby s"
    " samp script search section select slot small source span strike strong style sub summary"
    " sup table tbody td template textarea tfoot th thead time title tr track tt u ul var video"
    " wbr"
)
_MARKUP = re.compile(r"<(?:!doctype\s+html|!--|/?([a-z][a-z0-9]*)(?=[\s/>]))", re.I)
# Text inside these is not what a reader sees.
_HIDDEN = frozenset({"script", "style", "title", "head"})
# What may stand in <head>: any other start tag opens the body, as a browser does.
_HEAD_CONTENT = frozenset(
    {"base", "link", "meta", "noscript", "script", "style", "template", "title"}
)
# Tags that run on within a line; every other tag separates words.
_INLINE = _names(
    "a abbr b bdi bdo big cite code data dfn em font i kbd mark q s samp small span strike"
    " strong sub sup time tt u var"
)


def is_html(body: str) -> bool:
    """Whether the body's start holds HTML markup (a doctype, a comment or an element tag)."""
    for found in _MARKUP.finditer(body, 0, _DETECT_CHARS):
        name = found.group(1)
        if name is None or name.lower() in _HTML_ELEMENTS:
            return True
    return False


class _TextExtractor(HTMLParser):
    """Collect an HTML document's visible text, entities decoded, hidden elements skipped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._open: list[str] = []  # hidden elements we are inside, innermost last

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._open == ["head"] and tag not in _HEAD_CONTENT:
            self._open.clear()  # an unclosed <head>: its content ends where the body starts
        if tag in _HIDDEN:
            self._open.append(tag)
        elif tag not in _INLINE:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _INLINE:  # <br/>: a separator, never a hidden element left open
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._open:
            del self._open[len(self._open) - 1 - self._open[::-1].index(tag) :]
        elif tag not in _INLINE:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._open:
            self.parts.append(data)


# HTML's own spaces: Python's \s also matches \v, \xa0 and others, which end no tag name.
_SP = "[ \t\n\r\f]"
# A tag name every parser reads alike (Outlook's <o:p> among them).
_NAME = "[a-zA-Z][-.a-zA-Z0-9:_]*"
# A quoted value holds no < or >; a bare one no / and is followed by a space or the tag's end
# (parsers disagree on whether `<a href=/x/>` ends in `/>`).
_VALUE = r"(?:\"[^\"<>]*\"|'[^'<>]*'|[-a-zA-Z0-9_.:#%]+(?=[ \t\n\r\f>]))"
_ATTRIBUTE = rf"{_SP}+[a-zA-Z_:][-a-zA-Z0-9_:.]*(?:{_SP}*={_SP}*{_VALUE})?"
_TOKEN = re.compile(
    rf"<(?:(?P<start>{_NAME})(?:{_ATTRIBUTE})*{_SP}*(?P<empty>/?)>"
    rf"|/(?P<end>{_NAME}){_SP}*>"
    r"|!--(?P<comment>.*?)-->"
    r"|![dD][oO][cC][tT][yY][pP][eE][^<>]*>"
    r"|(?P<text>[^a-zA-Z/!?]))",
    re.S,
)
# Elements whose content is raw text (script, style) or, in newer parsers, escapable raw text
# (title, textarea): read only when that content holds no `<` at all, as every parser agrees.
_RAW = frozenset({"script", "style", "title", "textarea"})
# Elements newer parsers also read as raw text; the quick path leaves them to the parser.
_REFUSED = frozenset({"xmp", "iframe", "noembed", "noframes", "noscript", "plaintext"})


def _quick_text(body: str, limit: int | None) -> str | None:
    """The text `plain_text` gives, from the regular tokenizer; None where it gives up."""
    handler = _TextExtractor()
    parts = handler.parts
    window = body[:_DETECT_CHARS].replace("\x00", "")
    whole = len(body) <= _DETECT_CHARS
    pos, known, check_at = 0, 0, limit  # known: data read so far, an upper bound on the text
    while True:
        at = window.find("<", pos)
        if at < 0 and not whole:  # its text may run on past the window: a cut entity
            return None
        data = window[pos:] if at < 0 else window[pos:at]
        if data:
            handler.handle_data(unescape(data))
            known += len(data)
        if limit is not None and check_at is not None and known > check_at:
            if (text := _known_text(parts, limit)) is not None:
                return text
            check_at = 2 * known  # collapse again only once twice as much has been read
        if at < 0:
            return _collapsed(parts)
        pos = _token(window, at, handler)
        if pos < 0:
            return None


def _collapsed(parts: list[str]) -> str:
    """The parts as one line: runs of spaces one space, none at either end."""
    return " ".join("".join(parts).split())


def _known_text(parts: list[str], limit: int) -> str | None:
    """More than `limit` characters of the text, if the parts hold them: a prefix of it.

    The collapsed start of the parts is a prefix of the collapsed whole, so only a little
    more than the limit is collapsed, unless the text is mostly spaces.
    """
    raw = "".join(parts)
    for size in (limit + limit // 4 + 8, len(raw)):
        text = " ".join(raw[:size].split())
        if len(text) > limit:
            return text
    return None


def _token(window: str, at: int, handler: _TextExtractor) -> int:
    """Hand the markup at `at` to the handler; where the text after it starts, or -1."""
    found = _TOKEN.match(window, at)
    if found is None:
        return -1
    if (name := found["start"]) is not None:
        name = name.lower()
        if name in _REFUSED:
            return -1
        if found["empty"]:
            if name in _RAW:
                return -1
            handler.handle_startendtag(name, [])
            return found.end()
        handler.handle_starttag(name, [])
        return _raw_content(window, found.end(), name, handler) if name in _RAW else found.end()
    if (name := found["end"]) is not None:
        handler.handle_endtag(name.lower())
    elif (comment := found["comment"]) is not None:
        # `--` inside, or a comment of `>` or `->`: parsers of different years end it elsewhere.
        if "--" in comment or comment.endswith("-") or comment.startswith((">", "->")):
            return -1
    elif found["text"] is not None:  # `3 < 4`: the < is text
        handler.handle_data("<")
        return at + 1
    return found.end()


def _raw_content(window: str, start: int, name: str, handler: _TextExtractor) -> int:
    """Read a raw-text element's content and end tag; -1 unless no `<` precedes that tag."""
    close = window.find("<", start)
    found = _TOKEN.match(window, close) if close >= 0 else None
    if found is None or (found["end"] or "").lower() != name:
        return -1
    if content := window[start:close]:
        # script and style hold raw text, title and textarea decoded text: all hidden but one
        handler.handle_data(content if name in ("script", "style") else unescape(content))
    handler.handle_endtag(name)
    return found.end()


def _chunks(body: str) -> Iterator[str]:
    for start in range(0, len(body), _CHUNK_CHARS):
        yield body[start : start + _CHUNK_CHARS].replace("\x00", "")


def _read_text(body: str, limit: int | None, parser: _TextExtractor | None) -> str:
    """The text, fed chunk by chunk to the parser (or taken as it is without one)."""
    parts: list[str] = parser.parts if parser else []
    for chunk in _chunks(body):
        if parser:
            parser.feed(chunk)
        else:
            parts.append(chunk)
        if (
            limit is not None
            and sum(map(len, parts)) > limit
            and (text := _known_text(parts, limit)) is not None
        ):
            return text
    if parser:
        parser.close()
    return _collapsed(parts)


def plain_text(body: str, limit: int | None = None) -> str:
    """The body as one line of plain text: HTML reduced to its visible text, spaces collapsed.

    With a limit, reading stops once more than `limit` characters of text are known.
    """
    if not is_html(body):
        return _read_text(body, limit, None)
    quick = _quick_text(body, limit)
    return quick if quick is not None else _read_text(body, limit, _TextExtractor())
