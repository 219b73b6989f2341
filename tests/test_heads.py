"""minigpt.training.heads: float64 gradient checks of every head (alone and through a tiny GPT),
similarity symmetry, padding never attended, multiple-choice permutation, dropout."""
import numpy as np
import pytest

from minigpt import GPT, GPTConfig, Tensor, gradcheck
from minigpt import tasks as T
from minigpt.tokenizers import BPETokenizer
from minigpt.training.heads import (ClassificationHead, EntailmentHead, MultipleChoiceHead,
                                    SimilarityHead, TaggingHead, TaskModel, extract_states,
                                    make_head, task_loss)

C = 6


def h64(rng, n, t):
    return Tensor(rng.standard_normal((n, t, C)), requires_grad=True)


def head64(cls, *args):
    head = cls(C, *args, dtype=np.float64, seed=3).eval()   # eval: dropout off (deterministic)
    for p in head.parameters():  # non-zero biases so their gradient paths are exercised
        p.data[...] = np.random.default_rng(1).standard_normal(p.shape) * 0.5
    return head


def params(head):
    return [head.linear.weight, head.linear.bias]


@pytest.mark.parametrize("cls", [ClassificationHead, EntailmentHead])
def test_gradcheck_classification_and_entailment_heads(cls):
    rng = np.random.default_rng(0)
    h, head = h64(rng, 3, 5), head64(cls, 3)
    extract = np.array([4, 2, 0])
    y = np.array([0, 2, 1])
    gradcheck(lambda h, w, b: head(h, extract), [h, *params(head)])
    gradcheck(lambda h, w, b: task_loss("classify", head(h, extract), y), [h, *params(head)])


def test_gradcheck_similarity_head():
    rng = np.random.default_rng(1)
    h, head = h64(rng, 4, 5), head64(SimilarityHead, 2)   # 2 pairs x 2 orderings
    extract = np.array([4, 4, 3, 1])
    gradcheck(lambda h, w, b: head(h, extract, 2), [h, *params(head)])
    gradcheck(lambda h, w, b: task_loss("similar", head(h, extract, 2), np.array([1, 0])),
              [h, *params(head)])


def test_gradcheck_multiple_choice_head():
    rng = np.random.default_rng(2)
    h, head = h64(rng, 6, 4), head64(MultipleChoiceHead)  # 2 examples x 3 choices
    extract = np.array([3, 1, 2, 3, 0, 2])
    assert head(h, extract, 3).shape == (2, 3)
    gradcheck(lambda h, w, b: head(h, extract, 3), [h, *params(head)])
    gradcheck(lambda h, w, b: task_loss("choice", head(h, extract, 3), np.array([2, 0])),
              [h, *params(head)])


def test_gradcheck_tagging_head_with_ignored_positions():
    rng = np.random.default_rng(3)
    h, head = h64(rng, 2, 5), head64(TaggingHead, 3)
    y = np.array([[-100, 0, 1, -100, 2], [-100, 2, -100, -100, -100]])
    assert head(h).shape == (2, 5, 3)
    gradcheck(lambda h, w, b: head(h), [h, *params(head)])
    gradcheck(lambda h, w, b: task_loss("tag", head(h), y), [h, *params(head)])
    # ignored positions get exactly zero gradient
    h.grad = None
    task_loss("tag", head(h), y).backward()
    assert np.all(h.grad[y == -100] == 0) and np.all(np.abs(h.grad[y != -100]).sum(-1) > 0)


def test_extract_states_picks_rows_and_scatters_back():
    rng = np.random.default_rng(4)
    h = h64(rng, 3, 4)
    s = extract_states(h, np.array([1, 3, 0]))
    np.testing.assert_array_equal(s.data, h.data[[0, 1, 2], [1, 3, 0]])
    s.sum().backward()
    want = np.zeros(h.shape)
    want[[0, 1, 2], [1, 3, 0]] = 1
    np.testing.assert_array_equal(h.grad, want)
    with pytest.raises(ValueError, match="extract positions"):
        extract_states(h, np.array([0, 1]))


def test_make_head_and_errors():
    assert isinstance(make_head("entail", C, 2), EntailmentHead)
    assert isinstance(make_head("tag", C, 3), TaggingHead)
    with pytest.raises(ValueError, match="unknown task"):
        make_head("regress", C, 2)
    with pytest.raises(ValueError, match="at least 2 classes"):
        ClassificationHead(C, 1)
    rng = np.random.default_rng(5)
    with pytest.raises(ValueError, match="two orderings"):
        SimilarityHead(C, 2)(h64(rng, 3, 2), np.zeros(3, dtype=int), 2)
    with pytest.raises(ValueError, match="groups of 4"):
        MultipleChoiceHead(C)(h64(rng, 6, 2), np.zeros(6, dtype=int), 4)


def test_head_init_and_dropout():
    head = ClassificationHead(C, 3, seed=0)
    assert head.linear.bias.data.tolist() == [0, 0, 0]
    assert abs(float(head.linear.weight.data.std()) - 0.02) < 0.01
    h = Tensor(np.ones((4, 2, C), dtype=np.float32))
    e = np.ones(4, dtype=int)
    head.train()
    a, b = head(h, e).data, head(h, e).data
    assert not np.array_equal(a, b)                      # dropout 0.1 on the head input
    head.eval()
    np.testing.assert_array_equal(head(h, e).data, head(h, e).data)


# ----------------------------------------------------------------------------- through a GPT

