"""benchmarks/ablation.py's own logic: the zero-shot scorers, the verdict lines and the curve
plot (the experiment itself is `make ablation`, far too long for the test suite)."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from minigpt import GPT, GPTConfig
from minigpt.autograd import no_grad
from minigpt.functional import log_softmax
from minigpt.tasks import Example
from minigpt.tokenizers import BPETokenizer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("ablation_under_test", ROOT / "benchmarks" / "ablation.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def lm():
    text = " ".join(np.random.default_rng(0).choice(
        ["It", "is", "very", "good", "bad", "the", "film", "ROMEO", ":", "my", "lord", "."], 2000))
    tok = BPETokenizer.train(text, vocab_size=60, lowercase=False)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_ctx=32, n_layer=1, n_embd=16, n_head=2), seed=3)
    model.eval()
    return model, tok


def test_continuation_logprobs_equal_one_sequence_at_a_time(ablation, lm):
    """The padded batch gives each continuation exactly the log-probability of scoring it alone."""
    model, tok = lm
    ctx = tok.encode("the film is")
    conts = [tok.encode(" very good ."), tok.encode(" bad"), tok.encode(" my lord ROMEO :")]
    got = ablation.continuation_logprobs(model, tok, ctx, conts)
    for (total, n), c in zip(got, conts):
        ids = np.array([ctx + c])
        with no_grad():
            lp = log_softmax(model(ids)).data[0]                  # (T, V)
        want = sum(lp[len(ctx) - 1 + i, t] for i, t in enumerate(c))
        assert n == len(c)
        assert total == pytest.approx(want, abs=1e-9)
    assert len({round(t, 6) for t, _ in got}) == 3  # three different numbers, not one repeated


@pytest.mark.parametrize("score", ["mean", "pmi"])
def test_zero_shot_choice_picks_the_best_scoring_choice(ablation, lm, score):
    """mean: highest average log-likelihood after the context (the paper's); pmi: the largest
    log p(answer | context) - log p(answer | ".")."""
    model, tok = lm
    choices = ("very good .", "bad", "my lord ROMEO : the film")
    ctx = tok.encode("It is")
    answers = [tok.encode(" " + c) for c in choices]
    scored = ablation.continuation_logprobs(model, tok, ctx, answers)
    alone = ablation.continuation_logprobs(model, tok, tok.encode("."), answers)
    values = ([s / n for s, n in scored] if score == "mean"
              else [s - a for (s, _), (a, _) in zip(scored, alone)])
    best = int(np.argmax(values))
    examples = [Example(text="It is", choices=choices, label=k) for k in range(3)]
    # exactly the example whose label is the best-scoring choice is right: 1 of 3
    assert ablation.zero_shot_choice(model, tok, examples, score) == pytest.approx(1 / 3)
    assert ablation.zero_shot_choice(model, tok, [examples[best]], score) == 1.0


def test_the_two_choice_scores_can_disagree(ablation, lm):
    """The scores are really different rules: on some example they pick different choices."""
    model, tok = lm
    rng = np.random.default_rng(0)
    words = ["It", "is", "very", "good", "bad", "the", "film", "ROMEO", ":", "my", "lord", "."]
    examples = [Example(text=" ".join(rng.choice(words, 5)),
                        choices=tuple(" ".join(rng.choice(words, int(rng.integers(1, 8)))) for _ in range(4)),
                        label=0) for _ in range(30)]
    picks = {}
    for score in ("mean", "pmi"):
        picks[score] = [next(k for k in range(4) if ablation.zero_shot_choice(
            model, tok, [Example(text=e.text, choices=e.choices, label=k)], score) == 1.0)
            for e in examples]
    assert picks["mean"] != picks["pmi"]


def test_zero_shot_sentiment_is_calibrated_by_the_prompt_alone(ablation, lm):
    """A text that moves the margin towards ' good' relative to the empty text is 'fresh'."""
    model, tok = lm
    words = {"fresh": " good", "rotten": " bad"}
    conts = [tok.encode(w) for w in words.values()]

    def margin(text):
        (a, _), (b, _) = ablation.continuation_logprobs(model, tok, tok.encode(text + " It is very"), conts)
        return a - b
    bias = margin("")
    texts = ["the film", "my lord", "ROMEO : bad bad", "good good good", "the film is the film"]
    want = ["fresh" if margin(t) > bias else "rotten" for t in texts]
    exs = [Example(text=t, label=w) for t, w in zip(texts, want)]
    assert ablation.zero_shot_sentiment(model, tok, exs, words=words) == 1.0
    flipped = [Example(text=t, label="rotten" if w == "fresh" else "fresh") for t, w in zip(texts, want)]
    assert ablation.zero_shot_sentiment(model, tok, flipped, words=words) == 0.0


def test_verdicts_compare_against_the_seed_spread_and_bag_of_words(ablation):
    results = {
        "clear": {"scores": {"pretrained + aux LM": [0.70, 0.72, 0.71], "no pretraining": [0.50, 0.52, 0.51],
                             "bag-of-words LR": [0.60]}},
        "close": {"scores": {"pretrained + aux LM": [0.60, 0.70, 0.65], "no pretraining": [0.55, 0.65, 0.60],
                             "bag-of-words LR": [0.64]}},
    }
    clear, close = ablation.verdicts(results)
    assert "+20.0 points" in clear and ": AHEAD; vs bag-of-words +11.0" in clear and clear.endswith("AHEAD")
    assert "NOT ahead; vs bag-of-words +1.0" in close and close.endswith("NOT ahead")


def test_plot_curve_writes_a_png(ablation, tmp_path):
    pytest.importorskip("matplotlib")
    curve = {"finetuned": {"rotten_tomatoes": [{"step": 0, "scores": [0.5, 0.52]},
                                               {"step": 100, "scores": [0.6, 0.61]}]},
             "zero_shot": {"rotten_tomatoes": [{"step": 100, "score": 0.55}]},
             "bag-of-words": {"rotten_tomatoes": 0.58}, "chance": {"rotten_tomatoes": 0.5}}
    png = ablation.plot_curve(curve, tmp_path / "c.png", "test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
