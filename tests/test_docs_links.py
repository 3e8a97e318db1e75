"""README.md and docs/*.md link only inside the repository, and every link resolves.

The docs must stand alone in a checkout (or a tarball of it, offline): so no link
may leave the repository, neither an absolute URL (http, https, file, ...) nor
an absolute path nor a relative path that climbs out of it (``../shared/...``),
and every relative link must name an existing file, and its ``#anchor`` an
existing heading. To cite something outside, name it in prose.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# [text](target "title"), ![alt](target), [label]: target, <a href="...">, <img src="...">, <https://...>
_INLINE = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
_HTML = re.compile(r"""<(?:a|img)\b[^>]*\b(?:href|src)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_AUTOLINK = re.compile(r"<([a-z][a-z0-9+.-]*:[^>\s]+)>", re.IGNORECASE)
_BARE_URL = re.compile(r"\b(?:https?|ftp|file)://[^\s)>\]`]+", re.IGNORECASE)
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def _prose(text: str) -> str:
    """The page without fenced code blocks (shell examples are not links)."""
    return _FENCE.sub("", text)


def links(text: str) -> list[str]:
    text = _prose(text)
    found = [m.group(1) for rx in (_INLINE, _REFERENCE, _HTML, _AUTOLINK) for m in rx.finditer(text)]
    # a URL written out in prose, outside inline code, would be rendered as a link too
    rest = _AUTOLINK.sub("", _INLINE.sub("", re.sub(r"`[^`]*`", "", text)))
    found += [m.group(0) for m in _BARE_URL.finditer(rest)]
    return found


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*|_(?=\w)|(?<=\w)_", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", _prose(text), re.MULTILINE)}


def problems(page: Path, text: str | None = None) -> list[str]:
    """What is wrong with each link of ``page`` (its ``text``, if given, instead of the file's)."""
    text = page.read_text() if text is None else text
    out = []
    for target in links(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, file:, mailto:, ...
            out.append(f"{target}: an absolute URL leaves the repository")
            continue
        path, _, anchor = target.partition("#")
        if path.startswith("/"):
            out.append(f"{target}: an absolute path is not inside the repository")
            continue
        resolved = (page.parent / path).resolve()
        if REPO not in (resolved, *resolved.parents):
            out.append(f"{target}: climbs out of the repository")
        elif path and not resolved.exists():
            out.append(f"{target}: no such file")
        elif anchor and (not path or resolved.suffix == ".md"):
            headings = anchors(text if not path else resolved.read_text())
            if anchor not in headings:
                out.append(f"{target}: {resolved.name if path else page.name} has no heading #{anchor}")
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_stays_in_the_repository_and_resolves(page):
    assert problems(page) == []


def test_the_checker_catches_links_that_leave():
    # checked as if it were a page of docs/, where relative links resolve as they would there
    text = ("# Title\n\nSee [a](../../shared/notes.md), [b](https://example.org/x), [c](/etc/passwd),\n"
            "[d](missing.md), [e](#nowhere), [f](scenarios.md#the-file), ![g](img/peer-speed.png), [h](#title)\n"
            "and https://example.com/bare, but not `https://in.code/x`.\n\n"
            "```sh\ncurl https://in.a.fence/x\n```\n")
    found = problems(REPO / "docs" / "page.md", text)
    assert [f.split(":")[0] for f in found] == ["../../shared/notes.md", "https", "/etc/passwd", "missing.md",
                                                 "#nowhere", "https"], found
