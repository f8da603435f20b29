"""No function in assistant/ or ui/ runs over MAX_LINES lines (HOUSE_STYLE.md: functions short enough to read at
once). A function's length counts from its `def` line to its last line, docstring and comments included; a
function nested in another counts inside it and on its own."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]
MAX_LINES = 80


def function_lengths(source: str) -> list[tuple[str, int, int]]:
    """(qualified name, def line, lines) of every function and method in `source`."""
    found: list[tuple[str, int, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                found.append((name, child.lineno, (child.end_lineno or child.lineno) - child.lineno + 1))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def test_the_count_runs_from_def_to_the_last_line_and_sees_nested_functions_and_methods() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))  # 80 lines under the def: 81 in all
    source = f'@decorator\ndef long():\n{body}\n\n\nclass C:\n    def short(self):\n        """Doc."""\n' + (
        "        def inner():\n            return 1\n        return inner\n"
    )
    short = 2 + MAX_LINES + 4  # the def, the body, two blank lines and the class line
    assert function_lengths(source) == [
        ("long", 2, MAX_LINES + 1), ("C.short", short, 5), ("C.short.inner", short + 2, 2)
    ]  # fmt: skip


def test_no_function_in_assistant_or_ui_is_over_80_lines() -> None:
    too_long = []
    for package in ("assistant", "ui"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for name, line, lines in function_lengths(path.read_text(encoding="utf-8")):
                if lines > MAX_LINES:
                    too_long.append(f"{path.relative_to(ROOT)}:{line} {name}: {lines} lines")
    assert not too_long, f"functions over {MAX_LINES} lines (split them into named steps):\n" + "\n".join(too_long)
