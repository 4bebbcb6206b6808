"""Every path the project's text names exists: in comments and docstrings, the README,
the docs pages and their relative links. A renamed or deleted file otherwise leaves
its readers pointed at nothing."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
TOP = ("harness", "impls", "tests", "docs", "results", ".ci")
# a repository path as text names it: a top-level folder, then names and slashes
ALTERNATIVES = "|".join(re.escape(top) for top in TOP)
NAMED = re.compile(rf"(?<![\w./-])(?:\.\./shared/|(?:{ALTERNATIVES})/)[\w./-]*")
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")  # a Markdown link's or image's target
# named on purpose although absent, with why
ABSENT = {
    "results/reference/figures/curves_1.5.png": "tests/harness/test_docs.py's made-up page",
}


def texts() -> list[Path]:
    found = [ROOT / "README.md", ROOT / "pyproject.toml", *sorted((ROOT / "docs").glob("*.md"))]
    for top in ("harness", "impls", "tests", ".ci"):
        found += sorted(
            p for p in (ROOT / top).rglob("*") if p.suffix in (".py", ".md", ".toml", "")
        )
    # this file names absent paths on purpose, to see them found
    return [
        p
        for p in found
        if p.is_file() and "__pycache__" not in p.parts and p != Path(__file__).resolve()
    ]


def exists(name: str) -> bool | None:
    """Whether a named path exists; None where it cannot be told here."""
    if any(c in name for c in "<>*{}"):
        return None  # a pattern or a placeholder, not one path
    if name.startswith("../shared/"):
        return (SHARED / name[len("../shared/") :]).exists() if SHARED.is_dir() else None
    return (ROOT / name).exists()


def named_paths(path: Path) -> list[tuple[int, str]]:
    out = []
    for number, line in enumerate(
        path.read_text(encoding="utf-8", errors="replace").splitlines(), 1
    ):
        for match in NAMED.finditer(line):
            out.append((number, match.group(0).rstrip(".,:;")))
        if path.suffix == ".md":
            for target in LINK.findall(line):
                if "://" in target or target.startswith("mailto:"):
                    continue
                resolved = (path.parent / target).resolve()
                try:
                    out.append((number, str(resolved.relative_to(ROOT))))
                except ValueError:
                    out.append((number, "../shared/" + str(resolved.relative_to(SHARED))))
    return out


def test_every_named_path_exists():
    missing = []
    for path in texts():
        for number, name in named_paths(path):
            if name in ABSENT or name.rstrip("/") in ("", *TOP):
                continue
            if exists(name) is False:
                missing.append(f"{path.relative_to(ROOT)}:{number}: {name}")
    assert not missing, "paths named but absent:\n" + "\n".join(missing)


def test_the_check_finds_a_path_that_is_not_there(tmp_path):
    page = ROOT / "docs" / "README.md"
    names = [name for _, name in named_paths(page)]
    assert names, "docs/README.md names no path: the check would read nothing there"
    assert exists("harness/runner.py") and exists("harness/no_such_module.py") is False
    assert NAMED.findall("see harness/nowhere.py, and docs/x.md.") == [
        "harness/nowhere.py",
        "docs/x.md.",
    ]
