"""Bad input gets a short, named error (or a warning where the run can go on), never a
traceback or a silently wrong result (issue 13): the backend variable, argument ranges at parse
time and in the library, out-of-vocabulary text in `eval`, Ctrl-C in `sample`, checkpoints
missing a file, and user data files (unclosed quotes, swapped columns)."""
from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from conftest import sigint_default

ROOT = Path(__file__).resolve().parents[1]


def python(code: str, env_extra: dict, timeout=120) -> subprocess.CompletedProcess:
    env = dict(os.environ, **env_extra)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


# ----------------------------------------------------------------------------- MINIGPT_BACKEND

def test_a_bogus_backend_variable_warns_and_import_still_works():
    r = python("import minigpt; print(minigpt.get_backend())", {"MINIGPT_BACKEND": "bogus"})
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout.strip() == "numpy"
    assert "MINIGPT_BACKEND='bogus'" in r.stderr and "'numpy', 'cupy'" in r.stderr


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_backend_cupy_without_cupy_warns_and_uses_numpy():
    r = python("import minigpt; print(minigpt.get_backend())", {"MINIGPT_BACKEND": "cupy"})
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout.strip() == "numpy"
    assert "MINIGPT_BACKEND='cupy'" in r.stderr and "cupy" in r.stderr and "using numpy" in r.stderr


# ----------------------------------------------------------------------------- helpers

def cli(argv, capsys):
    """Run `minigpt ARGV` in-process: (exit code, stdout, stderr). Parse errors exit via
    argparse's SystemExit; command errors return 2 from main()."""
    from minigpt.cli import main
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def tiny_checkpoint(path: Path, text: str = "to be or not to be, that is the question\n",
                    n_ctx: int = 16, tok=None) -> Path:
    """A small checkpoint (random weights) with its tokenizer (default: char-level), at `path`."""
    from minigpt import GPT, GPTConfig
    from minigpt.tokenizers import CharTokenizer
    from minigpt.training import save_checkpoint
    tok = tok or CharTokenizer.train(text)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_ctx=n_ctx, n_layer=1, n_embd=16,
                          n_head=2), seed=0)
    return save_checkpoint(path, model, tok, state={"step": 0})


# ----------------------------------------------------------------------------- argument ranges