@pytest.fixture(scope="module")
def tok():
    t = BPETokenizer.train("to be or not to be that is the question whether tis nobler " * 4,
                           vocab_size=60)
    T.add_special_tokens(t)
    return t


def tiny_gpt(vocab, dtype="float32", seed=0):
    cfg = GPTConfig(vocab_size=vocab, n_ctx=24, n_layer=2, n_embd=8, n_head=2, dtype=dtype)
    return GPT(cfg, seed=seed).eval()


def task_model(task, tok, n_labels=2, dtype="float32"):
    gpt = tiny_gpt(tok.vocab_size, dtype)
    head = make_head(task, 8, n_labels, dtype=np.dtype(dtype), seed=1)
    for p in head.parameters():
        p.data[...] = np.random.default_rng(2).standard_normal(p.shape).astype(p.dtype) * 0.3
    return TaskModel(gpt, head, task).eval()


def run(model, enc, examples, pad_id=0):
    b = T.collate(enc.encode(examples), model.task, pad_id=pad_id)
    return model(b.idx, b.mask, b.extract, b.group)[0].data


def test_similarity_is_symmetric(tok):
    model = task_model("similar", tok, n_labels=3)
    enc = T.TaskEncoder("similar", tok, 24, ["a", "b", "c"])
    pairs = [("to be or not", "the question"), ("whether tis", "to be that is nobler")]
    ab = run(model, enc, [T.Example(text=a, text2=b) for a, b in pairs])
    ba = run(model, enc, [T.Example(text=b, text2=a) for a, b in pairs])
    np.testing.assert_allclose(ab, ba, rtol=1e-6, atol=1e-6)
    assert not np.allclose(ab[0], ab[1])   # and it does depend on the pair


@pytest.mark.parametrize("task", ["classify", "entail", "similar", "choice", "tag"])
def test_padding_is_never_attended(tok, task):
    """Changing the pad id, or padding further, changes no real position's output."""
    model = task_model(task, tok, n_labels=3)
    enc = T.TaskEncoder(task, tok, 24, ["x", "y", "z"] if task != "tag" else ["O", "B-X", "I-X"])
    if task == "choice":
        exs = [T.Example(text="to be", choices=("or not", "that is the question whether"), label=0),
               T.Example(text="nobler", choices=("to", "be"), label=1)]
    elif task == "tag":
        exs = [T.Example(words=("to", "be", "or", "not"), label=("O",) * 4),
               T.Example(words=("nobler",), label=("O",))]
    else:
        exs = [T.Example(text="to be or not to be", text2="that", label="x"),
               T.Example(text="tis", text2="the question whether", label="y")]
    items = enc.encode(exs)
    outs = []
    for pad_id, extra in ((0, 0), (5, 0), (tok.vocab_size - 1, 3)):
        b = T.collate(items, task, pad_id=pad_id)
        idx = np.pad(b.idx, ((0, 0), (0, extra)), constant_values=pad_id)
        mask = np.pad(b.mask, ((0, 0), (0, extra)))
        logits, h = model(idx, mask, b.extract, b.group)
        if task == "tag":
            outs.append([logits.data[i, it.first] for i, it in enumerate(items)])
        else:
            outs.append(logits.data)
        real = h.data[:, :b.idx.shape[1]][b.mask.astype(bool)]
        outs[-1] = (outs[-1], real)
    for other in outs[1:]:
        for x, y in zip(np.concatenate([np.ravel(a) for a in outs[0][0]]),
                        np.concatenate([np.ravel(a) for a in other[0]])):
            assert x == pytest.approx(y, abs=1e-5)
        np.testing.assert_allclose(outs[0][1], other[1], atol=1e-5)


def test_multiple_choice_scores_follow_the_choices(tok):
    model = task_model("choice", tok)
    enc = T.TaskEncoder("choice", tok, 24)
    choices = ("or not", "that is", "the question whether")
    s1 = run(model, enc, [T.Example(text="to be", choices=choices)])
    s2 = run(model, enc, [T.Example(text="to be", choices=choices[::-1])])
    np.testing.assert_allclose(s1[0], s2[0][::-1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("task", ["classify", "similar", "choice", "tag"])
def test_gradcheck_through_a_tiny_gpt(tok, task):
    """The whole L3 = L2 + 0.5 L1 in float64, through a 2-layer GPT with padding: gradients of
    the head and of a transformer parameter match central differences."""
    model = task_model(task, tok, n_labels=3, dtype="float64")
    labels = ["O", "B-X", "I-X"] if task == "tag" else ["x", "y", "z"]
    enc = T.TaskEncoder(task, tok, 24, labels)
    if task == "choice":
        exs = [T.Example(text="to be", choices=("or not", "that is the"), label=1),
               T.Example(text="nobler whether", choices=("to", "be"), label=0)]
    elif task == "tag":
        exs = [T.Example(words=("to", "be", "nobler"), label=("B-X", "I-X", "O")),
               T.Example(words=("tis",), label=("B-X",))]
    else:
        exs = [T.Example(text="to be or not", text2="tis", label="z"),
               T.Example(text="the", text2="question whether", label="x")]
    b = T.collate(enc.encode(exs), task, pad_id=3)
    targets = T.lm_targets(b.idx, b.mask)
    ln = model.transformer.h[1].ln_2

    def loss(*_):
        logits, h = model(b.idx, b.mask, b.extract, b.group)
        return task_loss(task, logits, b.labels) + model.lm_loss(h, targets) * 0.5

    gradcheck(loss, [model.head.linear.weight, model.head.linear.bias, ln.weight, ln.bias],
              atol=1e-6, rtol=1e-4)
