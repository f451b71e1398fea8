"""Check that imports between our packages point one way: sandbox <- agent <- selection <- patchswarm,
and that litellm is imported by its one boundary module (`agent.llm`) alone.

Every `import x` / `from x import y` (at any depth, including inside functions and TYPE_CHECKING blocks)
is read from the syntax tree, so a lazy import cannot hide a violation. Exit 1 and one line per
violation (file:line) when a package imports a package it may not.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

# What each of our packages may import of ours (besides itself).
ALLOWED: dict[str, frozenset[str]] = {
    "sandbox": frozenset(),
    "agent": frozenset({"sandbox"}),
    "selection": frozenset({"agent", "sandbox"}),
    "patchswarm": frozenset({"selection", "agent", "sandbox"}),
}

# Third-party packages one module of ours owns: every other module goes through it.
OWNED = {"litellm": "agent/llm.py"}


def imported_modules(tree: ast.AST, module_parts: list[str]) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in the tree; relative imports resolved."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: stays inside the importing package unless it climbs out
                base = module_parts[: len(module_parts) - node.level]
                if node.module:
                    found.append((node.lineno, ".".join([*base, node.module])))
                else:  # `from .. import x`: each name may be a module
                    found.extend((node.lineno, ".".join([*base, alias.name])) for alias in node.names)
            elif node.module:
                found.append((node.lineno, node.module))
    return found


def violations(root: Path) -> list[str]:
    problems: list[str] = []
    for package, allowed in {**ALLOWED, "scripts": frozenset(ALLOWED)}.items():
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root)
            parts = list(rel.with_suffix("").parts)  # a/b/__init__ -> level 1 resolves to a.b, as Python does
            tree = ast.parse(path.read_text(), filename=str(rel))
            for line, module in imported_modules(tree, parts):
                top = module.split(".")[0]
                if top in OWNED and str(rel) != OWNED[top]:
                    problems.append(f"{rel}:{line}: imports {module} (only {OWNED[top]} may: use it instead)")
                if top in ALLOWED and top != package and top not in allowed:
                    may = ", ".join(sorted(allowed)) or "nothing of ours"
                    problems.append(f"{rel}:{line}: {package} imports {module} ({package} may import {may})")
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    problems = violations(root)
    for problem in problems:
        print(problem)
    if problems:
        print(f"layering: {len(problems)} import(s) against sandbox <- agent <- selection <- patchswarm")
        return 1
    print("layering: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
