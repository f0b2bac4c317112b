"""The house rules that ``lint-imports`` does not check, checked on a package's source.

    python tools/check_code.py [--baseline FILE] [PACKAGE_DIR]     # PACKAGE_DIR: src/crosstime

One line per violation, ``path:line: rule: subject`` (some add a detail in parentheses: a length, the
way an import cycle closes), and exit status 1 on any. The rules:

- ``long-function``: no function or method longer than 60 lines, from its ``def`` line to its last
  line (decorators not counted, the docstring counted);
- ``broad-except``: no ``except Exception``, ``except BaseException`` or bare ``except:``;
- ``private-import``: no private name (a ``_name`` that is not a ``__dunder__``) imported from a module
  of another top-level part of the package: ``from crosstime.store.layout import _x`` in
  ``crosstime.scan.plots``, or ``import crosstime.store._y``; within ``crosstime.store`` it is allowed;
- ``import-cycle``: no import cycle between the package's modules, counting every import: those in
  functions and under ``TYPE_CHECKING`` too. The graph is grimp's (the one import-linter builds);
  each import that lies on a cycle is one violation, shown with the way back;
- ``function-import``: an import of one of the package's modules or of any library outside Python's
  standard library inside a function only with its reason, a comment containing ``lazy:`` and a
  reason on the import's line(s) or on a comment line just above (``# lazy: optional extra wandb``).

``--baseline FILE`` lists known violations, one a line, each written as its printed line without the
line number and the detail: ``src/crosstime/cli.py: long-function: run_all``. Only violations beyond
those are reported and fail (a key listed twice covers two); listed ones that no longer occur are
named on stderr, to be removed, without failing. ``--write-baseline FILE`` writes the current list.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import io
import re
import sys
import tokenize
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grimp

MAX_LINES = 60
BROAD_EXCEPTIONS = frozenset({"Exception", "BaseException"})
LAZY = re.compile(r"lazy:\s*\S")  # the marker and at least the start of a reason
DEFAULT_PACKAGE = Path(__file__).resolve().parents[1] / "src" / "crosstime"


@dataclass(frozen=True)
class Violation:
    path: str  # relative to the folder above the source folder: src/crosstime/cli.py
    line: int
    rule: str
    subject: str  # what and where, stable while the code around it moves: the baseline key's last part
    detail: str = ""  # what changes as the code is edited (a length), or only explains (a cycle's way back)

    @property
    def key(self) -> str:
        """This violation's baseline line: its printed line without the line number and the detail."""
        return f"{self.path}: {self.rule}: {self.subject}"

    def __str__(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.path}:{self.line}: {self.rule}: {self.subject}{detail}"


@dataclass(frozen=True)
class Module:
    name: str  # crosstime.store.reader
    file: Path
    shown: str  # the path printed: src/crosstime/store/reader.py

    @property
    def package(self) -> str:
        """The package a relative import in this module starts from."""
        return self.name if self.file.name == "__init__.py" else self.name.rpartition(".")[0]