FT = ["finetune", "--task", "classify", "--data", "rotten_tomatoes", "--init", "no-such-run"]
PARSE_ERRORS = [
    # (argv, the message after "argument ")
    (["pretrain", "--steps", "0"], "--steps: must be an integer >= 1, got 0"),
    (["pretrain", "--steps", "-3"], "--steps: must be an integer >= 1, got -3"),
    (["pretrain", "--eval-batches", "0"], "--eval-batches: must be an integer >= 1, got 0"),
    (["pretrain", "--eval-interval", "0"], "--eval-interval: must be an integer >= 1, got 0"),
    (["pretrain", "--ckpt-interval", "0"], "--ckpt-interval: must be an integer >= 1, got 0"),
    (["pretrain", "--batch-size", "0"], "--batch-size: must be an integer >= 1, got 0"),
    (["pretrain", "--block-size", "0"], "--block-size: must be an integer >= 1, got 0"),
    (["pretrain", "--bpe-vocab-size", "-1"], "--bpe-vocab-size: must be an integer >= 1, got -1"),
    (["pretrain", "--lr", "0"], "--lr: must be a number > 0, got 0.0"),
    (["pretrain", "--lr", "nan"], "--lr: must be a number > 0, got nan"),
    (["pretrain", "--warmup", "-1"], "--warmup: must be an integer >= 0, got -1"),
    (["pretrain", "--weight-decay", "-0.1"], "--weight-decay: must be a number >= 0, got -0.1"),
    (["pretrain", "--max-grad-norm", "0"], "--max-grad-norm: must be a number > 0, got 0.0"),
    (["pretrain", "--dropout", "1"], "--dropout: must be a number in [0, 1), got 1.0"),
    (["pretrain", "--dropout", "-0.1"], "--dropout: must be a number in [0, 1), got -0.1"),
    (["pretrain", "--seed", "-1"], "--seed: must be an integer >= 0, got -1"),
    (["pretrain", "--steps", "1.5"], "--steps: must be an integer >= 1, got '1.5'"),
    (["pretrain", "--preset", "huge"], "--preset: invalid choice: 'huge'"),
    (["sample", "--ckpt", "x", "--top-k", "0"], "--top-k: must be an integer >= 1, got 0"),
    (["sample", "--ckpt", "x", "--top-k", "-2"], "--top-k: must be an integer >= 1, got -2"),
    (["sample", "--ckpt", "x", "--max-new-tokens", "-5"],
     "--max-new-tokens: must be an integer >= 0, got -5"),
    (["sample", "--ckpt", "x", "--temperature", "-0.1"],
     "--temperature: must be a number >= 0, got -0.1"),
    (["sample", "--ckpt", "x", "--top-p", "0"], "--top-p: must be a number in (0, 1], got 0.0"),
    (["sample", "--ckpt", "x", "--top-p", "1.5"], "--top-p: must be a number in (0, 1], got 1.5"),
    (["sample", "--ckpt", "x", "--seed", "-1"], "--seed: must be an integer >= 0, got -1"),
    (["eval", "--ckpt", "x", "--max-tokens", "0"], "--max-tokens: must be an integer >= 1, got 0"),
    (["demo", "--steps", "0"], "--steps: must be an integer >= 1, got 0"),
    (["trace", "--ckpt", "x", "--max-rows", "0"], "--max-rows: must be an integer >= 1, got 0"),
    (["demo", "--sample-tokens", "-1"], "--sample-tokens: must be an integer >= 0, got -1"),
    (FT + ["--epochs", "0"], "--epochs: must be an integer >= 1, got 0"),
    (FT + ["--batch-size", "0"], "--batch-size: must be an integer >= 1, got 0"),
    (FT + ["--lr", "-0.001"], "--lr: must be a number > 0, got -0.001"),
    (FT + ["--warmup", "1"], "--warmup: must be a number in [0, 1), got 1.0"),
    (FT + ["--clf-pdrop", "1.2"], "--clf-pdrop: must be a number in [0, 1), got 1.2"),
    (FT + ["--lm-coef", "-0.5"], "--lm-coef: must be a number >= 0, got -0.5"),
    (FT + ["--max-train", "0"], "--max-train: must be an integer >= 1, got 0"),
    (FT + ["--seed", "-2"], "--seed: must be an integer >= 0, got -2"),
    (["predict", "--ckpt", "x", "--input", "y", "--batch-size", "0"],
     "--batch-size: must be an integer >= 1, got 0"),
]


@pytest.mark.parametrize("argv,message", PARSE_ERRORS, ids=[" ".join(a) for a, _ in PARSE_ERRORS])
def test_arguments_outside_their_range_are_parse_errors(argv, message, tmp_path, capsys):
    """Checked at parse time, before anything is read or written: `--eval-batches 0` used to
    write NaN into metrics.jsonl, `--steps 0` to crash after a step-0 checkpoint, `--top-k 0`
    to be ignored, `--max-new-tokens -5` to act as 0."""
    out = tmp_path / "run"
    extra = ["--out", out] if argv[0] in ("pretrain", "demo", "finetune") else []
    code, stdout, err = cli(argv + extra, capsys)
    assert code == 2
    assert f"minigpt {argv[0]}: error: argument {message}" in err, err
    assert "Traceback" not in err
    assert not out.exists()  # nothing was created


# ----------------------------------------------------------------------------- sample

def test_sample_on_a_checkpoint_missing_state_json_names_the_file(tmp_path, capsys):
    """It used to be taken for a HuggingFace directory and fail on the tokenizer type."""
    ckpt = tiny_checkpoint(tmp_path / "run" / "ckpt")
    (ckpt / "state.json").unlink()
    for target in (ckpt, tmp_path / "run"):
        code, out, err = cli(["sample", "--ckpt", target, "--max-new-tokens", "3"], capsys)
        assert code == 2
        assert err.startswith("minigpt sample: error: ") and "missing state.json" in err, err
        assert "tokenizer" not in err and "Traceback" not in err


