"""minigpt.training.finetune: loading the base model, the L3 objective and schedule, checkpoints, and the
`minigpt finetune` / `minigpt predict` command line end to end on a user file of each format."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minigpt import GPT, GPTConfig
from minigpt import tasks as T
from minigpt.cli import main as cli_main
from minigpt.optim import warmup_linear
from minigpt.tokenizers import BPETokenizer
from minigpt.training import (FinetuneConfig, TrainingError, finetune, load_base, load_checkpoint,
                              load_finetuned, predict, save_checkpoint)

ROOT = Path(__file__).resolve().parents[1]
GOOD = ["good", "great", "fine", "lovely", "superb", "brilliant"]
BAD = ["bad", "dull", "awful", "boring", "poor", "dreadful"]
NAMES = ["Kate", "Romeo", "Hamlet", "Viola", "Lear", "Portia"]
FILLER = ["the", "film", "was", "quite", "a", "story", "and", "to", "be", "or", "not", "my",
          "lord", "said", "hello"]


def corpus():
    rng = np.random.default_rng(0)
    words = GOOD + BAD + NAMES + FILLER + [",", ".", "?"]
    return " ".join(rng.choice(words, size=3000))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny 'pretrained' checkpoint (random weights: the tests need the plumbing, not
    knowledge): 1 layer, width 16, context 32, a 120-token case-keeping BPE."""
    tok = BPETokenizer.train(corpus(), vocab_size=120, lowercase=False)
    cfg = GPTConfig(vocab_size=tok.vocab_size, n_ctx=32, n_layer=1, n_embd=16, n_head=2)
    path = tmp_path_factory.mktemp("base") / "pre"
    save_checkpoint(path / "ckpt", GPT(cfg, seed=123), tok, None, {"step": 0})
    return path


