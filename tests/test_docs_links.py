"""Every relative link and #anchor in README.md and docs/**/*.md resolves.

Anchors follow GitHub's rule for headings (lower case, punctuation dropped, spaces to hyphens, repeated
headings numbered -1, -2, ...) plus explicit ``<a id="...">`` / ``<a name="...">`` tags. Links inside fenced
code blocks and inline code spans are not links and are skipped; absolute URLs are not fetched.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"", re.IGNORECASE)
_INLINE_CODE = re.compile(r"`+[^`]*`+")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def doc_files(root: Path = ROOT) -> list[Path]:
    """README.md and every markdown file under docs/."""
    files = [root / "README.md"] if (root / "README.md").exists() else []
    return files + sorted((root / "docs").rglob("*.md"))


def prose_lines(text: str) -> list[str]:
    """The lines of a markdown text outside fenced code blocks."""
    out, fence = [], None
    for line in text.splitlines():
        m = _FENCE.match(line)
        if m:
            if fence is None:
                fence = m.group(1)
            elif m.group(1) == fence:
                fence = None
            continue
        if fence is None:
            out.append(line)
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading text (before de-duplication)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags vanish
    text = text.strip().lower()
    kept = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a markdown text defines."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for line in prose_lines(text):
        out.update(_HTML_ANCHOR.findall(line))
        m = _HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(text: str) -> list[str]:
    """Link targets in a markdown text (inline links, images, reference definitions)."""
    lines = prose_lines(text)
    out = [m.group(1) for m in map(_REF_DEF.match, lines) if m]
    # a link's text may wrap onto the next line, so search the whole prose at once
    out.extend(_LINK.findall(_INLINE_CODE.sub("", "\n".join(lines))))
    return out


def broken_links(files: list[Path]) -> list[str]:
    """'file: target (why)' for every relative link or anchor that does not resolve."""
    cache: dict[Path, set[str]] = {}

    def anchors_of(path: Path) -> set[str]:
        if path not in cache:
            cache[path] = anchors(path.read_text(encoding="utf-8"))
        return cache[path]

    bad = []
    for f in files:
        for target in links(f.read_text(encoding="utf-8")):
            if _SCHEME.match(target):
                continue  # http(s), mailto, ...: not checked offline
            path_part, _, anchor = target.partition("#")
            dest = (f.parent / path_part).resolve() if path_part else f
            if not dest.exists():
                bad.append(f"{f.relative_to(ROOT) if f.is_relative_to(ROOT) else f}: {target} (no such file)")
                continue
            if anchor and dest.suffix == ".md" and anchor not in anchors_of(dest):
                bad.append(f"{f.relative_to(ROOT) if f.is_relative_to(ROOT) else f}: {target} (no such anchor)")
    return bad


@pytest.mark.parametrize(
    "heading, expected",
    [
        ("N = 60000: exact NTK predictor on the full MNIST training set",
         "n--60000-exact-ntk-predictor-on-the-full-mnist-training-set"),
        ("Unrolled shallow layer loop (2026-11-21, session 4): current numbers",
         "unrolled-shallow-layer-loop-2026-11-21-session-4-current-numbers"),
        ('Stored kernel: `solver="stored_cg"` (large N, e.g. all 60000 MNIST images)',
         "stored-kernel-solverstored_cg-large-n-eg-all-60000-mnist-images"),
        ("Part II: label noise", "part-ii-label-noise"),
        ("See [the API](api.md) now", "see-the-api-now"),
    ],
)
def test_slug_follows_github(heading, expected):
    assert slug(heading) == expected


def test_checker_finds_broken_links_and_ignores_code(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("# Title\n## Same\n## Same\n<a id=\"custom\"></a>\n")
    (tmp_path / "docs" / "a.md").write_text(
        "[ok](b.md#title) [dup](b.md#same-1) [html](b.md#custom) [self](#here) [web](https://x.invalid/y)\n"
        "# Here\n"
        "[missing file](c.md) [missing anchor](b.md#nope) ![img](pic.png) [wrapped\nlink](d.md)\n"
        "`[in code](nowhere.md)`\n```\n[in fence](nowhere.md)\n```\n"
    )
    bad = broken_links(doc_files(tmp_path))
    assert len(bad) == 4, bad
    assert any("c.md (no such file)" in b for b in bad)
    assert any("d.md (no such file)" in b for b in bad)
    assert any("b.md#nope (no such anchor)" in b for b in bad)
    assert any("pic.png (no such file)" in b for b in bad)


def test_every_relative_link_and_anchor_resolves():
    files = doc_files()
    assert any(f.name == "science.md" for f in files)
    bad = broken_links(files)
    assert not bad, "broken links:\n" + "\n".join(bad)


def test_docs_do_not_cite_the_internal_spec():
    # the project's science page is docs/science.md; the internal spec is not part of the docs
    hits = [f"{f.relative_to(ROOT)}:{i}" for f in doc_files() for i, line in
            enumerate(f.read_text(encoding="utf-8").splitlines(), 1) if "SCIENCE.md" in line]
    assert not hits, hits


_SCIENCE_REF = re.compile(r"docs/science\.md#([A-Za-z0-9_-]+)")
_CODE_DIRS = ("nwcorrupt", "tests", "benchmarks")
_SPEC_EXEMPT: tuple[str, ...] = ()


def code_files(root: Path = ROOT) -> list[Path]:
    """The Python sources and TOML configs under nwcorrupt/, tests/ and benchmarks/."""
    return sorted(f for d in _CODE_DIRS for pattern in ("*.py", "*.toml") for f in (root / d).rglob(pattern))


def test_code_cites_existing_sections_of_the_science_page():
    known = anchors((ROOT / "docs" / "science.md").read_text(encoding="utf-8"))
    refs = [(f, a) for f in code_files() for a in _SCIENCE_REF.findall(f.read_text(encoding="utf-8"))]
    assert len(refs) >= 15  # the studies, data, corruption and prototype modules cite it
    bad = [f"{f.relative_to(ROOT)}: #{a}" for f, a in refs if a not in known]
    assert not bad, "no such section in docs/science.md:\n" + "\n".join(bad)


def test_code_does_not_cite_the_internal_spec():
    this = Path(__file__).resolve()
    hits = [
        f"{f.relative_to(ROOT)}:{i}" for f in code_files() if f.resolve() != this
        and not str(f.relative_to(ROOT)).startswith(_SPEC_EXEMPT)
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1) if "SCIENCE.md" in line
    ]
    assert not hits, hits
