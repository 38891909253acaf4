"""docs/development.md's layout table matches the tree: every module it names exists, and every
module of the four code folders is named in the row of its stage."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = ("space", "trainers", "search", "reports")


def _rows() -> list[tuple[list[str], list[str]]]:
    """(first-column paths, second-column names) of each row of the layout table."""
    text = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    table = text.split("## Layout: the flow", 1)[1].split("Where a new thing goes", 1)[0]
    rows = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        rows.append((re.findall(r"`([^`]+)`", cells[0]), re.findall(r"`([^`]+)`", cells[1])))
    return rows


def _named(rows) -> tuple[set[Path], set[Path]]:
    """(every module the table names, the folders it names whole), each checked to exist: a
    row's first column names folders or modules from the top; its second names modules and
    sub-folders inside that row's folders."""
    modules: set[Path] = set()
    folders: set[Path] = set()
    for places, names in rows:
        roots = []
        for place in places:
            path = ROOT / place
            assert path.exists(), f"docs/development.md names {place}, which is not in the tree"
            (folders if path.is_dir() else modules).add(path)
            roots.append(path if path.is_dir() else path.parent)
        for name in names:
            if not name.endswith((".py", "/")):
                continue  # a command, a function, a file format
            found = [
                p
                for root in roots
                for p in [root, *root.rglob(name.rstrip("/"))]
                if p.name == name.rstrip("/")
                if p.is_dir() == name.endswith("/") and "__pycache__" not in p.parts
            ]
            assert found, f"docs/development.md names {name} under {places}: not there"
            for p in found:
                (folders if p.is_dir() else modules).add(p)
    return modules, folders


def test_the_layout_table_names_only_what_is_in_the_tree_and_all_of_it():
    """A module is named by its file, or by its folder where the table names no file of it."""
    modules, folders = _named(_rows())
    missing = []
    for code in CODE:
        for module in sorted((ROOT / code).rglob("*.py")):
            if module.name in ("__init__.py", "__main__.py") or module in modules:
                continue
            folder = module.parent
            named_inside = any(m.parent == folder for m in modules)
            if folder in folders and not named_inside:
                continue
            missing.append(str(module.relative_to(ROOT)))
    assert not missing, f"modules docs/development.md's layout table does not name: {missing}"
