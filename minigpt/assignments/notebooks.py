"""Release the tutorial notebooks without the answers to their exercises.

    minigpt assignments release-notebooks --out DIR [--with-solutions] [--tutorials SRC] [--force]

The exercises in tutorials/*.ipynb mark their answers with the library's own markers
(`### BEGIN SOLUTION` / `### END SOLUTION`, see markers.py), inside code cells:

    # TODO: the gradient of exp, from what forward saved
    def backward(self, g):
        ### BEGIN SOLUTION
        (y,) = self.saved
        return (g * y,)
        ### END SOLUTION

Released for students, each region becomes `raise NotImplementedError("<notebook>: <todo>")`
(the text of the `# TODO:` comment just above the region, else the enclosing function) and
every code cell loses its outputs, so a student runs the notebook from the top and the check
cell after each exercise prints the relative error of their answer. Released with solutions,
only the marker lines go and the outputs stay. Hidden-test regions are removed from a student
release. The notebooks are read and written as JSON (nbformat 4), so no Jupyter package is
needed; the output depends on the notebooks only, and releasing twice gives identical bytes.

    DIR/NN_name.ipynb               one per tutorial notebook
    DIR/README.md                   the notebooks and their number of exercises to fill in
    DIR/.minigpt-notebooks.json     what was released (an existing DIR is replaced only
                                    with --force and only when it holds this file)
"""
from __future__ import annotations

import json
from pathlib import Path

from .markers import find_regions, not_implemented_line, render
from .release import ReleaseError, check_release_target, write_release

# the tutorials of a source checkout (pip install -e .): <repo>/tutorials beside <repo>/minigpt
TUTORIALS = Path(__file__).resolve().parents[2] / "tutorials"
STAMP = ".minigpt-notebooks.json"
TODO_PREFIX = "# TODO:"


def cell_source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def release_source(source: str, where: str, notebook: str, with_solutions: bool
                   ) -> tuple[str, int]:
    """One code cell's source as released, and how many solution regions it had.

    `where` names the cell in errors (MarkerError: "02_embeddings.ipynb cell 7:12: ...")."""
    if "### BEGIN" not in source:
        return source, 0
    regions = find_regions(source, where)
    lines = source.splitlines()

    def replace(region):
        if region.kind == "hidden":
            return None if with_solutions else []
        if with_solutions:
            return None
        above = lines[region.begin - 2].strip() if region.begin >= 2 else ""
        todo = (above[len(TODO_PREFIX):].strip() if above.startswith(TODO_PREFIX) else
                f"write {region.qualname}" if region.qualname else "write this cell")
        return [not_implemented_line(region.indent, notebook, todo)]

    out = render(source, regions, replace)
    if not source.endswith("\n"):
        out = out.rstrip("\n")      # render() ends every replaced line with a newline
    return out, sum(r.kind == "solution" for r in regions)


def release_notebook(nb: dict, name: str, with_solutions: bool) -> tuple[dict, int]:
    """A released copy of one notebook (parsed JSON) and its number of solution regions."""
    nb = json.loads(json.dumps(nb))                     # a deep copy
    count = 0
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        src, n = release_source(cell_source(cell), f"{name} cell {i}", Path(name).stem[:2],
                                with_solutions)
        count += n
        cell["source"] = src
        if not with_solutions:
            cell["outputs"], cell["execution_count"] = [], None
    return nb, count


def notebooks(tutorials: Path = TUTORIALS) -> list[Path]:
    """The tutorial notebooks in course order (NN_name.ipynb)."""
    found = sorted(Path(tutorials).glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise ReleaseError(f"no tutorial notebooks (NN_name.ipynb) in {tutorials}; pass "
                           "--tutorials with the folder of a minigpt checkout's tutorials/")
    return found


def build(tutorials: Path = TUTORIALS, with_solutions: bool = False) -> tuple[dict, dict]:
    """({file name: bytes} of the release, {notebook: exercises}); nothing written."""
    files, counts = {}, {}
    for path in notebooks(tutorials):
        try:
            nb = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ReleaseError(f"{path}: not a readable notebook ({e})") from None
        released, counts[path.name] = release_notebook(nb, path.name, with_solutions)
        files[path.name] = (json.dumps(released, indent=1, ensure_ascii=False) + "\n").encode()
    files["README.md"] = readme(counts, with_solutions).encode()
    stamp = {"notebooks": sorted(counts), "with_solutions": with_solutions}
    files[STAMP] = (json.dumps(stamp, indent=2) + "\n").encode()
    return files, counts


def readme(counts: dict, with_solutions: bool) -> str:
    lines = ["# minigpt tutorials", ""]
    if with_solutions:
        lines += ["**These notebooks have the solutions in** (a teacher's copy).", ""]
    else:
        lines += ["Each exercise is a TODO cell that raises `NotImplementedError(\"<notebook>: "
                  "<what to do>\")` until you fill it in, followed by a check cell that prints "
                  "the relative error of your answer. Run every notebook from the top.", ""]
    lines += ["| notebook | exercises to fill in |", "| --- | ---: |"]
    lines += [f"| `{name}` | {n} |" for name, n in counts.items()]
    return "\n".join(lines + [""])


def release_notebooks(out, tutorials=None, with_solutions: bool = False,
                      force: bool = False) -> tuple[Path, dict]:
    """Write the released notebooks into `out` (new or empty; an earlier release of notebooks
    only with force=True). Returns (out, {notebook: number of exercises})."""
    out = Path(out)
    check_release_target(out, force, STAMP, "release of the notebooks")
    files, counts = build(Path(tutorials) if tutorials else TUTORIALS, with_solutions)
    write_release(files, out)
    return out, counts


def cmd_release_notebooks(args) -> int:
    out, counts = release_notebooks(args.out, args.tutorials, args.with_solutions, args.force)
    kind = "with solutions" if args.with_solutions else "student version"
    print(f"released {len(counts)} notebooks ({kind}, {sum(counts.values())} exercises) to {out}")
    return 0


def add_command(asub, guard) -> None:
    """`minigpt assignments release-notebooks`, added to the assignments sub-parsers;
    guard(fn) turns the library's errors into a one-line message and exit status 2."""
    q = asub.add_parser("release-notebooks",
                        help="write the tutorial notebooks without their exercise solutions")
    q.add_argument("--out", required=True, help="a new (or empty) directory")
    q.add_argument("--tutorials", default=None,
                   help=f"the folder of NN_name.ipynb notebooks (default: {TUTORIALS})")
    q.add_argument("--with-solutions", action="store_true",
                   help="keep the solutions and outputs (a teacher's copy)")
    q.add_argument("--force", action="store_true",
                   help="replace an earlier release of the notebooks in --out")
    q.set_defaults(func=guard(cmd_release_notebooks))


__all__ = ["release_notebooks", "release_notebook", "release_source", "build", "notebooks",
           "add_command", "STAMP", "TUTORIALS"]
