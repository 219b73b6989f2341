"""The tuned CPU versions of the ops, each registered as the "fast" implementation of its op
(minigpt.dispatch picks it on NumPy arrays in mode "auto" or "fast") and tested equal to the
reference in minigpt/ops/ (tests/test_fast_ops.py).

A ladder, each rung adding one idea to those before (each file's header says what it changes
vs the reference, and the measurement behind it):

    runtime.py        the tools: a thread pool for elementwise blocks (NumPy releases the GIL
                      in its loops), BLAS single-threaded for small products (threadpoolctl),
                      column sums as a matvec with ones
    embedding.py      sort + reduceat instead of np.add.at for the scatter-add (many ids)
    linear.py         one 2-D GEMM; products over many tokens in blocks on our threads (the
                      rule counts tokens, not rows); threaded bias add; db on BLAS; the tied
                      weight's dW layout
    gelu.py           the logistic form (exp, not tanh), in place, no x**3, blocks on all cores
    layer_norm.py     means as matvecs, in place, blocks of rows on all cores
    cross_entropy.py  no (N, V) log-softmax array; exp kept for the backward; rows threaded
    attention.py      heads (or batch rows) on our threads with single-threaded BLAS;
                      softmax in place; rowsum(g * O) instead of rowsum(dP * P)
    adam.py           the update in cache-sized chunks, chunks on all cores

softmax, log_softmax and dropout have no fast version: their reference is already one pass
of whole-array NumPy calls. Which of these is slower than its reference or than PyTorch at
some shape: benchmarks/sweep_ops.py (tests/test_no_cliff.py guards a few). The tuned BPE merge learning lives beside its reference, in
minigpt/tokenizers/bpe_train_fast.py (text processing, not an op).
"""
from . import adam, attention, cross_entropy, embedding, gelu, layer_norm, linear, runtime

__all__ = ["runtime", "embedding", "linear", "gelu", "layer_norm", "cross_entropy",
           "attention", "adam"]
