"""Data-parallel training (minigpt.distributed): the run's numbers do not depend on the number
of processes N (mpiexec -n N) or of micro-batches K (--grad-accum), with dropout too; resume
with another N; a rank killed mid-run stops every rank and leaves a loadable checkpoint.

The mpiexec tests need mpi4py and an mpiexec (pip install 'minigpt-gpt1[distributed]'); where
they cannot be had they are skipped, saying so."""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minigpt import random as mgrandom
from minigpt.distributed import GlobalRowMasks, World, check_split, my_rows, row_slices
from minigpt.distributed.ring import bucketed_average, ring_allreduce
from minigpt.safetensors import load_file

BIN = Path(sys.executable).parent
MPIEXEC = shutil.which("mpiexec", path=str(BIN)) or shutil.which("mpiexec")
MINIGPT = [sys.executable, "-m", "minigpt"]


def have_mpi() -> str | None:
    """Why the mpiexec tests cannot run here (None: they can)."""
    if MPIEXEC is None:
        return "no mpiexec (pip install 'minigpt-gpt1[distributed]' brings MPICH's)"
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install 'minigpt-gpt1[distributed]')"
    return None


needs_mpi = pytest.mark.skipif(have_mpi() is not None, reason=str(have_mpi()))

COMMON = ["pretrain", "--data", "shakespeare", "--preset", "tiny", "--n-layer", "1",
          "--n-embd", "32", "--n-head", "2", "--block-size", "16", "--batch-size", "8",
          "--eval-interval", "3", "--eval-batches", "1", "--no-progress", "--dropout", "0.1"]


def run(n: int, args, cwd, **kw):
    cmd = ([MPIEXEC, "-n", str(n)] if n > 1 else []) + MINIGPT + COMMON + list(args)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          **kw)


