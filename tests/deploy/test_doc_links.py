"""Every link to a page of the repository's documentation leads somewhere: the file exists, and
the ``#anchor`` is one of its headings, as GitHub derives it. Covers links in the Markdown pages
(``[text](path#anchor)``) and the pages that manifests, compose files and code name in their
comments (``docs/<page>.md#<anchor>``), so that moving a section from one page to another cannot
leave a reference behind.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
# a docs page named in a comment or string, with or without an anchor
DOC_REFERENCE = re.compile(r"\bdocs/[\w./-]+\.md(?:#[\w-]+)?")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _tracked(suffixes: tuple[str, ...]) -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    # bench/results holds generated reports, kept as they were written
    return [ROOT / name for name in out.stdout.splitlines()
            if name.endswith(suffixes) and not name.startswith("bench/results/")]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = text.replace("`", "").replace("*", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_code = not in_code
            continue
        match = None if in_code else HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def _broken(target: Path, anchor: str, where: str) -> str | None:
    if not target.exists():
        return f"{where}: {target.relative_to(ROOT)} does not exist"
    if anchor and target.suffix == ".md" and anchor not in anchors(target):
        return f"{where}: {target.relative_to(ROOT)} has no heading #{anchor}"
    return None


def test_slug_matches_githubs() -> None:
    assert slug("The client's address on Kubernetes") == "the-clients-address-on-kubernetes"
    assert slug("Checking it: the container test and CI") == "checking-it-the-container-test-and-ci"
    assert slug("`GET /v1/models`, its limits") == "get-v1models-its-limits"
    assert slug("Service throughput on a GPU, by workers") == "service-throughput-on-a-gpu-by-workers"


def test_markdown_links_resolve() -> None:
    problems = []
    for page in _tracked((".md",)):
        in_code = False
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if FENCE.match(line):
                in_code = not in_code
            if in_code:
                continue
            for link in MD_LINK.findall(line):
                if re.match(r"[a-z][a-z0-9+.-]*:", link):  # https:, mailto:
                    continue
                path, _, anchor = link.partition("#")
                target = (page.parent / path).resolve() if path else page
                problem = _broken(target, anchor, f"{page.relative_to(ROOT)}:{number}")
                if problem:
                    problems.append(problem)
    assert not problems, "\n".join(problems)


def test_docs_named_in_code_and_manifests_exist() -> None:
    problems = []
    files = _tracked((".py", ".yaml", ".yml", ".env", ".conf", ".sh", ".toml", ".md", "Dockerfile"))
    for file in files:
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            for reference in DOC_REFERENCE.findall(line):
                path, _, anchor = reference.partition("#")
                problem = _broken(ROOT / path, anchor, f"{file.relative_to(ROOT)}:{number}")
                if problem:
                    problems.append(problem)
    assert not problems, "\n".join(problems)
