#!/usr/bin/env python
"""Check minigpt against the real GPT-1: greedy continuation of "the president is".

    python tools/gpt1_president.py PATH [--compare-transformers]

PATH is a directory you already have (this script downloads nothing):
  * HuggingFace `openai-community/openai-gpt`: config.json + model.safetensors (or
    pytorch_model.bin) + vocab.json + merges.txt, or
  * OpenAI's original release (finetune-transformer-lm's `model/`): params_shapes.json,
    params_0.npy .. params_9.npy, encoder_bpe_40000.json, vocab_40000.bpe.

The expected ids are those of transformers' own integration test for openai-gpt:
  huggingface/transformers, tests/models/openai/test_modeling_openai.py,
  class OPENAIGPTModelLanguageGenerationTest, test_lm_generate_openai_gpt
  (read at commit 00607d4287de4f142c9399c10c557d121fe641fd):
  input ids [481, 4735, 544] ("the president is"), then
  `model.generate(input_ids, do_sample=False, max_length=20)` must return the 20 ids below
  ("the president is a very good man. " \\n " i'm sure he is, " said the").
Like that test, the model is fed the ids directly; when tokenizer files are present the script
also checks that minigpt's BPETokenizer encodes "the president is" to the same ids.

Exit status: 0 when minigpt's ids equal the expected ones, 1 otherwise.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout

PROMPT = "the president is"
PROMPT_IDS = [481, 4735, 544]
EXPECTED_IDS = [481, 4735, 544, 246, 963, 870, 762, 239, 244, 40477, 244, 249, 719, 881, 487,
                544, 240, 244, 603, 481]
MAX_LENGTH = 20  # the test's max_length: prompt + 17 new tokens


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path", help="directory with the GPT-1 weights (HuggingFace or OpenAI layout)")
    ap.add_argument("--compare-transformers", action="store_true",
                    help="also run transformers' OpenAIGPTLMHeadModel from PATH (offline; "
                         "HuggingFace layout only) and compare logits")
    args = ap.parse_args(argv)

    import numpy as np

    from minigpt import no_grad
    from minigpt import GPT
    from minigpt.sample import generate

    path = Path(args.path)
    t0 = time.perf_counter()
    model = GPT.from_pretrained(path)
    print(f"loaded {path} in {time.perf_counter() - t0:.1f} s: "
          f"{model.num_parameters():,} parameters, {model.config}")

    ok = True
    tok = None
    try:
        from minigpt.tokenizers import BPETokenizer
        tok = BPETokenizer.from_pretrained(path)
    except (ImportError, FileNotFoundError) as e:
        print(f"tokenizer: not checked ({e})")
    if tok is not None:
        enc = tok.encode(PROMPT)
        same = enc == PROMPT_IDS
        ok &= same
        print(f"tokenizer: {PROMPT!r} -> {enc} "
              f"{'== expected' if same else f'!= expected {PROMPT_IDS}: MISMATCH'}")

    t0 = time.perf_counter()
    new = generate(model, PROMPT_IDS, MAX_LENGTH - len(PROMPT_IDS), temperature=0.0)
    ids = PROMPT_IDS + new
    print(f"greedy continuation ({time.perf_counter() - t0:.1f} s):")
    print(f"  minigpt : {ids}")
    print(f"  expected: {EXPECTED_IDS}")
    if tok is not None:
        print(f"  text    : {tok.decode(ids)!r}")
    same = ids == EXPECTED_IDS
    ok &= same
    if not same:
        first = next(i for i, (a, b) in enumerate(zip(ids, EXPECTED_IDS)) if a != b)
        print(f"MISMATCH from position {first}")

    if args.compare_transformers:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download
        import torch
        from transformers import OpenAIGPTLMHeadModel
        hf = OpenAIGPTLMHeadModel.from_pretrained(path, local_files_only=True).eval()
        x = np.array([EXPECTED_IDS])
        with torch.no_grad():
            ref = hf(torch.as_tensor(x)).logits.numpy()
            hf_ids = hf.generate(torch.as_tensor([PROMPT_IDS]), do_sample=False,
                                 max_length=MAX_LENGTH)[0].tolist()
        with no_grad():
            ours = model(x).data
        diff = float(np.abs(ours - ref).max())
        print(f"transformers: greedy ids {'equal' if hf_ids == ids else 'DIFFER: ' + str(hf_ids)}"
              f"; max |logit difference| over the 20 positions {diff:.3g}")
        ok &= hf_ids == ids and diff < 1e-3

    print("OK: minigpt reproduces transformers' openai-gpt test" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
