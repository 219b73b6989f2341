"""Nothing a user saved is ever lost (issue 13): checks before --out is touched, a safe --force,
the run-folder lock, the crash-proof checkpoint swap, torn metrics lines, named errors for bad
--out / config.json / state.json, and a crash test that kills real `minigpt pretrain` processes.
Issue 24 (section 7): the decision taken under the lock, --out never the working directory,
interrupts keep the recorded steps, links never followed, modes from the umask, a full disk,
long paths and Ctrl-C while starting. The guarantees: minigpt/runfolder/__init__.py.
"""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import sigint_default

import minigpt.runfolder.swap as swap_mod
import minigpt.training.checkpoint as ckpt_mod
from minigpt import GPT, GPTConfig
from minigpt.tokenizers import BPETokenizer
from minigpt.training import (CheckpointError, FinetuneConfig, TrainConfig, TrainingError,
                              clean_leftovers, finetune, load_checkpoint, plot_losses, pretrain,
                              read_metrics, save_checkpoint)
from minigpt.runfolder import (CRASH_ENV, CRASH_EXIT_CODE, LOCK_FILE, PREVIOUS_RUN, RunDirectory,
                               find_checkpoint, resolve_checkpoint)

ROOT = Path(__file__).resolve().parents[1]
# single-threaded BLAS in the child processes: identical sums in every process, and no thread
# pools fighting over the 2 cores of CI
CHILD_ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
             "MINIGPT_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = np.random.default_rng(0)
    words = ["to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis",
             "nobler", "in", "mind", "suffer", "slings", "and", "arrows"]
    lines = [" ".join(rng.choice(words, size=rng.integers(3, 9))) for _ in range(800)]
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tiny(corpus, out, **kw):
    base = dict(data=str(corpus), preset="tiny", steps=6, batch_size=2, block_size=8, lr=3e-3,
                warmup=2, eval_interval=3, eval_batches=1, ckpt_interval=2, seed=3, out=str(out))
    base.update(kw)
    return TrainConfig(**base)


TINY_ARGS = ["--preset", "tiny", "--batch-size", "2", "--block-size", "8", "--lr", "3e-3",
             "--warmup", "2", "--eval-batches", "1", "--seed", "3", "--no-progress"]


def run_cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "minigpt", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**CHILD_ENV, **(env or {})})


def quiet(_msg):
    pass


def precious_run(path: Path) -> Path:
    """An old run folder with something the user must not lose."""
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("keep me")
    (path / "metrics.jsonl").write_text('{"step": 1, "loss": 3.0}\n')
    return path


def assert_intact(path: Path) -> None:
    assert (path / "notes.txt").read_text() == "keep me"
    assert not (path / PREVIOUS_RUN).exists() and not (path / LOCK_FILE).exists()


def weights(run) -> tuple:
    """(parameter name -> array, state) of the checkpoint in `run`."""
    model, _, state = load_checkpoint(run)
    return {k: np.array(v) for k, v in model.state_dict().items()}, state


# ----------------------------------------------------------------------------- 1. checks first

@pytest.mark.parametrize("bad", [["--data", "missing.txt"], ["--preset", "huge"]],
                         ids=["missing-corpus", "unknown-preset"])
def test_force_with_a_bad_argument_keeps_the_old_run(tmp_path, corpus, bad):
    """`pretrain --data missing.txt --out runs/old --force` used to delete runs/old first."""
    old = precious_run(tmp_path / "old")
    r = run_cli("pretrain", "--data", corpus, "--steps", "2", *TINY_ARGS, "--out", old, "--force",
                *bad)  # the later --data/--preset wins
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert_intact(old)


def test_finetune_force_with_missing_data_or_corrupt_init_keeps_the_old_run(tmp_path, corpus):
    from minigpt.cli import main as cli_main
    tok = BPETokenizer.train(corpus.read_text(), vocab_size=60)
    base = tmp_path / "base"
    save_checkpoint(base / "ckpt", GPT(GPTConfig(vocab_size=tok.vocab_size, n_ctx=16, n_layer=1,
                                                 n_embd=8, n_head=2)), tok, None, {"step": 0})
    data = tmp_path / "d.tsv"
    data.write_text("".join(f"to be {w}\t{w}\n" for w in ["yes", "no"] * 10))
    old = precious_run(tmp_path / "old")
    common = ["--task", "classify", "--out", old, "--force", "--no-progress"]
    assert cli_main(["finetune", "--data", str(tmp_path / "missing.tsv"), "--init", str(base),
                     *map(str, common)]) == 2
    assert_intact(old)
    weights_file = base / "ckpt" / "model.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:50])   # a corrupt --init
    assert cli_main(["finetune", "--data", str(data), "--init", str(base), *map(str, common)]) == 2
    assert_intact(old)


def _nan_at(monkeypatch, n):
    import minigpt.model
    real = minigpt.model.GPT.loss
    calls = {"n": 0}

    def loss(self, *a, **k):
        out = real(self, *a, **k)
        if self.training:
            calls["n"] += 1
            if calls["n"] == n:
                out.data = out.data * np.float32("nan")
        return out
    monkeypatch.setattr(minigpt.model.GPT, "loss", loss)


def test_force_replaces_the_old_run_only_after_the_first_new_checkpoint(tmp_path, corpus,
                                                                       monkeypatch):
    """A --force run that fails before its first checkpoint puts the old run back; one that
    reaches it moves the old run beside the folder (old.replaced-<date-time>/), never deletes it."""
    old = precious_run(tmp_path / "old")
    _nan_at(monkeypatch, 1)
    with pytest.raises(TrainingError, match="step 1"):
        pretrain(tiny(corpus, old), force=True, progress=False, log=quiet)
    assert_intact(old)
    assert read_metrics(old / "metrics.jsonl") == [{"step": 1, "loss": 3.0}]
    monkeypatch.undo()
    logs = []
    pretrain(tiny(corpus, old), force=True, progress=False, log=logs.append)
    assert not (old / "notes.txt").exists() and not (old / PREVIOUS_RUN).exists()
    assert load_checkpoint(old)[2]["step"] == 6
    kept = sorted(tmp_path.glob("old.replaced-*"))
    assert len(kept) == 1 and any(str(kept[0]) in m for m in logs), (kept, logs)
    assert_intact(kept[0])                                    # the user's files, all of them
    assert read_metrics(kept[0] / "metrics.jsonl") == [{"step": 1, "loss": 3.0}]
    # a second --force keeps the first new run too, under another name
    pretrain(tiny(corpus, old), force=True, progress=False, log=quiet)
    kept = sorted(tmp_path.glob("old.replaced-*"))
    assert len(kept) == 2 and sum((k / "notes.txt").exists() for k in kept) == 1
    assert any(find_checkpoint(k) is not None for k in kept)


