"""How the code reads, in figures: function lengths, the import graph's cycles, lazy imports.

    python scripts/code_stats.py [PACKAGE_DIR] [--json]

- Function length: lines from `def` to the last line of the body (decorators excluded), over every
  function and method in the package.
- Import graph: an edge A -> B for every `import`/`from ... import` of a trainwise module in module
  A, at module level or inside a function (a lazy import is still a dependency). Cycles are the
  strongly connected components with more than one module. An import of a package counts as an
  import of its `__init__`.
- Lazy imports: import statements inside a function body, split into trainwise's own modules and
  third-party ones.
"""

from __future__ import annotations

import ast
import json
import statistics
import sys
from pathlib import Path


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(node: ast.ImportFrom, here: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = here.split(".") if is_package else here.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported(node: ast.AST, here: str, is_package: bool, modules: set[str]) -> list[str]:
    """The trainwise modules an import statement reaches."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = resolve(node, here, is_package)
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    out = []
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name:
            out.append(name)
    return out


def scan(root: Path) -> dict:
    files = sorted(root.rglob("*.py"))
    modules = {module_name(f, root): f for f in files}
    lengths, graph = [], {m: set() for m in modules}
    lazy_own = lazy_other = 0
    for mod, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lengths.append((fn.end_lineno - fn.lineno + 1, f"{mod}.{fn.name}", str(path), fn.lineno))
                for node in ast.walk(fn):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        own = imported(node, mod, is_package, set(modules))
                        lazy_own += bool(own)
                        lazy_other += not own
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[mod].update(m for m in imported(node, mod, is_package, set(modules)) if m != mod)
    lengths.sort(reverse=True)
    n = [x[0] for x in lengths]
    return {
        "functions": len(n),
        "length_median": statistics.median(n),
        "length_p90": sorted(n)[int(0.9 * (len(n) - 1))],
        "length_max": n[0],
        "longest": [{"lines": x[0], "function": x[1], "where": f"{x[2]}:{x[3]}"} for x in lengths[:5]],
        "over_60_lines": [x[1] for x in lengths if x[0] > 60],
        "cycles": cycles(graph),
        "lazy_imports": lazy_own + lazy_other,
        "lazy_imports_own": lazy_own,
        "lazy_imports_third_party": lazy_other,
    }


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in graph[todo.pop()] - seen:
            seen.add(w)
            todo.append(w)
    return seen


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module: modules that reach each other."""
    reach = {v: reachable(graph, v) for v in graph}
    groups = {tuple(sorted({v} | {w for w in reach[v] if v in reach[w]})) for v in graph}
    return sorted(list(g) for g in groups if len(g) > 1)


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--json"]
    stats = scan(Path(args[0] if args else "trainwise").resolve())
    if "--json" in sys.argv:
        print(json.dumps(stats, indent=2))
        return
    print(
        f"{stats['functions']} functions: length median {stats['length_median']}, "
        f"p90 {stats['length_p90']}, max {stats['length_max']}"
    )
    for f in stats["longest"]:
        print(f"  {f['lines']:4d}  {f['function']}  ({f['where']})")
    print(f"{len(stats['over_60_lines'])} functions over 60 lines")
    print(f"{len(stats['cycles'])} import cycles" + "".join(f"\n  {' <-> '.join(c)}" for c in stats["cycles"]))
    print(
        f"{stats['lazy_imports']} imports inside functions ({stats['lazy_imports_own']} of trainwise modules, "
        f"{stats['lazy_imports_third_party']} third-party)"
    )


if __name__ == "__main__":
    main()
