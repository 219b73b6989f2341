"""The assignments: which marked regions each one hands to the student, and its graded tasks.

A `Todo` names one marked region by file (inside the minigpt package) and enclosing function;
its `task` and `text` become the student's `raise NotImplementedError("<task>: <text>")`.
A `Task` is one graded line of the score sheet: points, and the check that decides them
(`checks.py`). Every task passes or fails as a whole. A backward task is judged against the
reference forward's gradients (`forward` names the forward's task, for the feedback).

What a release leaves out (release.py): the tuned copies of the ops (`TUNED`: every file
there re-implements some task's op, so a student's tree runs every op's reference, i.e. their
code), and `withhold`: other assignments' regions that would hand this one's answers over
(the layers release must not keep attention's softmax and dropout).
"""
from __future__ import annotations

from dataclasses import dataclass

from . import checks


@dataclass(frozen=True)
class Todo:
    file: str        # relative to the minigpt package, e.g. "ops/layer_norm.py"
    function: str    # the enclosing function's qualified name, e.g. "LayerNorm.backward"
    task: str        # the task id shown in the NotImplementedError
    text: str        # what to implement


@dataclass(frozen=True)
class Task:
    id: str
    points: int
    title: str
    check: object    # () -> checks.Check
    forward: str | None = None   # a backward task: the task of its forward


@dataclass(frozen=True)
class Assignment:
    name: str
    title: str
    summary: str
    todos: tuple
    tasks: tuple
    timeout: float = 60.0   # seconds per task
    withhold: tuple = ()    # (file, function) regions of other assignments left out too

    @property
    def files(self) -> list[str]:
        """The files the student edits (and submits), relative to the package."""
        return sorted({t.file for t in self.todos})

    @property
    def points(self) -> int:
        return sum(t.points for t in self.tasks)


T = Todo

# the tuned copies of ops, left out of every release (stubs keep the imports working)
TUNED = ("fast/", "cuda/", "tokenizers/bpe_train_fast.py")

AUTOGRAD = Assignment(
    "autograd", "Autograd basics",
    "The backward of broadcasting, of elementwise products and quotients, of batched matmul "
    "and of reductions, and the central-difference gradient that checks them all.",
    todos=(
        T("autograd.py", "unbroadcast", "autograd.unbroadcast",
          "sum grad over the axes NumPy broadcasting added or stretched, back to `shape`"),
        T("autograd.py", "Mul.backward", "autograd.mul_div",
          "return (da, db) for y = a * b, each summed back to its input's shape"),
        T("autograd.py", "Div.backward", "autograd.mul_div",
          "return (da, db) for y = a / b, each summed back to its input's shape"),
        T("autograd.py", "MatMul.backward", "autograd.matmul",
          "return (da, db) for y = a @ b: g @ b^T and a^T @ g, summed over broadcast batch dims"),
        T("autograd.py", "Sum.backward", "autograd.reductions",
          "spread g back over the summed axes: the gradient of x, shaped like x"),
        T("autograd.py", "Mean.backward", "autograd.reductions",
          "spread g / n back over the averaged axes (n = number of elements averaged)"),
        T("gradcheck.py", "gradcheck", "autograd.central_difference",
          "fill numeric[idx] = (f(x + eps) - f(x - eps)) / (2 eps) for every element of t, "
          "perturbing t.data in place and restoring it"),
    ),
    tasks=(
        Task("autograd.unbroadcast", 2, "unbroadcast: the backward of broadcasting", checks.unbroadcast),
        Task("autograd.mul_div", 2, "Mul and Div backward (with broadcasting)", checks.mul_div),
        Task("autograd.matmul", 2, "MatMul backward (batched, broadcast)", checks.matmul),
        Task("autograd.reductions", 2, "Sum and Mean backward", checks.reductions),
        Task("autograd.central_difference", 2, "gradcheck's central differences",
             checks.central_difference),
    ))

_FWD = "save what backward needs"

