"""How trainwise's code reads (issue 19): imports inside functions and long functions say why.

- An import inside a function is there on purpose (a heavy optional dependency, an import cycle, a CLI verb
  module keeping `trainwise --help` fast), so it carries a comment: on its own line, the line above, or the
  line above its block of consecutive imports.
- A trainwise module is imported inside a function only in a CLI verb module, or with a comment that says
  "lazy" or "cycle".
- A function over 60 lines says why in a comment containing "60 lines" in its first lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "trainwise"
FIRST_LINES = 3  # lines after the docstring where the "why" of a long function is looked for


def _functions(tree: ast.AST):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _inner_imports(tree: ast.AST):
    seen = set()
    for fn in _functions(tree):
        for node in ast.walk(fn):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and node.lineno not in seen:
                seen.add(node.lineno)
                yield node


def _comment_for(node: ast.AST, lines: list[str]) -> str:
    """The comment that explains an import: on its own lines, or above it or above its block of imports."""
    own = " ".join(lines[i] for i in range(node.lineno - 1, node.end_lineno))
    return ((own[own.index("#") :] if "#" in own else "") + " " + _comment_above(node, lines)).strip()


def _comment_above(node: ast.AST, lines: list[str]) -> str:
    i = node.lineno - 2
    while i >= 0:
        text = lines[i].strip()
        if text.startswith("#"):
            block = []
            while i >= 0 and lines[i].strip().startswith("#"):
                block.insert(0, lines[i].strip())
                i -= 1
            return " ".join(block)
        if text.startswith(("import ", "from ", ")")) or text.endswith((",", "(")):
            i -= 1
            continue
        return ""
    return ""


def _is_own(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").startswith("trainwise")
    return any(a.name.startswith("trainwise") for a in node.names)


def _is_verb_module(path: Path) -> bool:
    return path.name == "commands.py" or path.name.endswith("_commands.py")


def _sources():
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        yield path, text.splitlines(), ast.parse(text, filename=str(path))


def test_every_import_inside_a_function_says_why():
    bare = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
        for path, lines, tree in _sources()
        for node in _inner_imports(tree)
        if not _comment_for(node, lines)
    ]
    assert not bare, f"{len(bare)} imports inside functions with no comment saying why: {bare}"


def test_trainwise_modules_are_imported_lazily_only_in_verb_modules_or_for_a_cycle():
    stray = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
        for path, lines, tree in _sources()
        if not _is_verb_module(path)
        for node in _inner_imports(tree)
        if _is_own(node) and not any(w in _comment_for(node, lines).lower() for w in ("lazy", "cycle"))
    ]
    assert not stray, f"trainwise modules imported inside functions outside verb modules: {stray}"


def test_every_function_over_60_lines_says_why():
    silent = []
    for path, lines, tree in _sources():
        for fn in _functions(tree):
            if fn.end_lineno - fn.lineno + 1 <= 60:
                continue
            body = fn.body[1:] if ast.get_docstring(fn) is not None and len(fn.body) > 1 else fn.body
            head = "\n".join(lines[max(fn.lineno - 3, 0) : body[0].lineno - 1 + FIRST_LINES])
            if "60 lines" not in head:
                silent.append(f"{path.relative_to(PACKAGE.parent)}:{fn.lineno} {fn.name}")
    assert not silent, f"functions over 60 lines with no comment saying why: {silent}"