def discover(package_dir: Path) -> list[Module]:
    """Every module of the package whose folder is ``package_dir`` (``src/crosstime``), sorted by name."""
    root = package_dir.parent.parent
    modules = []
    for file in sorted(package_dir.rglob("*.py")):
        parts = file.relative_to(package_dir.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules.append(Module(name, file, file.relative_to(root).as_posix()))
    return sorted(modules, key=lambda m: m.name)


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def part_of(module: str) -> str:
    """The top-level part of the package that ``module`` belongs to: crosstime.store.reader -> store
    (and crosstime.series -> series; the root package itself -> "")."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def comment_lines(source: str) -> dict[int, tuple[str, bool]]:
    """Line number -> (the comment on it, whether the line is only that comment)."""
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = (token.string, token.line[: token.start[1]].strip() == "")
    return comments


@dataclass(frozen=True)
class ImportSite:
    node: ast.Import | ast.ImportFrom
    scope: str  # the enclosing function's or class's qualified name; "<module>" at the top
    in_function: bool


class Walker(ast.NodeVisitor):
    """One pass over a module: its long functions and broad excepts, and every import with its scope."""

    def __init__(self, module: Module):
        self.module = module
        self.scopes: list[tuple[str, bool]] = []  # (name, is a function)
        self.violations: list[Violation] = []
        self.imports: list[ImportSite] = []

    @property
    def scope(self) -> str:
        return ".".join(name for name, _ in self.scopes) or "<module>"

    def flag(self, node: ast.AST, rule: str, subject: str, detail: str = "") -> None:
        self.violations.append(Violation(self.module.shown, node.lineno, rule, subject, detail))

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scopes.append((node.name, True))
        length = node.end_lineno - node.lineno + 1
        if length > MAX_LINES:
            self.flag(node, "long-function", self.scope, f"{length} lines, at most {MAX_LINES}")
        self.generic_visit(node)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.scopes.append((node.name, False))
        self.generic_visit(node)
        self.scopes.pop()

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is None:
            self.flag(node, "broad-except", f"bare except in {self.scope}")
        caught = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
        for kind in caught:
            # `Exception`, or `builtins.Exception`
            name = kind.id if isinstance(kind, ast.Name) else kind.attr if isinstance(kind, ast.Attribute) else ""
            if name in BROAD_EXCEPTIONS:
                self.flag(node, "broad-except", f"except {name} in {self.scope}")
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        self.imports.append(ImportSite(node, self.scope, any(is_function for _, is_function in self.scopes)))

    visit_ImportFrom = visit_Import


def imported(site: ImportSite, module: Module) -> Iterator[tuple[str, str | None]]:
    """(module, name imported from it, or None for ``import module``) for each alias of the import,
    relative imports made absolute."""
    node = site.node
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, None
        return
    base = node.module or ""
    if node.level:
        anchor = module.package.split(".")
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    for alias in node.names:
        yield base, alias.name


def check_imports(walker: Walker, comments: dict[int, tuple[str, bool]], root: str) -> None:
    """The private-import and function-import rules on the imports ``walker`` found."""
    module = walker.module
    for site in walker.imports:
        node = site.node
        targets = list(imported(site, module))
        for source, name in targets:
            if source.split(".")[0] != root or part_of(source) == part_of(module.name):
                continue
            private = [p for p in source.split(".")[1:] + ([name] if name else []) if is_private(p)]
            if private:
                shown = f"{source}.{name}" if name else source
                walker.flag(node, "private-import", f"{shown} into {module.name}")
        if not site.in_function:
            continue
        heavy = [f"{s}.{n}" if n else s for s, n in targets
                 if s.split(".")[0] == root or s.split(".")[0] not in sys.stdlib_module_names]
        on_lines = [comments.get(n, ("", False))[0] for n in range(node.lineno, node.end_lineno + 1)]
        above, alone = comments.get(node.lineno - 1, ("", False))
        if heavy and not any(LAZY.search(c) for c in on_lines) and not (alone and LAZY.search(above)):
            walker.flag(node, "function-import", f"import of {heavy[0]} in {site.scope}",
                        "a function-level import needs a `# lazy: reason` comment")


def graph_of(package_dir: Path) -> grimp.ImportGraph:
    """grimp's import graph of the package in ``package_dir``: the package found there, not another copy
    on the path (an installed one)."""
    name, src = package_dir.name, str(package_dir.parent)
    sys.path.insert(0, src)
    importlib.invalidate_caches()
    try:
        spec = importlib.util.find_spec(name)
        found = [Path(p).resolve() for p in (spec.submodule_search_locations or [])] if spec else []
        if found != [package_dir.resolve()]:
            raise SystemExit(f"check_code: {name} is found at {found}, not at {package_dir}")
        return grimp.build_graph(name, cache_dir=None)
    finally:
        sys.path.remove(src)


def cyclic_parts(graph: grimp.ImportGraph) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    parts = []
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                part = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    part.add(member)
                    if member == node:
                        break
                if len(part) > 1:
                    parts.append(part)
    return parts


def check_cycles(package_dir: Path, modules: list[Module]) -> list[Violation]:
    """One violation for each import from a module to another of its cycle: every such import is one
    that breaking the cycle may remove, and a refactor that adds none cannot add a violation."""
    graph = graph_of(package_dir)
    shown = {m.name: m.shown for m in modules}
    violations = []
    for part in cyclic_parts(graph):
        for importer in sorted(part):
            for target in sorted(graph.find_modules_directly_imported_by(importer) & part):
                line = min(d["line_number"] for d in graph.get_import_details(importer=importer, imported=target))
                back = graph.find_shortest_chain(importer=target, imported=importer)
                violations.append(Violation(shown[importer], line, "import-cycle", f"{importer} -> {target}",
                                            "back: " + " -> ".join(back)))
    return violations


def check(package_dir: Path) -> list[Violation]:
    """Every violation in the package whose folder is ``package_dir``, by path and line."""
    modules = discover(package_dir)
    violations = []
    for module in modules:
        source = module.file.read_text(encoding="utf-8")
        walker = Walker(module)
        walker.visit(ast.parse(source, filename=str(module.file)))
        check_imports(walker, comment_lines(source), package_dir.name)
        violations += walker.violations
    violations += check_cycles(package_dir, modules)
    return sorted(violations, key=lambda v: (v.path, v.line, v.rule, v.subject))


def beyond(violations: list[Violation], baseline: list[str]) -> tuple[list[Violation], list[str]]:
    """The violations the baseline does not cover, and the baseline lines that cover none."""
    known = Counter(baseline)
    new = []
    for violation in violations:
        if known[violation.key] > 0:
            known[violation.key] -= 1
        else:
            new.append(violation)
    return new, sorted(known.elements())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package_dir", nargs="?", type=Path, default=DEFAULT_PACKAGE)
    parser.add_argument("--baseline", type=Path, help="known violations, one key a line; only others fail")
    parser.add_argument("--write-baseline", type=Path, help="write the current violations' keys here")
    args = parser.parse_args(argv)
    violations = check(args.package_dir)
    if args.write_baseline:
        args.write_baseline.write_text("".join(f"{v.key}\n" for v in violations), encoding="utf-8")
        return 0
    stale: list[str] = []
    if args.baseline:
        lines = args.baseline.read_text(encoding="utf-8").splitlines()
        violations, stale = beyond(violations, [line for line in lines if line.strip()])
    for violation in violations:
        print(violation)
    for line in stale:
        print(f"check_code: no longer occurs, remove it from {args.baseline}: {line}", file=sys.stderr)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