def sentiment_rows(n, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        pos = i % 2 == 0
        w = rng.choice(GOOD if pos else BAD)
        rows.append((f"the film was {w}", "pos" if pos else "neg"))
    return rows


# ----------------------------------------------------------------------------- base model

def test_load_base_adds_special_tokens_and_rows(base):
    pre, tok0, _ = load_checkpoint(base)
    model, tok = load_base(base, pretrained=True, seed=0)
    V = pre.config.vocab_size
    assert tok.vocab_size == V + 3 and model.config.vocab_size == V + 3
    assert [tok.token_to_id(t) for t in T.SPECIAL_TOKENS] == [V, V + 1, V + 2]
    W = model.tokens_embed.weight.data
    np.testing.assert_array_equal(W[:V], pre.tokens_embed.weight.data)
    assert 0.005 < W[V:].std() < 0.05
    np.testing.assert_array_equal(model.h[0].mlp.c_fc.weight.data, pre.h[0].mlp.c_fc.weight.data)
    scratch, tok2 = load_base(base, pretrained=False, seed=0)
    assert scratch.config == model.config and tok2.vocab_size == tok.vocab_size
    assert not np.array_equal(scratch.h[0].mlp.c_fc.weight.data, pre.h[0].mlp.c_fc.weight.data)
    with pytest.raises(ValueError, match="needs --init"):
        load_base(None)


def test_config_validation():
    with pytest.raises(ValueError, match="unknown task"):
        FinetuneConfig(task="regress")
    with pytest.raises(ValueError, match="lm_coef"):
        FinetuneConfig(lm_coef=-1)
    d = FinetuneConfig()
    assert (d.lr, d.batch_size, d.epochs, d.warmup, d.lm_coef, d.clf_pdrop) == \
           (6.25e-5, 32, 3, 0.002, 0.5, 0.1)


# ----------------------------------------------------------------------------- training

def write_tsv(path, rows):
    path.write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("lm_coef", [0.5, 0.0])
def test_objective_and_schedule(base, tmp_path, lm_coef):
    data = write_tsv(tmp_path / "s.tsv", sentiment_rows(50))
    cfg = FinetuneConfig(task="classify", data=str(data), init=str(base), out=str(tmp_path / "r"),
                         lm_coef=lm_coef, epochs=2, batch_size=8, lr=1e-3, warmup=0.2)
    s = finetune(cfg, progress=False, log=lambda m: None)
    rows = [json.loads(l) for l in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    total = 2 * math.ceil(45 / 8)
    assert s["step"] == s["total_steps"] == total == len(rows)
    sched = warmup_linear(total, 0.2)
    for r in rows:
        assert r["lr"] == pytest.approx(1e-3 * sched(r["step"]))
        if lm_coef:   # L3 = L2 + lambda * L1
            assert r["loss"] == pytest.approx(r["task_loss"] + lm_coef * r["lm_loss"], abs=1e-5)
        else:
            assert "lm_loss" not in r and r["loss"] == pytest.approx(r["task_loss"], abs=1e-6)
    assert rows[-1]["lr"] == 0.0       # warmup_linear ends at zero
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    assert res["metrics"]["examples"] == 5 and res["train_examples"] == 45


def test_same_seed_same_run_and_no_pretraining_differs(base, tmp_path):
    data = write_tsv(tmp_path / "s.tsv", sentiment_rows(30))

    def losses(**kw):
        cfg = FinetuneConfig(task="classify", data=str(data), init=str(base), epochs=1,
                             batch_size=8, lr=1e-3, **kw)
        s = finetune(cfg, progress=False, log=lambda m: None)
        return s["last"]["loss"], s["model"].head.linear.weight.data.copy()

    (a, wa), (b, wb) = losses(seed=4), losses(seed=4)
    assert a == b and np.array_equal(wa, wb)     # dropout, order and head init all seeded
    assert losses(seed=5)[0] != a
    assert losses(seed=4, pretrained=False)[0] != a


def test_learns_a_separable_task_and_checkpoint_round_trip(base, tmp_path):
    data = write_tsv(tmp_path / "train.tsv", sentiment_rows(64))
    test = write_tsv(tmp_path / "test.tsv", sentiment_rows(16, seed=1))
    out = tmp_path / "run"
    cfg = FinetuneConfig(task="classify", data=str(data), test=str(test), init=str(base),
                         out=str(out), epochs=30, batch_size=16, lr=5e-3, seed=1)
    s = finetune(cfg, progress=False, log=lambda m: None)
    assert s["metrics"]["accuracy"] == 1.0
    model, tok, info, state = load_finetuned(out)
    assert info["task"] == "classify" and info["labels"] == ["neg", "pos"]
    assert tok.special_tokens == list(T.SPECIAL_TOKENS)
    assert info["special_tokens"] == T.special_ids(tok)
    assert state["finetune_config"]["lr"] == 5e-3
    enc = T.TaskEncoder("classify", tok, 32, info["labels"])
    b = T.collate(enc.encode([T.Example(text="the film was good"), T.Example(text="dull")]),
                  "classify")
    trained = s["model"].eval()
    np.testing.assert_allclose(model(b.idx, b.mask, b.extract)[0].data,
                               trained(b.idx, b.mask, b.extract)[0].data, rtol=1e-6)
    gpt, _, _ = load_checkpoint(out)   # the transformer part is a plain minigpt checkpoint
    assert gpt.config.vocab_size == tok.vocab_size
    with pytest.raises(ValueError, match="already a fine-tuned"):
        load_base(out)
    with pytest.raises(TrainingError, match="already exists"):
        finetune(cfg, progress=False, log=lambda m: None)
    assert not list(tmp_path.glob(".*stage*")) and not list(out.glob(".*"))


def test_unknown_test_label_stops_before_training(base, tmp_path):
    data = write_tsv(tmp_path / "train.tsv", sentiment_rows(20))
    test = write_tsv(tmp_path / "test.tsv", [("meh", "neutral")])
    cfg = FinetuneConfig(task="classify", data=str(data), test=str(test), init=str(base),
                         out=str(tmp_path / "r"))
    with pytest.raises(T.TaskDataError, match=r"test\.tsv:1: label 'neutral'"):
        finetune(cfg, progress=False, log=lambda m: None)
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- user files

def make_files(d: Path, rng=None):
    """A small labelled file per task and format, and an unlabelled input for predict."""
    rng = rng or np.random.default_rng(0)
    files = {}
    sent = sentiment_rows(40)
    files["classify.tsv"] = "text\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in sent)
    files["classify.csv"] = "".join(f'"{t}, really",{l}\n' for t, l in sent)
    files["classify.jsonl"] = "".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in sent)
    pairs = [(f"{a} film", f"{b} film", "yes" if (a in GOOD) == (b in GOOD) else "no")
             for a, b in zip(rng.choice(GOOD + BAD, 40), rng.choice(GOOD + BAD, 40))]
    files["entail.jsonl"] = "".join(json.dumps({"premise": a, "hypothesis": b, "label": l}) + "\n"
                                    for a, b, l in pairs)
    files["entail.tsv"] = "".join(f"{a}\t{b}\t{l}\n" for a, b, l in pairs)
    files["similar.csv"] = "text,text2,label\n" + "".join(f"{a},{b},{l}\n" for a, b, l in pairs)
    header = ("InputStoryid,InputSentence1,InputSentence2,InputSentence3,InputSentence4,"
              "RandomFifthSentenceQuiz1,RandomFifthSentenceQuiz2,AnswerRightEnding\n")
    rows = []
    for i in range(30):
        g, b = rng.choice(GOOD), rng.choice(BAD)
        right = 1 + i % 2
        e = (f"it was {g}", f"it was {b}") if right == 1 else (f"it was {b}", f"it was {g}")
        rows.append(f"s{i},The film.,My lord.,Said hello.,I liked it.,{e[0]},{e[1]},{right}\n")
    files["choice.csv"] = header + "".join(rows)
    files["choice.jsonl"] = "".join(json.dumps({"context": "I liked it.", "endings": [
        f"it was {rng.choice(GOOD)}", f"it was {rng.choice(BAD)}", "to be"], "label": 0}) + "\n"
        for _ in range(30))
    sents = []
    for i in range(30):
        words = list(rng.choice(FILLER, 5))
        k = int(rng.integers(5))
        words.insert(k, str(rng.choice(NAMES)))
        sents.append([(w, "B-PER" if j == k else "O") for j, w in enumerate(words)])
    files["tag.conll"] = "\n".join("".join(f"{w} {t}\n" for w, t in s) for s in sents)
    files["tag.jsonl"] = "".join(json.dumps({"tokens": [w for w, _ in s],
                                             "tags": [t for _, t in s]}) + "\n" for s in sents)
    # prediction inputs (no labels)
    files["classify_in.txt"] = "the film was superb\nboring\n"
    files["entail_in.jsonl"] = json.dumps({"premise": "good film", "hypothesis": "bad film"}) + "\n"
    files["similar_in.tsv"] = "good film\tfine film\n"
    files["choice_in.csv"] = header.replace(",AnswerRightEnding", "") + \
        "x,The film.,My lord.,Said hello.,I liked it.,it was good,it was dull\n"
    files["tag_in.conll"] = "said\nKate\nhello\n\nmy\nlord\n"
    out = {}
    for name, text in files.items():
        (d / name).write_text(text, encoding="utf-8")
        out[name] = d / name
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("files"))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "minigpt", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=120)