def test_a_killed_force_start_is_undone_by_the_next_start(tmp_path, corpus):
    """Killed after moving the old run aside but before its first checkpoint: the next start
    puts the old run back (and then refuses to overwrite it without --force)."""
    old = precious_run(tmp_path / "old")
    r = run_cli("pretrain", "--data", corpus, "--steps", "4", "--ckpt-interval", "2", *TINY_ARGS,
                "--out", old, "--force", env={CRASH_ENV: "writing"})  # inside the first save
    assert r.returncode == CRASH_EXIT_CODE, r.stderr
    assert (old / PREVIOUS_RUN / "notes.txt").exists()        # moved aside, not deleted
    with pytest.raises(TrainingError, match="already exists"):
        pretrain(tiny(corpus, old), progress=False, log=quiet)
    assert (old / PREVIOUS_RUN).exists()                      # check() touches nothing
    logs = []
    with pytest.raises(CheckpointError, match="no checkpoint"):  # the old run had none
        pretrain(tiny(corpus, old), resume=True, progress=False, log=logs.append)
    assert any("put back the old run" in m for m in logs), logs  # taking the folder undid it
    assert_intact(old)
    assert read_metrics(old / "metrics.jsonl") == [{"step": 1, "loss": 3.0}]


@pytest.mark.parametrize("phase", [".moving", ".deleting-new", ".returning"])
def test_an_interrupted_put_back_is_finished_by_the_next_start(tmp_path, phase):
    """Killed while moving the old run aside or back: the next start that takes the folder
    completes the put-back without deleting an old file or keeping a new one."""
    old = precious_run(tmp_path / "old")
    aside = old / PREVIOUS_RUN
    aside.mkdir()
    (aside / phase).write_bytes(b"")
    os.replace(old / "notes.txt", aside / "notes.txt")        # one old file moved, one not
    if phase == ".deleting-new":                              # the new run's file, not deleted yet
        os.replace(old / "metrics.jsonl", aside / "metrics.jsonl")
        (old / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n')
    folder = RunDirectory(old, resume=True, log=quiet)
    folder.check()
    folder.open()
    folder.close(failed=False)
    assert_intact(old)
    assert read_metrics(old / "metrics.jsonl") == [{"step": 1, "loss": 3.0}]
    assert sorted(p.name for p in old.iterdir()) == ["metrics.jsonl", "notes.txt"]


def test_a_failed_start_leaves_nothing_behind(tmp_path, corpus, monkeypatch):
    """Used to leave metrics.jsonl, so the corrected rerun was refused without --force."""
    out = tmp_path / "new"
    _nan_at(monkeypatch, 1)
    with pytest.raises(TrainingError):
        pretrain(tiny(corpus, out), progress=False, log=quiet)
    assert not out.exists()
    monkeypatch.undo()
    assert pretrain(tiny(corpus, out), progress=False, log=quiet)["status"] == "completed"


def test_a_second_ctrl_c_aborts_and_a_new_run_leaves_nothing(tmp_path, corpus, monkeypatch):
    """First Ctrl-C: stop at the step boundary (and save); a second one aborts at once. Before
    the first checkpoint, the aborted new run leaves no folder behind."""
    import minigpt.data
    real = minigpt.data.get_batch

    def two_ctrl_c(*a, **k):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        return real(*a, **k)
    monkeypatch.setattr(minigpt.data, "get_batch", two_ctrl_c)
    out = tmp_path / "run"
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a background job
    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny(corpus, out), progress=False, log=quiet)
    assert not out.exists()
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler restored


def test_an_abandoned_start_does_not_block_the_rerun(tmp_path, corpus):
    """A start killed before its first checkpoint (metrics.jsonl and a stale lock left): the
    rerun without --force starts over instead of refusing."""
    out = tmp_path / "run"
    r = run_cli("pretrain", "--data", corpus, "--steps", "4", "--ckpt-interval", "2", *TINY_ARGS,
                "--out", out, env={CRASH_ENV: "writing"})
    assert r.returncode == CRASH_EXIT_CODE and (out / LOCK_FILE).exists()
    logs = []
    assert pretrain(tiny(corpus, out), progress=False, log=logs.append)["step"] == 6
    assert any("unfinished start" in m for m in logs)


# ----------------------------------------------------------------------------- 2. the lock

def _write_lock(run: Path, pid: int, host=None):
    run.mkdir(parents=True, exist_ok=True)
    (run / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                             "started": "2026-11-26 12:00:00",
                                             "command": "pretrain"}))


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path, corpus):
    """The issue's case: a second `pretrain --force` on a running run's folder. It is refused
    naming the first run's PID, and the first run finishes untouched."""
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "minigpt", "pretrain", "--data", str(corpus),
                              "--steps", "100000", "--ckpt-interval", "5", *TINY_ARGS,
                              "--out", str(out)], cwd=ROOT, env=CHILD_ENV, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             preexec_fn=sigint_default)
    try:
        deadline = time.time() + 120
        while not (out / "ckpt").is_dir():
            assert first.poll() is None and time.time() < deadline, first.communicate()
            time.sleep(0.1)
        r = run_cli("pretrain", "--data", corpus, "--steps", "2", *TINY_ARGS, "--out", out,
                    "--force")
        assert r.returncode == 2 and f"in use by process {first.pid}" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
        with pytest.raises(TrainingError, match=f"process {first.pid}"):
            finetune(FinetuneConfig(init=str(out), data="x.tsv", out=str(out)), force=True,
                     progress=False, log=quiet)
    finally:
        first.send_signal(signal.SIGINT)          # stop at a step boundary, with a checkpoint
        _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err
    rows = read_metrics(out / "metrics.jsonl")
    assert load_checkpoint(out)[2]["step"] == rows[-1]["step"] == len(rows)
    assert not (out / LOCK_FILE).exists()