def test_sample_still_streams_from_a_complete_checkpoint(tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    code, out, err = cli(["sample", "--ckpt", ckpt, "--prompt", "to", "--max-new-tokens", "5",
                          "--top-k", "3", "--top-p", "1", "--seed", "0"], capsys)
    assert code == 0, err
    assert out.startswith("to") and len(out.rstrip("\n")) >= len("to") + 1


def test_ctrl_c_during_sample_stops_cleanly(tmp_path):
    """A real SIGINT while tokens stream: what was generated stays printed, exit 130, and no
    traceback."""
    import signal
    import time
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "minigpt", "sample", "--ckpt", str(ckpt), "--prompt", "to",
         "--max-new-tokens", "100000000", "--seed", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=sigint_default)  # SIGINT as from a terminal (conftest)
    try:
        got = proc.stdout.read(40)  # the prompt plus tokens: generation is under way
        assert len(got) == 40
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "interrupted after" in err
    assert (got + rest).startswith("to") and len(got + rest) > 40


# ----------------------------------------------------------------------------- library configs

@pytest.mark.parametrize("field,value,message", [
    ("steps", 0, "steps must be an integer >= 1, got 0"),
    ("steps", -4, "steps must be an integer >= 1, got -4"),
    ("eval_batches", 0, "eval_batches must be an integer >= 1, got 0"),
    ("eval_interval", 0, "eval_interval must be an integer >= 1, got 0"),
    ("ckpt_interval", 0, "ckpt_interval must be an integer >= 1, got 0"),
    ("batch_size", 0, "batch_size must be an integer >= 1, got 0"),
    ("block_size", 0, "block_size must be an integer >= 1, got 0"),
    ("lr", 0.0, "lr must be a number > 0, got 0.0"),
    ("lr", float("inf"), "lr must be a number > 0, got inf"),
    ("dropout", 1.0, r"dropout must be a number in \[0, 1\), got 1.0"),
    ("warmup", -1, "warmup must be an integer >= 0, got -1"),
    ("seed", -1, "seed must be an integer >= 0, got -1"),
    ("steps", 2.5, "steps must be an integer >= 1, got 2.5"),
    ("block_size", 65, "block_size 65 is above the tiny preset's context n_ctx=64; use at most 64"),
    ("preset", "huge", "unknown preset 'huge'"),
    ("tokenizer", "word", "unknown tokenizer 'word'"),
])
def test_train_config_checks_the_same_ranges_for_api_users(field, value, message):
    from minigpt.training import TrainConfig
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("field,value,message", [
    ("epochs", 0, "epochs must be an integer >= 1, got 0"),
    ("lr", 0.0, "lr must be a number > 0, got 0.0"),
    ("warmup", 1.0, r"warmup must be a number in \[0, 1\), got 1.0"),
    ("clf_pdrop", -0.1, r"clf_pdrop must be a number in \[0, 1\), got -0.1"),
    ("lm_coef", -1.0, "lm_coef must be a number >= 0, got -1.0"),
    ("max_test", 0, "max_test must be an integer >= 1, got 0"),
    ("task", "summarize", "unknown task 'summarize'"),
])
def test_finetune_config_checks_the_same_ranges_for_api_users(field, value, message):
    from minigpt.training import FinetuneConfig
    with pytest.raises(ValueError, match=message):
        FinetuneConfig(**{field: value})


def test_evaluate_with_zero_batches_is_an_error_not_nan():
    from minigpt import GPT, GPTConfig
    from minigpt.training import evaluate
    m = GPT(GPTConfig(vocab_size=11, n_ctx=8, n_layer=1, n_embd=16, n_head=2))
    with pytest.raises(ValueError, match="n_batches must be an integer >= 1, got 0"):
        evaluate(m, np.arange(50) % 11, 8, 2, 0)


