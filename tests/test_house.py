"""House rules checked on the source tree: code and docs describe the present, and the README is a front door.

History (issue numbers, "before issue N", what a default used to be) belongs in commits; a docstring says what a
value is and why. The README stays short and every reference page under docs/ is one link away from it.
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("collect", "analyze", "reports", "docs", "README.md")
SUFFIXES = {".py", ".md", ".toml"}
HISTORY = re.compile(
    r"\bissues? #?\d+"            # "issue 14", "issues 12", "issue #3"
    r"|\b(?:before|since|after) (?:issue|commit)\b"
    r"|\bpreviously\b"
    r"|\bold default\b"
    r"|\bused to be\b"
    r"|\blast landing\b",
    re.IGNORECASE,
)
README_MAX_LINES = 250


def _files() -> list[Path]:
    out = []
    for name in SCANNED:
        path = ROOT / name
        if path.is_file():
            out.append(path)
        elif path.is_dir():
            out.extend(p for p in sorted(path.rglob("*")) if p.suffix in SUFFIXES and p.is_file())
    return out


def history_matches(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line of ``text`` that tells history instead of the present."""
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if HISTORY.search(line)]


def test_history_pattern_catches_what_it_should() -> None:
    assert history_matches("x = 1  # issue 14: was 0.5")
    assert history_matches("the step of 0.5·r used before issue 14")
    assert history_matches("Issues 12 and 14 changed it")
    assert history_matches("previously computed by L-BFGS-B")
    assert history_matches("the old default (one L-BFGS-B run)")
    assert not history_matches("the run was killed before training")  # past tense about a run is fine
    assert not history_matches("open an issue on the tracker")


def test_no_history_in_code_and_docs() -> None:
    found = []
    for path in _files():
        for line_no, line in history_matches(path.read_text(encoding="utf-8", errors="replace")):
            found.append(f"{path.relative_to(ROOT)}:{line_no}: {line[:120]}")
    assert not found, ("code and docs describe the present; move this history to the commit message and say what the "
                       "value is and why:\n" + "\n".join(found))


def test_readme_is_a_front_door() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_MAX_LINES, f"README.md has more than {README_MAX_LINES} lines: move reference material to docs/"
    linked = set(re.findall(r"\]\((docs/[^)#]+\.md)", readme))
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert pages, "docs/ holds no page"
    assert pages <= linked, f"docs pages not linked from README.md: {sorted(pages - linked)}"


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_relative_links_in_docs_resolve() -> None:
    """Every relative link of the README, docs/*.md and reports/*.md points at a file that exists, and at a heading
    of it when the link names one (``file.md#heading``)."""
    broken = []
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "reports").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, heading = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target} (no such file)")
            elif heading and path.suffix == ".md":
                headings = {anchor(h) for h in re.findall(r"^#+ (.*)$", path.read_text(encoding="utf-8"), re.M)}
                if heading not in headings:
                    broken.append(f"{page.relative_to(ROOT)} -> {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)