def test_finetune_is_refused_while_a_live_process_holds_the_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out = tmp_path / "ft"
        _write_lock(out, holder.pid)
        with pytest.raises(TrainingError, match=f"in use by process {holder.pid}"):
            finetune(FinetuneConfig(init="nowhere", data="x.tsv", out=str(out)), force=True,
                     progress=False, log=quiet)
        assert json.loads((out / LOCK_FILE).read_text())["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_message(tmp_path, corpus):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "run"
    pretrain(tiny(corpus, out, steps=2), progress=False, log=quiet)
    _write_lock(out, dead.pid)
    (out / f"{LOCK_FILE}.{dead.pid}.tmp").write_text("{")    # what a killed process left while
    (out / ".metrics.jsonl.k2j4.tmp").write_text('{"st')     # taking the lock / writing metrics
    logs = []
    summary = pretrain(tiny(corpus, out, steps=4), resume=True, progress=False, log=logs.append)
    assert summary["step"] == 4
    assert any(f"process {dead.pid}" in m and "no longer running" in m for m in logs), logs
    assert sorted(p.name for p in out.iterdir()) == ["ckpt", "loss.png", "metrics.jsonl"]


def test_a_lock_from_another_host_is_respected(tmp_path, corpus):
    out = tmp_path / "run"
    _write_lock(out, 1, host="some-other-machine")
    (out / "metrics.jsonl").write_text("")
    with pytest.raises(TrainingError, match="some-other-machine.*delete"):
        pretrain(tiny(corpus, out), force=True, progress=False, log=quiet)


# ----------------------------------------------------------------------------- 3. the swap

def small_model(seed=0):
    return GPT(GPTConfig(vocab_size=11, n_ctx=8, n_layer=1, n_embd=8, n_head=2), seed=seed)


def test_a_second_crash_in_the_swap_still_leaves_a_checkpoint(tmp_path, monkeypatch):
    """The issue's case: a kill between the two renames leaves only .ckpt.old; the next save
    used to delete it before renaming the new checkpoint in, so a kill there lost both."""
    save_checkpoint(tmp_path / "ckpt", small_model(), state={"step": 3})
    os.replace(tmp_path / "ckpt", tmp_path / ".ckpt.old")   # first crash, between the renames
    real_replace = os.replace

    def crash_when_placing(src, dst):
        if Path(dst).name == "ckpt":
            raise KeyboardInterrupt("killed")                  # second crash, at the swap
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_when_placing)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "ckpt", small_model(1), state={"step": 4})
    monkeypatch.undo()
    assert load_checkpoint(tmp_path)[2]["step"] == 3
    save_checkpoint(tmp_path / "ckpt", small_model(1), state={"step": 4})
    assert load_checkpoint(tmp_path)[2]["step"] == 4


@pytest.mark.parametrize("point", ["written", "old-moved", "placed", "discarding"])
def test_every_instant_of_the_swap_leaves_a_checkpoint(tmp_path, monkeypatch, point):
    """Stop the save at each named point (as a kill would): a complete checkpoint is found,
    and clean_leftovers then leaves exactly ckpt/, holding the newest complete one."""
    save_checkpoint(tmp_path / "ckpt", small_model(), state={"step": 1})
    save_checkpoint(tmp_path / "ckpt", small_model(), state={"step": 2})

    class Killed(BaseException):
        pass

    def crash(name):
        if name == point:
            raise Killed
    monkeypatch.setattr(ckpt_mod, "crash_point", crash)   # "writing"
    monkeypatch.setattr(swap_mod, "crash_point", crash)   # the points of the swap itself
    with pytest.raises(Killed):
        save_checkpoint(tmp_path / "ckpt", small_model(1), state={"step": 3})
    monkeypatch.undo()
    found = load_checkpoint(tmp_path)[2]["step"]
    assert found in (2, 3)
    clean_leftovers(tmp_path, log=quiet)
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]
    assert load_checkpoint(tmp_path)[2]["step"] == found


def test_leftovers_are_removed_but_never_the_only_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "ckpt", small_model(), state={"step": 5})
    (tmp_path / ".ckpt.tmp123").mkdir()                       # an unfinished write
    (tmp_path / ".ckpt.tmp123" / "config.json").write_text("{")
    os.replace(tmp_path / "ckpt", tmp_path / ".ckpt.old")     # the only complete checkpoint
    logs = []
    clean_leftovers(tmp_path, log=logs.append)
    assert sorted(os.listdir(tmp_path)) == ["ckpt"] and load_checkpoint(tmp_path)[2]["step"] == 5
    # a finished but never renamed first checkpoint (killed just before its rename) is kept too
    os.replace(tmp_path / "ckpt", tmp_path / ".ckpt.tmp999")
    assert load_checkpoint(tmp_path)[2]["step"] == 5          # sample/eval/--resume find it
    clean_leftovers(tmp_path, log=logs.append)
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]


def test_sample_and_eval_find_the_checkpoint_a_crash_left_as_old(tmp_path, corpus):
    out = tmp_path / "run"
    pretrain(tiny(corpus, out, steps=2), progress=False, log=quiet)
    os.replace(out / "ckpt", out / ".ckpt.old")
    r = run_cli("sample", "--ckpt", out, "--prompt", "to be", "--max-new-tokens", "3")
    assert r.returncode == 0, r.stderr
    r = run_cli("eval", "--ckpt", out)
    assert r.returncode == 0 and "perplexity" in r.stdout, r.stderr


