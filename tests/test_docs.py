"""Docs that stay true: every link between the repository's documents, and every `docs/x.md#y` or `README.md#y`
that code cites, points to a file and a heading that exist (anchors as GitHub makes them)."""

import re
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MARKDOWN = sorted([REPO / "README.md", REPO / "CHANGELOG.md", *(REPO / "docs").rglob("*.md")])
CODE = sorted(
    [REPO / "noxfile.py", *(p for folder in ("flowkit", "studies", "analysis", "reports", "benchmarks", "tests")
                            for p in (REPO / folder).rglob("*.py"))]
)  # fmt: skip
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
PATH_MENTION = re.compile(r"(?<![\w/.])((?:docs/[\w./-]+|README|CHANGELOG)\.md)(#[\w-]+)?")
SECTION_IN_PROSE = re.compile(
    r"(?<!\w)(?:README|[\w/-]+\.md)(?:'s)?(?:,| reports| \()\s*\(?(?:\"[A-Z]|[A-Z][a-z])[\w ]*\"?\)?"
)
"""A section cited by its title in prose (README, "OGBench"), which no test can follow: cite FILE.md#anchor."""


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a document's headings: lower case, punctuation dropped, spaces to dashes, and a
    repeated heading numbered -1, -2, ..."""
    anchors, seen = set(), Counter()
    fenced = False
    for line in markdown.splitlines():
        fenced ^= line.startswith("```")
        heading = re.match(r"#{1,6} (.+)", line) if not fenced else None
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            anchors.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
            seen[slug] += 1
    return anchors


def broken(target: Path, anchor: str, where: str) -> str | None:
    """Why the link from `where` to `target#anchor` is broken, or None."""
    if not target.exists():
        return f"{where}: {target.relative_to(REPO)} does not exist"
    if anchor and anchor not in github_anchors(target.read_text(encoding="utf-8")):
        return f"{where}: {target.relative_to(REPO)} has no heading #{anchor}"
    return None


def markdown_links(path: Path) -> list[tuple[Path, str]]:
    links = []
    for target in MARKDOWN_LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        links.append(((path.parent / file).resolve() if file else path, anchor))
    return links


def mentioned_paths(path: Path) -> list[tuple[Path, str]]:
    text = path.read_text(encoding="utf-8")
    return [(REPO / file, anchor.lstrip("#")) for file, anchor in PATH_MENTION.findall(text)]


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(REPO)))
def test_links_in_docs_point_to_files_and_headings_that_exist(path):
    where = str(path.relative_to(REPO))
    found = [broken(target, anchor, where) for target, anchor in markdown_links(path) + mentioned_paths(path)]
    assert not [problem for problem in found if problem], [problem for problem in found if problem]
    in_prose = SECTION_IN_PROSE.findall(path.read_text(encoding="utf-8"))
    assert not in_prose, f"{where}: sections cited by title, not as FILE.md#anchor: {in_prose}"


def test_docs_cited_in_code_exist_with_their_headings():
    code = [p for p in CODE if p != Path(__file__)]
    found = [broken(t, a, str(p.relative_to(REPO))) for p in code for t, a in mentioned_paths(p)]
    assert not [problem for problem in found if problem], [problem for problem in found if problem]
    in_prose = [f"{p.relative_to(REPO)}: {m}" for p in code for m in SECTION_IN_PROSE.findall(p.read_text())]
    assert not in_prose, f"sections cited by title, not as FILE.md#anchor: {in_prose}"


def test_github_anchors_follow_githubs_rules():
    text = "# Flow steps: `K` (1-16)\n```\n# not a heading\n```\n## Flow steps: K 1-16\n# Flow steps: `K` (1-16)"
    anchors = github_anchors(text)
    assert anchors == {"flow-steps-k-1-16", "flow-steps-k-1-16-1", "flow-steps-k-1-16-2"}, anchors
