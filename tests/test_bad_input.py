"""Bad input gets a short, named error (or a warning where the run can go on), never a
traceback or a silently wrong result (issue 13): the backend variable, argument ranges at parse
time and in the library, out-of-vocabulary text in `eval`, Ctrl-C in `sample`, checkpoints
missing a file, and user data files (unclosed quotes, swapped columns)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