# ----------------------------------------------------------------------------- 4. metrics

def test_a_torn_metrics_line_is_skipped_with_a_warning_naming_the_file(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    pretrain(tiny(corpus, out, steps=4), progress=False, log=quiet)
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "loss": 2.9')                  # killed while writing a line
    capsys.readouterr()
    assert plot_losses(out) is None or (out / "loss.png").is_file()
    assert str(out / "metrics.jsonl") in capsys.readouterr().err
    summary = pretrain(tiny(corpus, out, steps=6), resume=True, progress=False, log=quiet)
    assert summary["step"] == 6
    err = capsys.readouterr().err
    assert f"{out / 'metrics.jsonl'}:5" in err and "skipping" in err
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]


# ----------------------------------------------------------------------------- 5. named errors

def test_out_that_is_a_file_is_a_short_error(tmp_path, corpus):
    f = tmp_path / "file.txt"
    f.write_text("mine")
    r = run_cli("pretrain", "--data", corpus, "--steps", "2", *TINY_ARGS, "--out", f, "--force")
    assert r.returncode == 2 and "is an existing file" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and f.read_text() == "mine"


def test_out_in_a_read_only_directory_is_a_short_error(tmp_path, corpus):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        r = run_cli("pretrain", "--data", corpus, "--steps", "2", *TINY_ARGS, "--out",
                    ro / "run")
        assert r.returncode == 2 and "read-only" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and not (ro / "run").exists()
    finally:
        ro.chmod(0o755)


def test_config_json_holding_a_list_is_a_named_error(tmp_path, corpus):
    out = tmp_path / "run"
    pretrain(tiny(corpus, out, steps=2), progress=False, log=quiet)
    (out / "ckpt" / "config.json").write_text("[1, 2, 3]")
    with pytest.raises(CheckpointError, match=r"config\.json: expected a JSON object"):
        load_checkpoint(out)
    r = run_cli("sample", "--ckpt", out, "--max-new-tokens", "2")
    assert r.returncode == 2 and "config.json" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("state", [{}, [], {"step": 2, "train_config": []}],
                         ids=["empty-object", "list", "bad-train-config"])
def test_a_bad_state_json_on_resume_is_a_named_error(tmp_path, corpus, state):
    out = tmp_path / "run"
    pretrain(tiny(corpus, out, steps=2), progress=False, log=quiet)
    (out / "ckpt" / "state.json").write_text(json.dumps(state))
    r = run_cli("pretrain", "--out", out, "--resume", "--no-progress")
    assert r.returncode == 2 and "state.json" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (out / LOCK_FILE).exists()


# ----------------------------------------------------------------------------- 6. crash test

CRASH_STEPS = 60


def _read_or_empty(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def test_killed_pretrain_always_leaves_a_loadable_checkpoint_and_resumes_exactly(corpus,
                                                                                tmp_path):
    """Kill a real `minigpt pretrain` at named points inside the checkpoint swap (several
    times in a row) and at random moments (SIGKILL); after every kill a complete checkpoint
    loads and its step never goes back; the run resumed to the end equals, weight for weight
    and loss for loss, a run that was never interrupted."""
    args = ["pretrain", "--data", corpus, "--steps", CRASH_STEPS, "--ckpt-interval", "2",
            "--eval-interval", "10", *TINY_ARGS]
    ref = tmp_path / "ref"
    r = run_cli(*args, "--out", ref)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "run"
    seen = [0]

    def check_loadable(why):
        _, state = weights(out)
        assert state["step"] >= seen[-1], why
        seen.append(state["step"])

    # inside the swap: the second save's two renames, then crash after crash on resume
    for n, point in enumerate(["old-moved@2", "old-moved", "placed", "discarding", "written",
                               "old-moved"]):
        r = run_cli(*args, "--out", out, *(["--resume"] if n else []), env={CRASH_ENV: point})
        assert r.returncode == CRASH_EXIT_CODE, (point, r.stderr)
        check_loadable(point)
    # random SIGKILLs (a fixed seed, so a failure can be replayed): every other one timed from
    # the moment the process holds the run's lock, so most land in training and saving
    rng = random.Random(int(os.environ.get("MINIGPT_CRASH_SEED", "13")))
    for k in range(int(os.environ.get("MINIGPT_CRASH_KILLS", "10"))):  # more: a stress run
        p = subprocess.Popen([sys.executable, "-m", "minigpt", *map(str, args), "--out", str(out),
                              "--resume"], cwd=ROOT, env=CHILD_ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        if k % 2:
            deadline = time.time() + 60
            while p.poll() is None and time.time() < deadline and \
                    f'"pid": {p.pid},' not in _read_or_empty(out / LOCK_FILE):
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.6))
        else:
            time.sleep(rng.uniform(0.05, 1.5))
        p.kill()
        _, err = p.communicate()
        assert p.returncode in (0, -signal.SIGKILL), err
        check_loadable(f"kill {k}")
    r = run_cli(*args, "--out", out, "--resume")
    assert r.returncode == 0, r.stderr
    got, state = weights(out)
    want, ref_state = weights(ref)
    assert state["step"] == ref_state["step"] == CRASH_STEPS
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    strip = [{k: v for k, v in row.items() if k != "tokens_per_s"}
             for row in read_metrics(out / "metrics.jsonl")]
    assert strip == [{k: v for k, v in row.items() if k != "tokens_per_s"}
                     for row in read_metrics(ref / "metrics.jsonl")]
    assert sorted(p.name for p in out.iterdir()) == ["ckpt", "loss.png", "metrics.jsonl"]
    assert len(seen) > 10 and seen[-1] > seen[1]