FAST = ["--epochs", "1", "--batch-size", "8", "--lr", "1e-3", "--no-progress"]

# one subprocess run (finetune, then predict) per task, on one format each
SUBPROCESS = [("classify", "classify.tsv", "classify_in.txt"),
              ("entail", "entail.jsonl", "entail_in.jsonl"),
              ("similar", "similar.csv", "similar_in.tsv"),
              ("choice", "choice.csv", "choice_in.csv"),
              ("tag", "tag.conll", "tag_in.conll")]


@pytest.mark.parametrize("task, train, pred_in", SUBPROCESS, ids=[s[0] for s in SUBPROCESS])
def test_cli_finetune_and_predict_subprocess(base, files, tmp_path, task, train, pred_in):
    out = tmp_path / "run"
    r = run_cli("finetune", "--task", task, "--data", str(files[train]), "--init", str(base),
                "--out", str(out), *FAST)
    assert r.returncode == 0, r.stderr
    metric = "entity F1" if task == "tag" else "accuracy"
    assert "held-out" in r.stdout and metric in r.stdout
    assert "test: 3 examples" in r.stdout or "test: 4 examples" in r.stdout
    info = json.loads((out / "ckpt" / "task.json").read_text())
    assert info["task"] == task
    for f in ("head.safetensors", "model.safetensors", "tokenizer_config.json", "state.json"):
        assert (out / "ckpt" / f).is_file()
    r = run_cli("predict", "--ckpt", str(out), "--input", str(files[pred_in]))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip("\n").split("\n")
    if task == "tag":
        assert [l.split("\t")[0] for l in lines] == ["said", "Kate", "hello", "", "my", "lord"]
        assert all(l.split("\t")[1] in ("O", "B-PER") for l in lines if l)
    elif task == "choice":
        assert len(lines) == 1 and lines[0].split("\t")[0] in ("1", "2")
    else:
        assert all(l.split("\t")[0] in info["labels"] for l in lines)
        assert len(lines) == (2 if task == "classify" else 1)