LAYERS = Assignment(
    "layers", "GPT-1's layers, forward and backward",
    "Embedding (repeated ids), linear, LayerNorm, GELU, softmax and log-softmax, cross-entropy "
    "with ignore_index, dropout: each an autograd Function with a hand-derived backward.",
    todos=(
        T("ops/embedding.py", "Embedding.forward", "layers.embedding", "look up the rows of weight for idx"),
        T("ops/embedding.py", "Embedding.backward", "layers.embedding",
          "scatter-add g into a zero (V, C) gradient: a repeated id collects every gradient"),
        T("ops/linear.py", "Linear.forward", "layers.linear_forward", "y = x @ W (+ b); " + _FWD),
        T("ops/linear.py", "Linear.backward", "layers.linear_backward",
          "return (dx, dW, db): g @ W^T, x^T @ g over all rows, g summed over all rows"),
        T("ops/layer_norm.py", "LayerNorm.forward", "layers.layer_norm_forward",
          "normalise over the last axis (biased variance, eps inside the sqrt); " + _FWD),
        T("ops/layer_norm.py", "LayerNorm.backward", "layers.layer_norm_backward",
          "return (dx, dweight, dbias); dx has three terms: the gradient through xhat, "
          "through the mean and through the variance"),
        T("ops/gelu.py", "GELU.forward", "layers.gelu_forward",
          "GPT-1's tanh approximation of GELU; " + _FWD),
        T("ops/gelu.py", "GELU.backward", "layers.gelu_backward",
          "g times the derivative of the tanh approximation (product and chain rule)"),
        T("ops/softmax.py", "Softmax.forward", "layers.softmax_forward",
          "exp(x - max) / sum, along `axis` (subtract the max: float32 overflows at 89); " + _FWD),
        T("ops/softmax.py", "Softmax.backward", "layers.softmax_backward",
          "dx = y * (g - sum(g * y)) along the axis"),
        T("ops/softmax.py", "LogSoftmax.forward", "layers.log_softmax",
          "x - logsumexp(x) along `axis`, computed stably; " + _FWD),
        T("ops/softmax.py", "LogSoftmax.backward", "layers.log_softmax",
          "dx = g - softmax(x) * sum(g) along the axis"),
        T("ops/cross_entropy.py", "CrossEntropy.forward", "layers.cross_entropy_forward",
          "mean over the rows whose target is not ignore_index of -log softmax(z)[y] "
          "(0 when every row is ignored); " + _FWD),
        T("ops/cross_entropy.py", "CrossEntropy.backward", "layers.cross_entropy_backward",
          "dz = (softmax(z) - onehot(y)) * g / K on kept rows, 0 on ignored rows"),
        T("ops/dropout.py", "Dropout.forward", "layers.dropout",
          "keep each element with probability 1 - p (draw with rng), scale kept ones by 1/(1-p)"),
        T("ops/dropout.py", "Dropout.backward", "layers.dropout", "g times the forward's mask"),
    ),
    tasks=(
        Task("layers.embedding", 2, "Embedding forward and backward (repeated ids)", checks.embedding),
        Task("layers.linear_forward", 1, "Linear forward", checks.linear_forward),
        Task("layers.linear_backward", 2, "Linear backward", checks.linear_backward,
             forward="layers.linear_forward"),
        Task("layers.layer_norm_forward", 1, "LayerNorm forward", checks.layer_norm_forward),
        Task("layers.layer_norm_backward", 3, "LayerNorm backward", checks.layer_norm_backward,
             forward="layers.layer_norm_forward"),
        Task("layers.gelu_forward", 1, "GELU forward", checks.gelu_forward),
        Task("layers.gelu_backward", 1, "GELU backward", checks.gelu_backward,
             forward="layers.gelu_forward"),
        Task("layers.softmax_forward", 1, "Softmax forward", checks.softmax_forward),
        Task("layers.softmax_backward", 1, "Softmax backward", checks.softmax_backward,
             forward="layers.softmax_forward"),
        Task("layers.log_softmax", 1, "LogSoftmax forward and backward", checks.log_softmax),
        Task("layers.cross_entropy_forward", 1, "cross-entropy forward (ignore_index)",
             checks.cross_entropy_forward),
        Task("layers.cross_entropy_backward", 2, "cross-entropy backward (ignore_index)",
             checks.cross_entropy_backward, forward="layers.cross_entropy_forward"),
        Task("layers.dropout", 1, "Dropout forward and backward", checks.dropout),
    ),
    # attention's reference holds a softmax (forward and backward) and dropout: not released
    withhold=(("ops/attention.py", "Attention.forward"),
              ("ops/attention.py", "Attention.backward")))