def test_a_force_start_killed_after_its_first_checkpoint_keeps_both_runs(tmp_path, corpus):
    """Killed between the new run's first checkpoint and moving the old run out: the next start
    keeps the new run in the folder and the old one beside it, deleting neither."""
    old = tmp_path / "old"
    pretrain(tiny(corpus, old), progress=False, log=quiet)   # the new run, with its checkpoint
    aside = old / PREVIOUS_RUN
    aside.mkdir()
    (aside / "notes.txt").write_text("keep me")              # the old run, moved aside, unmarked
    logs = []
    folder = RunDirectory(old, resume=True, log=logs.append)
    folder.check()
    folder.open()
    folder.close(failed=False)
    kept = sorted(tmp_path.glob("old.replaced-*"))
    assert len(kept) == 1 and (kept[0] / "notes.txt").read_text() == "keep me"
    assert not aside.exists() and load_checkpoint(old)[2]["step"] == 6
    assert any("kept in" in m for m in logs), logs


# ----------------------------------------------------------------------------- 7. issue 24

def test_a_run_finished_between_anothers_check_and_its_start_survives(tmp_path, corpus,
                                                                     monkeypatch):
    """Issue 24, 1: B checks the new folder (empty), then does slow work (held here between
    its check and its start); meanwhile A runs to the end in the same folder. B, let go, must
    be refused ("already exists"), decided under the lock, and A's run must survive; it used
    to be deleted as "an unfinished start"."""
    import threading
    out = tmp_path / "run"
    b_checked, let_b_go = threading.Event(), threading.Event()
    real_open = RunDirectory.open

    def open_held_for_b(self):
        if threading.current_thread().name == "B":
            b_checked.set()
            assert let_b_go.wait(120)
        return real_open(self)
    monkeypatch.setattr(RunDirectory, "open", open_held_for_b)
    outcome = {}

    def run_b():
        try:
            outcome["b"] = pretrain(tiny(corpus, out, seed=9), progress=False, log=quiet)
        except BaseException as e:   # noqa: BLE001 - handed to the main thread
            outcome["b"] = e
    b = threading.Thread(target=run_b, name="B")
    b.start()
    try:
        assert b_checked.wait(120)
        assert pretrain(tiny(corpus, out), progress=False, log=quiet)["step"] == 6   # A
        a_weights, a_state = weights(out)
        a_rows = read_metrics(out / "metrics.jsonl")
    finally:
        let_b_go.set()
        b.join(120)
    assert isinstance(outcome["b"], TrainingError), outcome
    assert "already exists" in str(outcome["b"])
    got, state = weights(out)
    assert state["step"] == a_state["step"] == 6 and read_metrics(out / "metrics.jsonl") == a_rows
    assert all(np.array_equal(got[k], a_weights[k]) for k in a_weights)
    assert not (out / LOCK_FILE).exists() and not list(tmp_path.glob("run.*"))