def losses(folder):
    rows = [json.loads(line) for line in Path(folder, "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r.get("val_loss")) for r in rows]


def weights(folder):
    out = {}
    for f in glob.glob(str(Path(folder, "ckpt", "model.safetensors"))):
        out.update(load_file(f))
    assert out, f"no weights in {folder}"
    return out


def assert_same_run(a, b, atol=1e-7):
    la, lb = losses(a), losses(b)
    assert [r[0] for r in la] == [r[0] for r in lb]
    np.testing.assert_allclose([r[1] for r in la], [r[1] for r in lb], rtol=2e-6)
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:  # float32 rounding: the sums run in another order
        np.testing.assert_allclose(wa[k], wb[k], rtol=0, atol=atol, err_msg=k)


# ----------------------------------------------------------------------------- one process

def test_split_is_checked_with_a_named_error():
    assert check_split(32, 2, 4) == 4
    with pytest.raises(ValueError, match="does not split into 2 processes x 4 micro-batches"):
        check_split(30, 2, 4)


@pytest.mark.parametrize("n,parts", [(8, 4), (7, 4), (3, 4), (1, 1)])
def test_row_slices_cover_the_batch_in_order(n, parts):
    s = row_slices(n, parts)
    assert len(s) == parts and s[0].start == 0 and s[-1].stop == n
    assert all(a.stop == b.start for a, b in zip(s, s[1:]))
    sizes = [x.stop - x.start for x in s]
    assert max(sizes) - min(sizes) <= 1


def test_my_rows_rank_major():
    assert my_rows(8, World(), 2) == [slice(0, 4), slice(4, 8)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_row_masks_are_the_one_process_draws(dtype):
    """Every rank/micro-batch gets its rows of the one-process draws, and the generator ends
    where one full pass leaves it."""
    import minigpt.functional as F
    from minigpt.autograd import Tensor
    B, shapes = 8, [(8, 5), (8, 2, 3, 3), (16, 4)]  # (16, 4): two draw rows per batch row
    mgrandom.manual_seed(7)
    rng = mgrandom.get_rng(np)
    want = [rng.random(s, dtype=dtype) for s in shapes]
    end = rng.bit_generator.state
    for parts in (1, 2, 4, 8):
        mgrandom.manual_seed(7)
        masks = GlobalRowMasks(B)
        for rows in row_slices(B, parts):
            n = rows.stop - rows.start
            with masks.rows(rows):
                got = [mgrandom.get_rng(np).random((n * (s[0] // B),) + s[1:], dtype=dtype)
                       for s in shapes]
            for g, w, s in zip(got, want, shapes):
                k = s[0] // B
                np.testing.assert_array_equal(g, w[rows.start * k:rows.stop * k])
        assert mgrandom.get_rng(np).bit_generator.state == end
    # and through the dropout op itself
    mgrandom.manual_seed(3)
    x = np.ones((B, 6), dtype=dtype)
    full = F.dropout(Tensor(x), 0.5, True).data
    mgrandom.manual_seed(3)
    masks = GlobalRowMasks(B)
    with masks.rows(slice(2, 5)):
        part = F.dropout(Tensor(x[2:5]), 0.5, True).data
    np.testing.assert_array_equal(part, full[2:5])


# ----------------------------------------------------------------------------- mpiexec -n 2

@needs_mpi
def test_n_and_k_do_not_change_the_run_with_dropout(tmp_path):
    r = run(1, ["--steps", "6", "--out", "n1"], tmp_path)
    assert r.returncode == 0, r.stderr
    for n, extra, out in ((2, [], "n2"), (2, ["--grad-accum", "2"], "n2k2"),
                          (1, ["--grad-accum", "4"], "n1k4")):
        r = run(n, ["--steps", "6", "--out", out, *extra], tmp_path)
        assert r.returncode == 0, r.stderr
        assert_same_run(tmp_path / "n1", tmp_path / out)
    assert "checkpoint:" in r.stdout


@needs_mpi
def test_dropout_masks_matter_so_the_test_can_fail(tmp_path):
    """The equality above is not trivially true: other masks (another seed) give another run."""
    run(1, ["--steps", "3", "--out", "a"], tmp_path)
    run(1, ["--steps", "3", "--out", "b", "--seed", "1338"], tmp_path)
    assert losses(tmp_path / "a") != losses(tmp_path / "b")


@needs_mpi
def test_resume_with_another_number_of_processes(tmp_path):
    # steps < warm-up (100): the learning rate does not depend on --steps
    assert run(1, ["--steps", "6", "--out", "whole"], tmp_path).returncode == 0
    r = run(2, ["--steps", "3", "--out", "part"], tmp_path)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(MINIGPT + ["pretrain", "--out", "part", "--resume", "--steps", "6",
                                  "--no-progress", "--grad-accum", "2"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert_same_run(tmp_path / "whole", tmp_path / "part")


@needs_mpi
def test_a_batch_that_does_not_split_is_a_named_error(tmp_path):
    r = run(2, ["--steps", "2", "--batch-size", "7", "--out", "bad"], tmp_path)
    assert r.returncode != 0
    assert "does not split into 2 processes" in r.stderr
    assert not (tmp_path / "bad").exists()


def rank_pid(mark: str, rank: int) -> int | None:
    for env in glob.glob("/proc/[0-9]*/environ"):
        try:
            data = Path(env).read_bytes().split(b"\0")
        except OSError:
            continue
        if f"MINIGPT_TEST_MARK={mark}".encode() in data and f"PMI_RANK={rank}".encode() in data:
            return int(env.split("/")[2])
    return None


@needs_mpi
def test_a_killed_rank_stops_every_rank_and_the_checkpoint_stays(tmp_path):
    mark = uuid.uuid4().hex
    cmd = [MPIEXEC, "-n", "2"] + MINIGPT + COMMON + ["--steps", "100000", "--ckpt-interval",
                                                     "2", "--out", "long"]
    env = {**os.environ, "MINIGPT_TEST_MARK": mark, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "long" / "ckpt" / "state.json").exists():
            assert time.time() < deadline and p.poll() is None, "no checkpoint was written"
            time.sleep(0.2)
        time.sleep(1.0)
        pid = rank_pid(mark, 1)
        assert pid is not None, "rank 1's process not found"
        os.kill(pid, signal.SIGKILL)
        t0 = time.time()
        out, err = p.communicate(timeout=30)  # every rank stops within 30 s, never a hang
        assert time.time() - t0 < 30
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode != 0
    assert rank_pid(mark, 0) is None, "rank 0 still runs"
    # MPICH's mpiexec names it: "BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES ...
    # Killed (signal 9)" (on its stdout)
    assert "BAD TERMINATION" in out + err and "signal 9" in out + err, out + err
    from minigpt.training import load_checkpoint
    model, tokenizer, state = load_checkpoint(tmp_path / "long")
    assert state["step"] >= 2


@needs_mpi
def test_an_error_on_one_rank_stops_every_rank_with_one_named_error(tmp_path):
    """--resume of a folder without a run: rank 0 alone looks at --out and raises; rank 1 would
    wait forever in its first collective without MPI_Abort."""
    r = subprocess.run([MPIEXEC, "-n", "2"] + MINIGPT + ["pretrain", "--out", "nothing",
                       "--resume", "--no-progress"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0
    assert "minigpt pretrain: error (rank 0 of 2):" in r.stderr, r.stderr
    assert r.stderr.count("error (rank") == 1


@needs_mpi
def test_finetune_with_a_short_last_batch_does_not_depend_on_n_and_k(tmp_path):
    """18 examples in batches of 4: the last batch (2 examples) is shorter than N*K = 4, so
    two micro-batches are empty (run with weight 0); classifier dropout 0.1 and the model's."""
    assert run(1, ["--steps", "2", "--out", "base"], tmp_path).returncode == 0
    ft = ["finetune", "--task", "classify", "--data", "rotten_tomatoes", "--init", "base",
          "--max-train", "18", "--max-test", "4", "--batch-size", "4", "--epochs", "1",
          "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for n, k in ((1, 1), (2, 2), (1, 4)):
        cmd = ([MPIEXEC, "-n", str(n)] if n > 1 else []) + MINIGPT + ft + [
            "--grad-accum", str(k), "--out", f"ft{n}{k}"]
        r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
    rows = {f: [json.loads(x) for x in (tmp_path / f / "metrics.jsonl").read_text().split("\n")
                if x] for f in ("ft11", "ft22", "ft14")}
    for f in ("ft22", "ft14"):
        for key in ("loss", "task_loss", "lm_loss"):
            np.testing.assert_allclose([r[key] for r in rows[f]], [r[key] for r in rows["ft11"]],
                                       rtol=2e-6, atol=2e-6)
        a = load_file(str(tmp_path / "ft11" / "ckpt" / "model.safetensors"))
        b = load_file(str(tmp_path / f / "ckpt" / "model.safetensors"))
        for name in a:
            np.testing.assert_allclose(a[name], b[name], rtol=0, atol=1e-7, err_msg=name)


class SimulatedRank:
    """A World for one rank of `size`, simulated in this process (its collectives are done by
    the test: the gradients of every simulated rank are summed by hand)."""

    def __init__(self, rank, size):
        self.rank, self.size, self.is_main = rank, size, rank == 0


@pytest.mark.parametrize("n,k", [(2, 1), (2, 2), (4, 1), (1, 4)])
def test_float64_gradient_of_n_ranks_x_k_micro_batches_is_the_one_process_gradient(n, k):
    """float64, dropout 0.1 everywhere: the summed weighted gradients of N simulated ranks x K
    micro-batches equal the one-process gradient of the global batch to 1e-12."""
    from minigpt.model import GPT, GPTConfig
    cfg = GPTConfig(vocab_size=11, n_ctx=6, n_layer=2, n_embd=8, n_head=2, dtype="float64",
                    embd_pdrop=0.1, attn_pdrop=0.1, resid_pdrop=0.1)
    model = GPT(cfg, seed=0)
    model.train()
    B = 8
    data = np.random.default_rng(1)
    x, y = data.integers(0, 11, (B, 6)), data.integers(0, 11, (B, 6))

    mgrandom.manual_seed(5)
    for p in model.parameters():
        p.grad = None
    loss = model.loss(x, y)
    loss.backward()
    want = [p.grad.copy() for p in model.parameters()]
    want_loss, end = loss.item(), mgrandom.get_rng(np).bit_generator.state

    total = [np.zeros_like(g) for g in want]
    total_loss = 0.0
    for r in range(n):
        mgrandom.manual_seed(5)  # every rank starts the step from the same state
        for p in model.parameters():
            p.grad = None
        masks = GlobalRowMasks(B)
        for rows in my_rows(B, SimulatedRank(r, n), k):
            with masks.rows(rows):
                part = model.loss(x[rows], y[rows])
            share = (rows.stop - rows.start) / B
            (part * share).backward()
            total_loss += part.item() * share
        assert mgrandom.get_rng(np).bit_generator.state == end  # same end state on each rank
        for t, p in zip(total, model.parameters()):
            t += p.grad
    assert abs(total_loss - want_loss) < 1e-12
    for t, w in zip(total, want):
        np.testing.assert_allclose(t, w, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- ring (assignment)



@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 7), length=st.integers(1, 23), seed=st.integers(0, 2**16))
def test_ring_allreduce_is_the_sum_on_every_rank(n, length, seed):
    """Any rank count, a length that N does not divide, one rank, fewer elements than ranks."""
    rng = np.random.default_rng(seed)
    bufs = [rng.standard_normal(length) for _ in range(n)]
    before = [b.copy() for b in bufs]
    out = ring_allreduce(bufs)
    for o in out:
        np.testing.assert_allclose(o, sum(before), rtol=1e-12, atol=1e-12)
    assert all(np.array_equal(a, b) for a, b in zip(bufs, before)), "inputs changed"


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 5), bucket=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_bucketed_average_is_the_mean_of_each_gradient(n, bucket, seed):
    rng = np.random.default_rng(seed)
    shapes = [(3, 4), (5,), (2, 2, 3), (1,)]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(n)]
    out = bucketed_average(grads, bucket)
    for r in range(n):
        for i, s in enumerate(shapes):
            assert out[r][i].shape == s
            np.testing.assert_allclose(out[r][i], sum(g[i] for g in grads) / n, atol=1e-12)