ATTENTION = Assignment(
    "attention", "Masked multi-head attention",
    "Scaled dot-product attention over all heads at once with the causal and padding masks, "
    "and its backward: dq, dk and dv are graded separately.",
    todos=(
        T("ops/attention.py", "Attention.forward", "attention.forward",
          "S = q k^T / sqrt(hs), hidden keys -inf (attention_mask), P = softmax (a row that "
          "sees no key is all 0), optional dropout on P, O = P @ v; save what backward needs"),
        T("ops/attention.py", "Attention.backward", "attention.backward",
          "return (dq, dk, dv): dv = P^T g, dP = g v^T, dS = P * (dP - rowsum(dP * P)), "
          "dq = dS k / sqrt(hs), dk = dS^T q / sqrt(hs)"),
    ),
    tasks=(
        Task("attention.forward", 4, "attention forward (causal, padding, Tq < Tk)", checks.attention_forward),
        Task("attention.dq", 2, "attention backward: dq", checks.attention_grad("q"),
             forward="attention.forward"),
        Task("attention.dk", 2, "attention backward: dk", checks.attention_grad("k"),
             forward="attention.forward"),
        Task("attention.dv", 2, "attention backward: dv", checks.attention_grad("v"),
             forward="attention.forward"),
    ))

OPTIM_TODOS = (
    T("optim.py", "adam_update", "optim.adam",
      "clip g (if clip is not None), update the moments m and v in place, then "
      "p -= lr_t * (m / (sqrt(v) + eps) + weight_decay * p)"),
    T("optim.py", "Adam.step", "optim.adam",
      "lr_t: the scheduled lr times the bias correction sqrt(1 - b2^t) / (1 - b1^t)"),
    T("optim.py", "warmup_cosine.schedule", "optim.warmup_cosine",
      "t / warmup while t < warmup, then 0.5 (1 + cos(pi * progress)), progress capped at 1"),
    T("optim.py", "warmup_linear.schedule", "optim.warmup_linear",
      "x = t / total; (x / warmup if x < warmup else 1) * max(0, 1 - x)"),
    T("optim.py", "clip_grad_norm", "optim.clip_grad_norm",
      "if the global norm exceeds max_norm, scale every gradient in place by "
      "max_norm / (norm + 1e-6); return the norm before clipping"),
)

OPTIM = Assignment(
    "optim", "Adam as GPT-1 applies it",
    "Adam with bias correction folded into the step size and decoupled weight decay on "
    "matrices only, the warm-up schedules, and global gradient-norm clipping.",
    todos=OPTIM_TODOS,
    tasks=(
        Task("optim.adam", 4, "Adam update (bias correction, decoupled weight decay)", checks.adam),
        Task("optim.warmup_cosine", 1, "warm-up then cosine schedule", checks.warmup_cosine),
        Task("optim.warmup_linear", 1, "GPT-1's fine-tuning warm-up-linear schedule", checks.warmup_linear),
        Task("optim.clip_grad_norm", 2, "global gradient-norm clipping", checks.clip_grad_norm),
    ))

BPE = Assignment(
    "bpe", "Byte-pair encoding",
    "Learn BPE merges from word counts (most frequent pair first, ties to the smallest pair) "
    "and encode words with them (lowest-ranked pair first).",
    todos=(
        T("tokenizers/bpe_train.py", "learn_merges", "bpe.learn_merges",
          "repeatedly merge the most frequent adjacent pair (counts weighted by word frequency; "
          "ties: the smallest (a, b)); stop at the budget, the vocab size or min_frequency; "
          "add each new token to vocab; return the merges in order"),
        T("tokenizers/bpe.py", "BPETokenizer._bpe", "bpe.encode",
          "split the word into symbols (the last one gets END_OF_WORD), then merge the "
          "lowest-ranked adjacent pair (leftmost on ties) until no pair has a rank"),
    ),
    tasks=(
        Task("bpe.learn_merges", 5, "learning the merges", checks.bpe_learn),
        Task("bpe.encode", 3, "encoding words with merges", checks.bpe_encode),
    ))

