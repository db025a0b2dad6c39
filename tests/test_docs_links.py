"""Every relative link in the README and docs/ resolves to a file in the repository, and
no document points readers at something they do not have."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("doc", [d for d in DOCS if d.exists()], ids=lambda d: str(d.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
            continue
        assert (doc.parent / target).exists(), f"{doc.relative_to(ROOT)} links to {target}, which does not exist"


def test_no_file_cites_documents_users_do_not_have():
    # spelled in pieces so this file does not cite them itself
    needles = ("DESIGN" + ".md", "the " + "course", "../" + "shared")
    offenders = []
    for path in [*ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("benchmarks/*"), *ROOT.rglob("src/**/*.py"),
                 *ROOT.glob("tests/*.py"), ROOT / "Makefile"]:
        if path.is_file():
            text = path.read_text(errors="ignore")
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in needles if n in text]
    assert not offenders, offenders