def test_block_size_above_the_presets_context_is_an_error_before_anything_is_written(
        tmp_path, capsys):
    text = tmp_path / "corpus.txt"
    text.write_text("to be or not to be\n" * 200, encoding="utf-8")
    out = tmp_path / "run"
    code, _, err = cli(["pretrain", "--data", text, "--preset", "tiny", "--block-size", "100",
                        "--out", out, "--no-progress"], capsys)
    assert code == 2
    assert err.startswith("minigpt pretrain: error: block_size 100 is above the tiny preset's "
                          "context n_ctx=64"), err
    assert not out.exists()



# ----------------------------------------------------------------------------- eval: characters

def eval_numbers(out: str) -> dict:
    import re
    m = re.search(r"\(validation split, ([\d,]+) tokens, ([\d,]+) characters\)", out)
    loss = float(re.search(r"validation loss: (\S+) nats/token", out)[1])
    bpc = float(re.search(r"bits per char: +(\S+)", out)[1])
    return {"tokens": int(m[1].replace(",", "")), "characters": int(m[2].replace(",", "")),
            "loss": loss, "bpc": bpc}


def test_eval_counts_an_unknown_character_as_one_and_warns(tmp_path, capsys):
    """Each <unk> used to count as the 5 characters of its decoded text "<unk>": bits/char
    came out far too low, silently. A char tokenizer predicts one character per token, so
    bits/char must be exactly nats/token / ln 2, and the warning counts the unknown ones."""
    import math
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    vocab = set(ckpt_vocab(ckpt))
    text = "to be or not to be " * 50 + "naïve café, déjà vu; über " * 12
    data = tmp_path / "accents.txt"
    data.write_text(text, encoding="utf-8")
    val = text[len(text) - len(text) // 10:]
    expected_unknown = sum(c not in vocab for c in val[1:])  # the first token is context
    assert expected_unknown > 10
    code, out, err = cli(["eval", "--ckpt", ckpt, "--data", data], capsys)
    assert code == 0, err
    r = eval_numbers(out)
    assert r["tokens"] == len(val) - 1 and r["characters"] == len(val) - 1
    assert r["bpc"] == pytest.approx(r["loss"] / math.log(2), rel=2e-4)
    assert f"warning: {expected_unknown:,} of the {len(val) - 1:,} characters" in err, err
    assert "<unk>" in err and "over text that had them" in err

    clean = tmp_path / "clean.txt"
    clean.write_text("to be or not to be " * 60, encoding="utf-8")
    code, out, err = cli(["eval", "--ckpt", ckpt, "--data", clean], capsys)
    assert code == 0 and "warning" not in err


def ckpt_vocab(ckpt):
    from minigpt.tokenizers import load_tokenizer
    return load_tokenizer(ckpt).chars


def test_eval_max_tokens_counts_the_characters_of_the_evaluated_prefix(tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "ckpt")  # n_ctx 16: 40 tokens = 2 windows + a short one
    data = tmp_path / "text.txt"
    data.write_text("to be or not to be that is the question " * 30, encoding="utf-8")
    code, out, err = cli(["eval", "--ckpt", ckpt, "--data", data, "--max-tokens", "40"], capsys)
    assert code == 0, err
    r = eval_numbers(out)
    assert 30 <= r["tokens"] <= 40 and r["characters"] == r["tokens"]


def test_eval_bits_per_char_counts_the_original_characters_with_bpe(tmp_path, capsys):
    """BPE lowercases and puts spaces around punctuation: its decoded text is longer than the
    original. Bits per char are per character of the original text."""
    from minigpt.tokenizers import BPETokenizer
    train = "Hello, World! It's a test; of: punctuation. Hello again, world. " * 40
    tok = BPETokenizer.train(train, vocab_size=120)
    ckpt = tiny_checkpoint(tmp_path / "ckpt", tok=tok)
    text = "Hello, World! A,B,C;D. " * 60
    data = tmp_path / "punct.txt"
    data.write_text(text, encoding="utf-8")
    val = text[len(text) - len(text) // 10:]
    decoded = tok.decode(tok.encode(val))
    assert len(decoded) > len(val) + 20  # the old count (decoded text) would be far off
    code, out, err = cli(["eval", "--ckpt", ckpt, "--data", data], capsys)
    assert code == 0, err
    r = eval_numbers(out)
    assert len(val) - 8 <= r["characters"] <= len(val)
    total_bits = r["loss"] * r["tokens"] / math.log(2)
    assert r["bpc"] == pytest.approx(total_bits / r["characters"], rel=1e-3)


# ----------------------------------------------------------------------------- user data files

def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("text", [
    'text,label\ngood,pos\n"great movie,pos\nbad movie,neg\nfine,pos\n',        # never closed
    'text,label\ngood,pos\n"great movie,pos\nbad movie,neg\n"ok",pos\n',         # next quote
    'text,label\ngood,pos\n"great movie,pos\nbad movie,neg\nsaid "wow",pos\n',   # a quote inside
    'text,label\ngood,pos\n"great movie,pos\nbad movie,neg\nok",pos\nworse,neg\n',  # closed later
], ids=["eof", "next-quoted-field", "quote-inside-text", "closed-by-a-later-quote"])
def test_an_unclosed_quote_in_a_csv_is_a_file_line_error(tmp_path, text):
    """It used to merge the following rows into one example, silently."""
    from minigpt.tasks import TaskDataError, read_user_file
    p = write(tmp_path, "reviews.csv", text)
    with pytest.raises(TaskDataError) as info:
        read_user_file(p, "classify")
    msg = str(info.value)
    assert msg.startswith(f"{p}:3: unclosed quote"), msg
    assert "'\"great movie,pos'" in msg  # names the quote that was left open
    assert len(msg) < 400


def test_a_real_multi_line_csv_field_still_reads(tmp_path):
    from minigpt.tasks import read_user_file
    p = write(tmp_path, "ok.csv", 'text,label\n"line one,\nline two",pos\nother,neg\n'
                                  '"a, b","neg"\n')
    exs = read_user_file(p, "classify")
    assert [e.label for e in exs] == ["pos", "neg", "neg"] and "line two" in exs[0].text


LABELS = ("pos", "neg", "mixed")


@given(st.lists(st.tuples(st.text(alphabet='ab ,"\n\t;x', min_size=1, max_size=20),
                          st.sampled_from(LABELS)), min_size=1, max_size=12))
@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_properly_quoted_csv_reads_back_row_for_row(tmp_path, rows):
    """The strict reader and the run-on check never reject or merge a correctly written CSV
    (quotes doubled, fields with commas, quotes and newlines quoted), except where a text's
    own line looks exactly like a row of this file (`...,pos`), which is reported."""
    import csv
    import io
    from minigpt.tasks import read_user_file
    from minigpt.tasks.examples import clean_text
    assume(all(clean_text(t) for t, _ in rows))
    assume(not any(line.rpartition(",")[0].strip() and line.rpartition(",")[2].strip() in LABELS
                   for t, _ in rows for line in t.split("\n")[:-1]))
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    p = write(tmp_path, "rows.csv", buf.getvalue())
    exs = read_user_file(p, "classify")
    assert [(e.text, e.label) for e in exs] == [(clean_text(t), lab) for t, lab in rows]


def label_first_tsv(tmp_path, n=1800):
    lines = [f"{'pos' if i % 3 else 'neg'}\tmovie number {i} was {'good' if i % 3 else 'bad'}"
             for i in range(n)]
    return write(tmp_path, "reviews.tsv", "\n".join(lines) + "\n")


def test_a_label_first_tsv_says_the_columns_look_swapped_in_a_short_message(tmp_path):
    """It used to be one 74,547-character line listing 1,800 "training labels"."""
    from minigpt.tasks import TaskDataError, user_task_data
    p = label_first_tsv(tmp_path)
    with pytest.raises(TaskDataError) as info:
        user_task_data("classify", p)
    msg = str(info.value)
    assert len(msg) < 400, len(msg)
    assert "look swapped" in msg and "text<TAB>label" in msg
    assert "1,800 distinct values in 1,800 rows" in msg and "and 1,797 more" in msg
    assert "only 2 ('neg', 'pos')" in msg


def test_a_label_first_tsv_through_the_cli_is_one_short_error_line(tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "base" / "ckpt")
    p = label_first_tsv(tmp_path, n=200)
    out = tmp_path / "ft"
    code, _, err = cli(["finetune", "--task", "classify", "--data", p, "--init", ckpt.parent,
                        "--out", out, "--no-progress"], capsys)
    assert code == 2
    assert err.startswith("minigpt finetune: error: ") and "look swapped" in err
    assert len(err) < 500 and "Traceback" not in err
    assert not out.exists()


def test_many_distinct_labels_that_are_not_swapped_still_train(tmp_path):
    """Many classes with varied texts are not mistaken for swapped columns; an unknown test
    label is reported with a short list of the training labels."""
    from minigpt.tasks import TaskDataError, user_task_data
    train = write(tmp_path, "train.tsv", "".join(f"text about topic {i} here\tc{i}\n"
                                                  for i in range(300)))
    test = write(tmp_path, "test.tsv", "text about topic 1\tc1\nsomething new\tzzz\n")
    with pytest.raises(TaskDataError) as info:
        user_task_data("classify", train, test)
    msg = str(info.value)
    assert f"{test}:2: label 'zzz'" in msg and "and 295 more" in msg and len(msg) < 300


def test_the_encoder_lists_training_labels_shortly(tmp_path):
    from minigpt.tasks import Example, TaskDataError, TaskEncoder, add_special_tokens
    from minigpt.tokenizers import CharTokenizer
    tok = CharTokenizer.train("abc")
    add_special_tokens(tok)
    enc = TaskEncoder("classify", tok, 16, [f"l{i}" for i in range(500)])
    with pytest.raises(TaskDataError) as info:
        enc.label_id(Example(text="a", label="nope", where="f.tsv:3"))
    assert "and 495 more" in str(info.value) and len(str(info.value)) < 200


def test_state_dict_and_config_errors_list_names_shortly():
    """A GPT's state dict has dozens of names; an error lists a few and counts the rest."""
    from minigpt import GPT, GPTConfig
    m = GPT(GPTConfig(vocab_size=11, n_ctx=8, n_layer=3, n_embd=16, n_head=2))
    n = len(m.state_dict())
    with pytest.raises(KeyError) as info:
        m.load_state_dict({})
    msg = str(info.value)
    assert f"and {n - 5} more" in msg and len(msg) < 300
    with pytest.raises(ValueError, match=r"and 35 more") as info:
        GPTConfig.from_dict({f"bogus{i}": 1 for i in range(40)})
    assert len(str(info.value)) < 200


# ----------------------------------------------------------------------------- the rules

def test_rules_reject_wrong_types_and_non_finite_numbers_and_lists_stay_short():
    from minigpt import checks
    assert checks.positive_int(3, "n") == 3 and checks.nonneg_int(0) == 0
    for bad in (True, "3", 2.0, None):
        with pytest.raises(ValueError, match="n must be an integer >= 1"):
            checks.positive_int(bad, "n")
    for bad in (float("nan"), float("inf"), "0.5", False):
        with pytest.raises(ValueError, match="p must be a number in"):
            checks.probability(bad, "p")
    assert checks.probability(1) == 1.0 and checks.fraction(0) == 0.0
    assert checks.positive_int.optional(None) is None
    assert checks.short_list(range(3)) == "0, 1, 2"
    assert checks.short_list(range(1800)) == "0, 1, 2, 3, 4 and 1,795 more"
    assert checks.short_list(["a", "b"], 1, quote=True) == "'a' and 1 more"
