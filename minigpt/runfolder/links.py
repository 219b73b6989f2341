"""Symbolic links in a run folder are never followed: removing and listing without following.

A run folder is minigpt's own: everything in it is written, moved or deleted by minigpt. A link
there (`loss.png` -> a user's file, `snapshots` -> another folder, `.previous-run` -> anywhere)
would send those writes, moves and deletes somewhere else. So a link is either refused with a
RunFolderError naming it (where minigpt would write through it), or moved and deleted as the
link itself (the file or folder it points to is never touched).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from .errors import RunFolderError

__all__ = ["remove", "links_under", "refuse_links"]


def remove(path: Path) -> None:
    """Delete a file, a link (the link, not its target) or a folder tree (whose links are
    removed, not followed); nothing if `path` does not exist."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def links_under(root: Path) -> list:
    """Every symbolic link inside the folder `root` (at any depth), without following any."""
    found = []
    for top, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            if os.path.islink(os.path.join(top, name)):
                found.append(Path(top) / name)
    return sorted(found)


def refuse_links(links, why: str) -> None:
    """A RunFolderError naming the links (the first few) if there are any."""
    if not links:
        return
    shown = []
    for link in links[:3]:
        try:
            shown.append(f"{link} -> {os.readlink(link)}"[:300])
        except OSError:
            shown.append(str(link))
    more = f" (and {len(links) - 3} more)" if len(links) > 3 else ""
    raise RunFolderError(
        f"{'; '.join(shown)}{more}: a symbolic link inside a run folder; minigpt never {why} "
        "through a link (it would change the file or folder it points to). Replace the link by "
        "the file or folder itself, or delete it, and start again.")
