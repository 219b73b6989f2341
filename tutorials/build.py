"""Build the tutorial notebooks from their sources: `python tutorials/build.py` (or `make tutorials`).

Each tutorials/src/NN_name.py is a jupytext "percent" script (`# %%` starts a code cell,
`# %% [markdown]` a text cell): plain Python that reviews and diffs well. This script turns
each into tutorials/NN_name.ipynb and executes it in a real Jupyter kernel (nbclient +
ipykernel, matplotlib's inline backend: Agg rendering, no window), so the committed notebooks
carry their printed results and plots for a reader on a code host.

    python tutorials/build.py                 # every notebook
    python tutorials/build.py 03 06           # the notebooks whose names start with these
    python tutorials/build.py --no-execute    # cells only, no outputs (quick; not for commits)

tests/test_tutorials.py checks that the committed notebooks match their sources and executes
every notebook again in a kernel, from a temporary directory, without writing here.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
KERNEL_ENV = {
    # the kernel draws with matplotlib's inline backend (Agg, no GUI) whatever the user's rc says
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    "PYTHONHASHSEED": "0",  # set iteration order (BPE ties, vocabularies) as in the committed run
}
CELL_TIMEOUT_S = 1800  # one cell, generous for a busy machine; the test's budget is tighter


def sources() -> list[Path]:
    return sorted(SRC.glob("[0-9][0-9]_*.py"))


def notebook_path(src: Path) -> Path:
    return HERE / (src.stem + ".ipynb")


def read_source(src: Path):
    """The notebook a percent script describes (cells only, no outputs)."""
    import jupytext
    nb = jupytext.read(src, fmt="py:percent")
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python",
                                 "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata.pop("jupytext", None)  # no paired-file bookkeeping in the committed notebook
    return nb


def execute(nb, workdir: str | Path, timeout: int = CELL_TIMEOUT_S, allow_errors: bool = False):
    """Run every cell of `nb` (in place) in a fresh python3 kernel with `workdir` as its cwd.

    A failing cell raises nbclient's CellExecutionError, unless allow_errors (then its
    traceback is the cell's output and the next cells run)."""
    from nbclient import NotebookClient
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            allow_errors=allow_errors,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute(env={**os.environ, **KERNEL_ENV})  # env: passed on to the kernel's process
    return nb


def cells_of(nb) -> list[tuple[str, str]]:
    """What a notebook says, without outputs or metadata: (cell type, source) per cell."""
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


# Comparing a committed notebook's text outputs with a fresh run's. The committed build and a
# fresh run on the same machine print the same text; another machine's BLAS may change the last
# bits of a sum, and so the last printed digit of a number that sat on a rounding boundary. So:
# the text outside numbers must be equal (whitespace runs collapsed: NumPy pads array columns
# to their widest number); integers must be equal; a number with a decimal point or an
# exponent may differ by a relative 1e-3 or by one unit of its last printed digit ("4.21e-07"
# vs "4.22e-07"); numbers of magnitude below 1e-9 are roundoff ("max |a - b| = 2.2e-16") and
# all count as equal. Images are not compared (their bytes change with the matplotlib
# version); their text/plain ("<Figure size 600x350 with 1 Axes>") is.
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
REL_TOL, ROUNDOFF = 1e-3, 1e-9
# a wall-clock reading ("took 0.12 s", "1.3 ms"): never printed, it cannot match a fresh run
WALL_CLOCK = re.compile(r"\d(?:\.\d+)?\s?(?:s|ms|sec|seconds)\b")


def text_outputs(nb) -> list[str]:
    """Per code cell: its printed text (streams by name, then each result's text/plain and
    text/html), one string; stream chunks are joined, as a kernel may split them anywhere."""
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        streams, results = {}, []
        for o in cell.outputs:
            if o.output_type == "stream":
                streams[o.name] = streams.get(o.name, "") + o.text
            elif o.output_type in ("execute_result", "display_data"):
                results += [o.data[k] for k in ("text/plain", "text/html") if k in o.data]
            elif o.output_type == "error":
                results.append(f"{o.ename}: {o.evalue}")
        out.append("".join(f"[{k}]\n{v}" for k, v in sorted(streams.items())) + "\n".join(results))
    return out


def _last_digit(token: str) -> float:
    """The value of one unit in the last printed digit: "4.21e-07" -> 1e-09, "0.063" -> 0.001."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def _numbers_agree(a: str, b: str) -> bool:
    if not any(c in t for t in (a, b) for c in ".eE"):
        return int(a) == int(b)                          # integers: counts, sizes, steps
    x, y = float(a), float(b)
    if abs(x) < ROUNDOFF and abs(y) < ROUNDOFF:
        return True
    slack = 1.5 * max(_last_digit(a), _last_digit(b))    # a rounding flip of the last digit
    return abs(x - y) <= max(REL_TOL * max(abs(x), abs(y)), slack)


def same_text(committed: str, fresh: str) -> bool:
    """Whether two outputs agree under the rule above."""
    split = lambda s: NUMBER.split(" ".join(s.split()))
    nums = lambda s: NUMBER.findall(" ".join(s.split()))
    if split(committed) != split(fresh):
        return False
    a, b = nums(committed), nums(fresh)
    return len(a) == len(b) and all(_numbers_agree(x, y) for x, y in zip(a, b))


def output_differences(committed, fresh) -> list[str]:
    """The code cells whose text differs, each with both texts (empty: they match)."""
    out = []
    old, new = text_outputs(committed), text_outputs(fresh)
    if len(old) != len(new):
        return [f"{len(old)} code cells committed, {len(new)} executed"]
    for i, (a, b) in enumerate(zip(old, new)):
        if not same_text(a, b):
            out.append(f"code cell {i}:\n--- committed\n{a[:1500]}\n--- fresh run\n{b[:1500]}")
    return out


def wall_clock_lines_in(text: str) -> list[str]:
    return [line for line in text.splitlines() if WALL_CLOCK.search(line)]


def wall_clock_lines(nb) -> list[str]:
    """The printed lines that read like a wall-clock time."""
    return [line for text in text_outputs(nb) for line in wall_clock_lines_in(text)]


def build(src: Path, run: bool = True, allow_errors: bool = False) -> float:
    import nbformat
    nb = read_source(src)
    t0 = time.perf_counter()
    if run:
        with tempfile.TemporaryDirectory(prefix="minigpt-tutorial-") as tmp:
            execute(nb, tmp, allow_errors=allow_errors)
    dt = time.perf_counter() - t0
    for i, cell in enumerate(nb.cells):  # ids from the cell order: a rebuild changes no id
        cell["id"] = f"cell-{i:02d}"
    nbformat.write(nb, notebook_path(src))
    return dt


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("only", nargs="*", help="build only notebooks whose names start with these")
    p.add_argument("--no-execute", action="store_true", help="write the cells without outputs")
    p.add_argument("--allow-errors", action="store_true",
                   help="write a notebook even when a cell fails (to debug it; not for commits)")
    args = p.parse_args(argv)
    todo = [s for s in sources() if not args.only or s.stem.startswith(tuple(args.only))]
    if not todo:
        print(f"no tutorial source matches {args.only} in {SRC}", file=sys.stderr)
        return 2
    total = 0.0
    for src in todo:
        dt = build(src, run=not args.no_execute, allow_errors=args.allow_errors)
        total += dt
        print(f"{notebook_path(src).name:42s} {dt:6.1f} s", flush=True)
    print(f"{len(todo)} notebooks, {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
