"""Print crosstime's floor plan: every package and module, its line count and the first line of its docstring.

    python docs/floor_plan.py            # the tree, as in docs/architecture.md's description

The layers it is built in are checked by import-linter (``[tool.importlinter]`` in pyproject.toml) and
the house rules by ``tools/check_code.py``; this only shows the tree.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "crosstime"


def first_line(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    line = doc.strip().splitlines()[0] if doc.strip() else ""
    return line if len(line) <= 100 else line[:97] + "…"


def lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def main() -> None:
    total = 0
    for folder in [ROOT, *sorted(p for p in ROOT.rglob("*") if p.is_dir() and p.name != "__pycache__")]:
        modules = sorted(folder.glob("*.py"))
        if not modules:
            continue
        rel = folder.relative_to(ROOT.parent)
        count = sum(lines(m) for m in modules)
        total += count
        init = folder / "__init__.py"
        print(f"{rel}/  ({count} lines)  {first_line(init) if init.exists() else ''}")
        for module in modules:
            if module.name == "__init__.py":
                continue
            print(f"    {module.name:<24} {lines(module):>5}  {first_line(module)}")
    print(f"total: {total} lines of Python")


if __name__ == "__main__":
    main()