TRANSFORMS = Assignment(
    "transforms", "GPT-1's input transformations",
    "Turn classification, entailment, similarity, multiple-choice and tagging examples into "
    "token sequences with the start, delimiter and extract tokens, truncating as GPT-1 did.",
    todos=(
        T("tasks/transforms.py", "TaskEncoder.single", "transforms.classify",
          "[start] text [extract], text cut to n_ctx - 2 tokens with trunc.cut"),
        T("tasks/transforms.py", "TaskEncoder.pair", "transforms.entail",
          "[start] a [delim] b [extract], each segment cut to n_ctx // 2 - 2 tokens"),
        T("tasks/transforms.py", "TaskEncoder.both_orders", "transforms.similar",
          "both orders: [start] a [delim] b [extract] and [start] b [delim] a [extract]"),
        T("tasks/transforms.py", "TaskEncoder.choices", "transforms.choice",
          "one [start] context [delim] answer [extract] per answer"),
        T("tasks/transforms.py", "TaskEncoder.words", "transforms.tag",
          "[start] w_1..w_n [delim] w_1..w_n (each word encoded alone), and the position of "
          "each word's first sub-token in the second copy; drop words that do not fit twice"),
    ),
    tasks=(
        Task("transforms.classify", 1, "classification: s text e", checks.transform("classify")),
        Task("transforms.entail", 2, "entailment: s premise $ hypothesis e", checks.transform("entail")),
        Task("transforms.similar", 2, "similarity: both orders", checks.transform("similar")),
        Task("transforms.choice", 2, "multiple choice: one sequence per answer", checks.transform("choice")),
        Task("transforms.tag", 3, "tagging: the sentence twice, labels on the second copy", checks.transform("tag")),
    ))

CAPSTONE = Assignment(
    "capstone", "Capstone: pretrain GPT-1 with your own ops",
    "Your layers, attention and Adam, swapped into GPT, train a small GPT on Shakespeare "
    "from scratch: its loss must follow the reference's step by step for 300 steps and "
    "reach the target (the long run, the demo model to < 2.0 nats per character, is an "
    "optional local check).",
    todos=LAYERS.todos + ATTENTION.todos + OPTIM_TODOS,
    tasks=(
        Task("capstone.pretrain", 10, "a small GPT trained from scratch follows the "
             "reference loss curve", checks.capstone),
    ),
    timeout=600.0)

PARALLEL = Assignment(
    "parallel", "Data parallelism: the ring all-reduce",
    "The ring all-reduce over simulated ranks (reduce-scatter, then all-gather; any number of "
    "ranks, a buffer they need not divide), and gradient averaging in buckets with it.",
    todos=(
        T("distributed/ring.py", "ring_allreduce", "parallel.ring_allreduce",
          "every rank's buffer summed over the ranks: N chunks, N-1 reduce-scatter steps "
          "(send chunk (r - s) mod N to rank r+1, which adds it), N-1 all-gather steps"),
        T("distributed/ring.py", "bucketed_average", "parallel.bucketed_average",
          "pack the gradients into buckets (buckets_of), ring_allreduce each, divide by N, "
          "unpack into each rank's gradients with their shapes"),
    ),
    tasks=(
        Task("parallel.ring_allreduce", 3, "ring all-reduce (any N, uneven chunks)",
             checks.ring_allreduce),
        Task("parallel.bucketed_average", 2, "bucketed gradient averaging",
             checks.bucketed_average),
    ))

ASSIGNMENTS = {a.name: a for a in (AUTOGRAD, LAYERS, ATTENTION, OPTIM, BPE, TRANSFORMS, CAPSTONE,
                                   PARALLEL)}


def get(name: str) -> Assignment:
    try:
        return ASSIGNMENTS[name]
    except KeyError:
        raise ValueError(f"unknown assignment {name!r}; choose one of "
                         f"{', '.join(ASSIGNMENTS)} (`minigpt assignments list`)") from None