@pytest.mark.parametrize("out", ["", ".", "..", "WORK", "PARENT", "sub/../..", "HOME"])
def test_out_may_not_be_the_working_directory_or_hold_it(tmp_path, corpus, monkeypatch, out):
    """Issue 24, 2: with --force, `--out ''` / '.' / '..' used to move the working directory's
    own files (or the directory itself) into .previous-run. Refused with a named error, before
    anything is moved; the home folder likewise."""
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "notes.txt").write_text("keep me")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    out = {"WORK": str(work), "PARENT": str(tmp_path), "HOME": str(home)}.get(out, out)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(TrainingError, match="working directory|home folder") as e:
        pretrain(tiny(corpus, out), force=True, progress=False, log=quiet)
    assert "--out" in str(e.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert (work / "notes.txt").read_text() == "keep me"


def test_the_out_rule_is_exactly_the_working_directory_and_its_parents(tmp_path, monkeypatch):
    """Any relative --out made of '.', '..', '' and names, from a working directory two levels
    down: refused exactly when it resolves to the working directory or a folder holding it."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from minigpt.runfolder import RunFolderError, check_out_path
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(work)

    @settings(max_examples=100, deadline=None, derandomize=True)
    @given(st.lists(st.sampled_from([".", "..", "", "b", "run", "x"]), max_size=6))
    def check(parts):
        out = os.path.join(*parts) if parts else ""
        real = Path(os.path.realpath(out))
        refused = real == work or real in work.parents
        try:
            check_out_path(out)
        except RunFolderError as e:
            assert refused, (out, str(e))
            assert "working directory" in str(e) or "root folder" in str(e)
        else:
            assert not refused, out
    check()


def test_out_empty_on_the_command_line_is_a_short_error(tmp_path, corpus):
    (tmp_path / "notes.txt").write_text("keep me")
    r = subprocess.run([sys.executable, "-m", "minigpt", "pretrain", "--data", str(corpus),
                        "--steps", "2", *TINY_ARGS, "--out", "", "--force"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300,
                       env={**CHILD_ENV, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2 and "working directory" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def _two_ctrl_c_at_batch(monkeypatch, n):
    """Two real SIGINTs while the n-th training batch is drawn: the second aborts."""
    import minigpt.data
    real = minigpt.data.get_batch
    calls = {"n": 0}

    def get_batch(*a, **k):
        calls["n"] += 1
        if calls["n"] == n:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return real(*a, **k)
    monkeypatch.setattr(minigpt.data, "get_batch", get_batch)


def test_a_second_ctrl_c_keeps_the_recorded_steps(tmp_path, corpus, monkeypatch):
    """Issue 24, 3: a second Ctrl-C before the first checkpoint used to delete the whole new
    folder, metrics.jsonl included. The recorded steps stay; the next start keeps them beside
    as NAME.unfinished-<date-time>/ and starts over."""
    out = tmp_path / "run"
    _two_ctrl_c_at_batch(monkeypatch, 4)
    logs = []
    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny(corpus, out, ckpt_interval=100, eval_interval=100), progress=False,
                 log=logs.append)
    monkeypatch.undo()
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3]
    assert not (out / LOCK_FILE).exists() and find_checkpoint(out) is None
    assert any("kept in" in m for m in logs), logs
    logs = []
    assert pretrain(tiny(corpus, out), progress=False, log=logs.append)["step"] == 6
    kept = sorted(tmp_path.glob("run.unfinished-*"))
    assert len(kept) == 1 and any(str(kept[0]) in m for m in logs), logs
    assert [r["step"] for r in read_metrics(kept[0] / "metrics.jsonl")] == [1, 2, 3]


def test_a_second_ctrl_c_under_force_puts_the_old_run_back_and_keeps_the_new_steps(
        tmp_path, corpus, monkeypatch):
    old = precious_run(tmp_path / "old")
    _two_ctrl_c_at_batch(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny(corpus, old, ckpt_interval=100, eval_interval=100), force=True,
                 progress=False, log=quiet)
    assert_intact(old)
    assert read_metrics(old / "metrics.jsonl") == [{"step": 1, "loss": 3.0}]
    kept = sorted(tmp_path.glob("old.unfinished-*"))
    assert len(kept) == 1 and [r["step"] for r in read_metrics(kept[0] / "metrics.jsonl")] == [1, 2]


def test_a_put_back_killed_while_keeping_the_new_steps_is_finished_in_the_same_folder(tmp_path):
    """The put-back's marker names the folder that keeps the stopped run's recorded steps, so a
    kill half way through moving them is finished by the next start into that same folder."""
    old = precious_run(tmp_path / "old")
    aside = old / PREVIOUS_RUN
    aside.mkdir()
    for name in ("notes.txt", "metrics.jsonl"):                # the old run, set aside
        os.replace(old / name, aside / name)
    keep = tmp_path / "old.unfinished-20260101-000000"
    keep.mkdir()
    (keep / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n')   # moved before the kill
    (old / "loss.png").write_text("the new run's")                      # not yet
    (aside / ".deleting-new").write_text(keep.name)
    folder = RunDirectory(old, resume=True, log=quiet)
    folder.check()
    folder.open()
    folder.close(failed=False)
    assert_intact(old)
    assert sorted(p.name for p in old.iterdir()) == ["metrics.jsonl", "notes.txt"]
    assert read_metrics(old / "metrics.jsonl") == [{"step": 1, "loss": 3.0}]
    assert sorted(p.name for p in keep.iterdir()) == ["loss.png", "metrics.jsonl"]
    assert list(tmp_path.glob("old.unfinished-*")) == [keep]


def test_a_folder_named_like_a_start_file_is_not_an_unfinished_start(tmp_path, corpus):
    """Only files count as what a start writes: a user's folder named metrics.jsonl makes the
    folder a run to protect (refused without --force), never deleted as an unfinished start."""
    out = tmp_path / "run"
    (out / "metrics.jsonl").mkdir(parents=True)
    (out / "metrics.jsonl" / "notes.txt").write_text("keep me")
    with pytest.raises(TrainingError, match="already exists"):
        pretrain(tiny(corpus, out), progress=False, log=quiet)
    assert (out / "metrics.jsonl" / "notes.txt").read_text() == "keep me"


def test_sample_and_eval_find_the_old_run_after_a_force_start_is_killed(tmp_path, corpus):
    """Issue 24, 3: killed during --force before its first checkpoint, the old run waits in
    .previous-run/ until the next start; sample and eval used to say "no checkpoint"."""
    old = tmp_path / "old"
    pretrain(tiny(corpus, old, steps=2), progress=False, log=quiet)
    old_weights, _ = weights(old)
    r = run_cli("pretrain", "--data", corpus, "--steps", "4", "--ckpt-interval", "2", *TINY_ARGS,
                "--out", old, "--force", env={CRASH_ENV: "writing"})   # inside the first save
    assert r.returncode == CRASH_EXIT_CODE, r.stderr
    assert (old / PREVIOUS_RUN / "ckpt").is_dir() and not (old / "ckpt").exists()
    got, state = weights(old)
    assert state["step"] == 2 and all(np.array_equal(got[k], old_weights[k]) for k in got)
    r = run_cli("eval", "--ckpt", old)
    assert r.returncode == 0 and "perplexity" in r.stdout, r.stderr
    r = run_cli("sample", "--ckpt", old, "--prompt", "to be", "--max-new-tokens", "3")
    assert r.returncode == 0, r.stderr


# links: each place a run writes, moves or deletes through

def _user_file(tmp_path) -> Path:
    f = tmp_path / "elsewhere" / "mine.txt"
    f.parent.mkdir(exist_ok=True)
    f.write_text("the user's own file")
    return f


@pytest.mark.parametrize("name", ["loss.png", "metrics.jsonl"])
def test_resume_refuses_a_file_linked_elsewhere(tmp_path, corpus, name):
    """Issue 24, 4: loss.png linked to a user's file was overwritten on --resume."""
    out = tmp_path / "run"
    pretrain(tiny(corpus, out, steps=2), progress=False, log=quiet)
    mine = _user_file(tmp_path)
    (out / name).unlink(missing_ok=True)
    (out / name).symlink_to(mine)
    with pytest.raises(TrainingError, match=f"{name} -> .*symbolic link"):
        pretrain(tiny(corpus, out, steps=4), resume=True, progress=False, log=quiet)
    assert mine.read_text() == "the user's own file" and (out / name).is_symlink()
    assert load_checkpoint(out)[2]["step"] == 2 and not (out / LOCK_FILE).exists()


def test_resume_refuses_snapshots_linked_elsewhere(tmp_path, corpus):
    """Issue 24, 4: `snapshots` linked elsewhere wrote there and deleted a folder in it."""
    out = tmp_path / "run"
    pretrain(tiny(corpus, out, steps=2, snapshot_every=2), progress=False, log=quiet)
    target = tmp_path / "elsewhere"
    os.replace(out / "snapshots", target)
    (target / ".step-000004.tmpdead").mkdir()          # what the tidying would delete
    (out / "snapshots").symlink_to(target)
    with pytest.raises(TrainingError, match="snapshots -> .*symbolic link"):
        pretrain(tiny(corpus, out, steps=4), resume=True, progress=False, log=quiet)
    assert sorted(p.name for p in target.iterdir()) == [".step-000004.tmpdead", "step-000002"]


def test_previous_run_linked_elsewhere_is_refused(tmp_path, corpus):
    """Issue 24, 4: `.previous-run` linked elsewhere moved the target's files into the run."""
    out = tmp_path / "run"
    pretrain(tiny(corpus, out, steps=2), progress=False, log=quiet)
    target = _user_file(tmp_path).parent
    (out / PREVIOUS_RUN).symlink_to(target)
    for kw in (dict(resume=True), dict(force=True)):
        with pytest.raises(TrainingError, match=r"\.previous-run -> .*symbolic link"):
            pretrain(tiny(corpus, out, steps=4), progress=False, log=quiet, **kw)
        assert sorted(p.name for p in target.iterdir()) == ["mine.txt"]
    assert resolve_checkpoint(out) == out / "ckpt"


def test_a_lock_linked_elsewhere_is_never_read_through(tmp_path, corpus):
    out = tmp_path / "run"
    pretrain(tiny(corpus, out, steps=2), progress=False, log=quiet)
    mine = _user_file(tmp_path)
    mine.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    (out / LOCK_FILE).symlink_to(mine)
    with pytest.raises(TrainingError, match=r"\.lock -> .*symbolic link"):
        pretrain(tiny(corpus, out, steps=4), resume=True, progress=False, log=quiet)
    assert (out / LOCK_FILE).is_symlink() and json.loads(mine.read_text())["pid"] == os.getpid()


def test_force_moves_links_as_links(tmp_path, corpus):
    """The old run's links go aside and come back (or are kept) as links; their targets are
    never touched."""
    old = precious_run(tmp_path / "old")
    target = _user_file(tmp_path).parent
    (old / "snapshots").symlink_to(target)
    (old / "loss.png").symlink_to(target / "mine.txt")
    pretrain(tiny(corpus, old), force=True, progress=False, log=quiet)
    kept, = tmp_path.glob("old.replaced-*")
    assert (kept / "snapshots").is_symlink() and (kept / "loss.png").is_symlink()
    assert sorted(p.name for p in target.iterdir()) == ["mine.txt"]
    assert (target / "mine.txt").read_text() == "the user's own file"


# modes, a full disk, long paths, Ctrl-C while starting

@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def test_files_and_folders_follow_the_umask(tmp_path, corpus, umask):
    """Issue 24, 8: checkpoint folders were 0700 and files 0600 whatever the umask."""
    import stat
    old = precious_run(tmp_path / "old")
    pretrain(tiny(corpus, old, tokenizer="bpe", bpe_vocab_size=40, snapshot_every=3),
             force=True, progress=False, log=quiet)
    kept, = tmp_path.glob("old.replaced-*")
    wrong = []
    for root in (old, kept):
        for p in [root, *root.rglob("*")]:
            want = (0o777 if p.is_dir() else 0o666) & ~umask
            if stat.S_IMODE(p.stat().st_mode) != want and p.name not in ("notes.txt",
                                                                       "metrics.jsonl"):
                wrong.append(f"{p.relative_to(tmp_path)} {oct(stat.S_IMODE(p.stat().st_mode))}")
    assert not wrong, f"want {oct(0o666 & ~umask)} / {oct(0o777 & ~umask)}: {wrong}"


def _disk_full_at(monkeypatch, n):
    """The n-th safetensors write fails as a full disk would."""
    import errno

    from minigpt import safetensors
    real, calls = safetensors.save_file, {"n": 0}

    def save_file(tensors, path, *a, **k):
        calls["n"] += 1
        if calls["n"] == n:
            with open(path, "wb") as f:
                f.write(b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(tensors, path, *a, **k)
    monkeypatch.setattr(safetensors, "save_file", save_file)


def test_a_full_disk_during_a_checkpoint_is_a_named_error(tmp_path, corpus, monkeypatch):
    """Issue 24, 5: OSError 28 during a checkpoint was a traceback. Now a named error; no
    temporary is left; the previous checkpoint is intact and --resume continues from it."""
    out = tmp_path / "run"
    _disk_full_at(monkeypatch, 3)   # the first checkpoint writes 2 files; the second fails
    with pytest.raises(TrainingError, match="No space left on device") as e:
        pretrain(tiny(corpus, out), progress=False, log=quiet)
    assert str(out / "ckpt") in str(e.value) and "intact" in str(e.value)
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == ["ckpt", "metrics.jsonl"]
    assert load_checkpoint(out)[2]["step"] == 2
    assert pretrain(tiny(corpus, out), resume=True, progress=False, log=quiet)["step"] == 6


def test_a_full_disk_from_the_command_line_exits_2_without_a_traceback(tmp_path, corpus):
    out = tmp_path / "run"
    code = ("import errno, os, sys, minigpt.safetensors as s\n"
            "def full(*a, **k): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
            "s.save_file = full\n"
            "from minigpt.cli import main\n"
            f"sys.exit(main(sys.argv[1:]))\n")
    r = subprocess.run([sys.executable, "-c", code, "pretrain", "--data", str(corpus), "--steps",
                        "2", *TINY_ARGS, "--out", str(out)], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env=CHILD_ENV)
    assert r.returncode == 2 and "No space left on device" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not list(out.glob(".ckpt.tmp*"))


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_disk_while_writing_metrics_is_a_named_error():
    """/dev/full fails every write with ENOSPC, as a full disk does."""
    from minigpt.runfolder import RunFolderError, open_metrics
    with open_metrics("/dev/full", append=True) as f:
        f.write('{"step": 1, "loss": 2.0}\n')
        with pytest.raises(RunFolderError, match="/dev/full: No space left on device"):
            f.flush()


def test_long_paths(tmp_path, corpus):
    """Issue 24, 5: a 300-character --out was a traceback. A name longer than the file system
    allows is a named error (nothing created); a 300-character path of normal names works."""
    too_long = tmp_path / ("a" * 300)
    r = run_cli("pretrain", "--data", corpus, "--steps", "2", *TINY_ARGS, "--out", too_long)
    assert r.returncode == 2 and "300 bytes" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not too_long.parent.joinpath("a" * 10).exists()
    with pytest.raises(CheckpointError, match="File name too long"):
        load_checkpoint(too_long)
    # room beside it for NAME.replaced-<date-time>: a name of 240 is refused up front
    with pytest.raises(TrainingError, match="at most"):
        pretrain(tiny(corpus, tmp_path / ("b" * 240)), progress=False, log=quiet)
    deep = tmp_path.joinpath(*["c" * 50] * 6)
    assert len(str(deep)) > 300
    assert pretrain(tiny(corpus, deep, steps=2), progress=False, log=quiet)["step"] == 2
    assert load_checkpoint(deep)[2]["step"] == 2


def test_ctrl_c_while_starting_is_not_a_traceback(tmp_path, corpus):
    """Issue 24, 5: Ctrl-C during start-up (parsing, corpus, tokenizer, taking the folder, the
    first steps) was a traceback. At any moment: no traceback, exit 130 (or a normal end), and
    no folder left by a start that recorded nothing. (Python's own imports come first: a Ctrl-C
    inside `import numpy` is the interpreter's, so the child signals when they are done.)

    A Ctrl-C that lands after the run finished, while the interpreter shuts down, meets SIGINT's
    default action (Python restores it there): the process ends "killed by SIGINT" (-2 here,
    130 in a shell's $?). That is allowed only when the run had completed and its checkpoint
    loads: nothing was lost, nothing was half-written."""
    code = ("import sys\n"
            "from minigpt.cli import main\n"
            "print('imported', file=sys.stderr, flush=True)\n"
            "sys.exit(main(sys.argv[1:]))\n")
    rng = random.Random(5)
    for k in range(6):
        out = tmp_path / f"run{k}"
        p = subprocess.Popen([sys.executable, "-c", code, "pretrain", "--data", str(corpus),
                              "--tokenizer", "bpe", "--bpe-vocab-size", "200", "--steps", "3",
                              "--ckpt-interval", "100", *TINY_ARGS, "--out", str(out)],
                             cwd=ROOT, env=CHILD_ENV, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, preexec_fn=sigint_default)
        assert p.stderr.readline().strip() == "imported"
        time.sleep(rng.uniform(0.0, 1.0))
        p.send_signal(signal.SIGINT)
        stdout, err = p.communicate(timeout=120)
        assert "Traceback" not in err, err
        assert p.returncode in (0, 130, -signal.SIGINT), (p.returncode, err)
        if p.returncode == -signal.SIGINT:       # the signal met the interpreter's shutdown
            assert "completed at step 3" in stdout and err == "", (stdout, err)
            load_checkpoint(out)
        if p.returncode == 130 and not (out / "metrics.jsonl").exists():
            assert not out.exists(), sorted(out.iterdir())


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
def test_ctrl_c_before_the_first_step_exits_130_and_leaves_no_folder(tmp_path, corpus,
                                                                    monkeypatch, capsys,
                                                                    command):
    """A Ctrl-C that the loop sees before its first step (the start took long: a big
    tokenizer) used to end pretrain in a traceback (the summary formatted a loss that no step
    had produced) and finetune with a checkpoint of weights it had not trained. A new run that
    trained nothing saves nothing and leaves no folder (exit 130)."""
    import minigpt.training.run as run_mod
    from minigpt.cli import main
    out = tmp_path / "run"
    if command == "pretrain":
        args = ["pretrain", "--data", str(corpus), *TINY_ARGS, "--steps", "3"]
    else:
        tok = BPETokenizer.train(corpus.read_text(), vocab_size=60)
        base = tmp_path / "base"
        save_checkpoint(base / "ckpt", GPT(GPTConfig(vocab_size=tok.vocab_size, n_ctx=16,
                                                     n_layer=1, n_embd=8, n_head=2)),
                        tok, None, {"step": 0})
        data = tmp_path / "d.tsv"
        data.write_text("".join(f"to be {w}\t{w}\n" for w in ["yes", "no"] * 10))
        args = ["finetune", "--task", "classify", "--data", str(data), "--init", str(base),
                "--no-progress"]
    monkeypatch.setattr(run_mod.Run, "stop_requested", property(lambda self: True))
    assert main([*args, "--out", str(out)]) == 130
    captured = capsys.readouterr()
    assert "interrupted" in captured.err and "Traceback" not in captured.err
    assert not out.exists()


LAUNCHERS = {
    # `python -m minigpt`
    "python -m": "import runpy\nrunpy.run_module('minigpt', run_name='__main__', alter_sys=True)\n",
    # the `minigpt` command: what pip writes for setup.py's console script
    "console script": "from minigpt.__main__ import run\nsys.exit(run())\n",
}


def test_the_console_script_is_the_guarded_entry_point():
    """The installed `minigpt` command must enter through minigpt.__main__.run (which imports
    the command line inside its Ctrl-C guard), not minigpt.cli:main (a traceback)."""
    from importlib.metadata import entry_points
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "minigpt"]
    assert script.value == "minigpt.__main__:run"


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_ctrl_c_while_the_command_loads_is_not_a_traceback(tmp_path, corpus, launcher):
    """A Ctrl-C while minigpt/__main__.py imports the command line (after the package itself,
    whose `import numpy` Python handles) exits 130 without a traceback, for `python -m minigpt`
    and for the `minigpt` command."""
    code = ("import sys\n"
            "import minigpt\n"
            "sys.argv[0] = 'minigpt'\n"
            "print('package imported', file=sys.stderr, flush=True)\n" + LAUNCHERS[launcher])
    rng = random.Random(7)
    for k in range(4):
        p = subprocess.Popen([sys.executable, "-c", code, "pretrain", "--data", str(corpus),
                              "--steps", "2", *TINY_ARGS, "--out", str(tmp_path / f"run{k}")],
                             cwd=ROOT, env=CHILD_ENV, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, preexec_fn=sigint_default)
        assert p.stderr.readline().strip() == "package imported"
        time.sleep(rng.uniform(0.0, 0.3))
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
        assert "Traceback" not in err, err
        assert p.returncode in (0, 130), (p.returncode, err)
