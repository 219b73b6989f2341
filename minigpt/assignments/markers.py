"""nbgrader's solution markers in Python sources: find the regions, strip or keep them.

A solution region is the lines between a `### BEGIN SOLUTION` line and the next
`### END SOLUTION` line (each marker alone on its line, any indentation); the same holds for
`### BEGIN HIDDEN TESTS` / `### END HIDDEN TESTS`. These are nbgrader's default delimiters,
so a teacher who uses nbgrader can take the marked sources as they are.

    def backward(self, g):
        (y,) = self.saved
        ### BEGIN SOLUTION
        return (g * y,)
        ### END SOLUTION

Released for a student, the region (markers included) becomes one line at the BEGIN marker's
indentation, `raise NotImplementedError("<task id>: <what to implement>")`; released with
solutions, only the two marker lines go. A nested, unclosed or unopened marker, or a line that
looks like a marker but is not exactly one, is a `MarkerError` naming file:line.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
_PAIRS = {BEGIN_SOLUTION: ("solution", END_SOLUTION), BEGIN_HIDDEN: ("hidden", END_HIDDEN)}
_ENDS = {END_SOLUTION: "solution", END_HIDDEN: "hidden"}
_WORDS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


class MarkerError(ValueError):
    """Badly placed solution markers; the message starts with file:line."""


@dataclass(frozen=True)
class Region:
    """One marked region. Lines are 1-based: `begin` and `end` are the marker lines."""
    kind: str           # "solution" or "hidden"
    begin: int
    end: int
    indent: str         # the BEGIN marker's indentation
    qualname: str       # enclosing function, e.g. "LayerNorm.backward" ("" at module level)


def find_regions(text: str, path: str = "<source>") -> list[Region]:
    """All marked regions of a Python source, in order; MarkerError on any misuse."""
    lines = text.splitlines()
    regions, open_ = [], None  # open_: (kind, end marker, line number, indent)
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if s in _PAIRS:
            if open_ is not None:
                raise MarkerError(f"{path}:{n}: '{s}' inside the region opened at line "
                                  f"{open_[2]} (regions cannot nest; close it with "
                                  f"'{open_[1]}' first)")
            kind, end = _PAIRS[s]
            open_ = (kind, end, n, line[:len(line) - len(line.lstrip())])
        elif s in _ENDS:
            if open_ is None or open_[1] != s:
                where = "" if open_ is None else f" (the region opened at line {open_[2]} " \
                                                  f"needs '{open_[1]}')"
                raise MarkerError(f"{path}:{n}: '{s}' without a matching BEGIN{where}")
            regions.append((open_[0], open_[2], n, open_[3]))
            open_ = None
        elif s.startswith("#") and any(w in s.upper() for w in _WORDS) \
                and s.lstrip("# ").upper().startswith(("BEGIN", "END")):
            raise MarkerError(f"{path}:{n}: {s!r} looks like a marker but is not one "
                              f"(write exactly '{BEGIN_SOLUTION}' / '{END_SOLUTION}')")
    if open_ is not None:
        raise MarkerError(f"{path}:{open_[2]}: '{lines[open_[2] - 1].strip()}' is never closed "
                          f"(add '{open_[1]}')")
    if not regions:
        return []
    owners = _enclosing_functions(text, path)
    out = []
    for kind, b, e, indent in regions:
        out.append(Region(kind, b, e, indent, _owner(owners, b, e, path)))
    return out


def _enclosing_functions(text: str, path: str) -> list[tuple[int, int, str]]:
    """(first line, last line, qualified name) of every function in the source."""
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as e:
        raise MarkerError(f"{path}:{e.lineno}: not valid Python ({e.msg})") from None
    found = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                found.append((child.lineno, child.end_lineno, name))
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def _owner(functions, begin: int, end: int, path: str) -> str:
    # a trailing comment line (the END marker) is not part of a function's ast span: the
    # BEGIN line decides
    inner = [f for f in functions if f[0] < begin <= f[1]]
    if not inner:
        return ""
    return max(inner, key=lambda f: f[0])[2]  # the innermost: the latest start


def render(text: str, regions: list[Region], replacement) -> str:
    """The source with each region replaced.

    replacement(region) -> list of lines to put instead of the region's lines (markers
    included), or None to keep the body and drop only the two marker lines.
    """
    lines = text.splitlines(keepends=True)
    out, i = [], 0
    for r in regions:
        out.extend(lines[i:r.begin - 1])
        new = replacement(r)
        if new is None:
            out.extend(lines[r.begin:r.end - 1])
        else:
            out.extend(line + "\n" for line in new)
        i = r.end
    out.extend(lines[i:])
    return "".join(out)


def not_implemented_line(indent: str, task_id: str, todo: str) -> str:
    """`raise NotImplementedError("<task id>: <todo>")` at the given indentation."""
    message = json.dumps(f"{task_id}: {todo}", ensure_ascii=False)  # a valid Python literal
    return f"{indent}raise NotImplementedError({message})"