# the other formats, through the same command line in-process (no interpreter start-up)
INPROCESS = [("classify", "classify.csv", "classify.jsonl"),
             ("classify", "classify.jsonl", "classify.tsv"),
             ("entail", "entail.tsv", "entail.jsonl"),
             ("choice", "choice.jsonl", "choice.jsonl"),
             ("tag", "tag.jsonl", "tag.conll")]


@pytest.mark.parametrize("task, train, pred_in", INPROCESS, ids=[s[1] for s in INPROCESS])
def test_cli_other_formats(base, files, tmp_path, capsys, task, train, pred_in):
    out = tmp_path / "run"
    assert cli_main(["finetune", "--task", task, "--data", str(files[train]), "--init", str(base),
                     "--out", str(out), "--lm-coef", "0", *FAST]) == 0
    capsys.readouterr()
    assert cli_main(["predict", "--ckpt", str(out), "--input", str(files[pred_in])]) == 0
    cap = capsys.readouterr()
    assert cap.out.strip() and "labelled examples" in cap.err   # labelled input: scored too


def test_predict_api_returns_predictions(base, files, tmp_path):
    out = tmp_path / "run"
    finetune(FinetuneConfig(task="tag", data=str(files["tag.conll"]), init=str(base),
                            out=str(out), epochs=1, batch_size=8),
             progress=False, log=lambda m: None)
    import io
    buf = io.StringIO()
    r = predict(out, files["tag.conll"], out=buf, log=lambda m: None)
    assert len(r["predictions"]) == 30 and 0 <= r["metrics"]["f1"] <= 1
    assert buf.getvalue().count("\n\n") == 30   # CoNLL out: a blank line after each sentence


@pytest.mark.parametrize("content, msg", [
    ("good\tpos\nbad film\n", r"bad\.tsv:2: expected 2 TSV columns"),
    ("good\tpos\n" * 3 + "bad\tneg\n" * 8, None),
])
def test_cli_errors_are_clean(base, tmp_path, capsys, content, msg):
    data = tmp_path / "bad.tsv"
    data.write_text(content, encoding="utf-8")
    if msg is None:   # a fine file, with a --test whose label training never saw
        test = tmp_path / "test.tsv"
        test.write_text("ok\tneutral\n", encoding="utf-8")
        args = ["--test", str(test)]
        msg = r"test\.tsv:1: label 'neutral'"
    else:
        args = []
    code = cli_main(["finetune", "--task", "classify", "--data", str(data), "--init", str(base),
                     "--out", str(tmp_path / "r"), *args, *FAST])
    assert code == 2
    import re
    assert re.search(msg, capsys.readouterr().err)
    assert cli_main(["finetune", "--task", "tag", "--data", "rotten_tomatoes", "--init",
                     str(base), "--out", str(tmp_path / "r2")]) == 2
    assert "use --task classify" in capsys.readouterr().err
    assert cli_main(["predict", "--ckpt", str(base), "--input", str(data)]) == 2
    assert "not a fine-tuned checkpoint" in capsys.readouterr().err
