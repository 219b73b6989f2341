"""`minigpt explore`: its arguments and what it runs (`python -m minigpt.explore` too).

    minigpt explore --ckpt runs/tiny                           serve the page on 127.0.0.1:8000
    minigpt explore --ckpt runs/tiny --prompt "ROMEO:" --static romeo.html   one offline file
"""
from __future__ import annotations

import argparse
import sys
import threading
import webbrowser
from pathlib import Path

from ..checks import Rule, argparse_type
from ..fileio import atomic_write_text
from ..runfolder import METRICS_FILE, CheckpointError, read_metrics, resolve_checkpoint
from ..training import load_checkpoint
from .data import Explorer, PromptError
from .page import static_html
from .server import make_server

__all__ = ["add_commands", "add_arguments", "run", "load_explorer", "find_metrics", "HELP"]

HELP = "see inside a trained model: attention, next-token choice, logit lens, backward pass"
port_number = Rule("port_number", int, "an integer in [0, 65535] (0: any free port)",
                   lambda v: 0 <= v <= 65535)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments, on the parser the CLI made for it."""
    p.add_argument("--ckpt", required=True, help="run or checkpoint directory")
    p.add_argument("--prompt", default=None,
                   help="the text to look at (served page: the first one shown; can be changed "
                        "on the page)")
    p.add_argument("--port", type=argparse_type(port_number), default=8000,
                   help="port to serve on (default 8000; 0 = any free port)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument("--static", metavar="OUT.html", default=None,
                   help="write one self-contained HTML file for --prompt and exit (no server)")
    p.add_argument("--force", action="store_true", help="with --static: replace OUT.html")
    p.set_defaults(func=run)


def add_commands(sub) -> None:
    """`minigpt explore` on the main command line's subparsers (minigpt/cli's convention)."""
    add_arguments(sub.add_parser("explore", help=HELP, description=HELP))


def find_metrics(ckpt_dir: Path) -> Path | None:
    """metrics.jsonl of the run a checkpoint belongs to: beside `ckpt/` (run/ckpt), two levels
    up for a snapshot (run/snapshots/step-000500), or inside the checkpoint folder itself."""
    ckpt_dir = Path(ckpt_dir)
    candidates = [ckpt_dir / METRICS_FILE, ckpt_dir.parent / METRICS_FILE]
    if ckpt_dir.parent.name == "snapshots":
        candidates.append(ckpt_dir.parent.parent / METRICS_FILE)
    return next((c for c in candidates if c.is_file()), None)


def load_explorer(ckpt) -> Explorer:
    """An Explorer for a checkpoint or run directory (CheckpointError if it is not one)."""
    found = resolve_checkpoint(ckpt)
    model, tokenizer, _ = load_checkpoint(found)
    if tokenizer is None:
        raise CheckpointError(f"checkpoint {found} has no tokenizer files; the explorer needs "
                              "them to read a prompt")
    warnings = []
    metrics_file = find_metrics(found)
    metrics = read_metrics(metrics_file, warn=warnings.append) if metrics_file else []
    return Explorer(model, tokenizer, metrics=metrics, metrics_warnings=warnings,
                    source=str(ckpt))


def _write_static(explorer: Explorer, prompt: str, out: Path, force: bool) -> None:
    if out.is_dir():
        raise ValueError(f"--static {out} is a directory; give a file name such as {out}/page.html")
    if out.exists() and not force:
        raise ValueError(f"--static {out} exists; pass --force to replace it")
    ids = explorer.encode_prompt(prompt)
    html = static_html(explorer.info(), explorer.analysis(ids), prompt)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, html)


def run(args) -> int:
    """Serve the page (until Ctrl-C) or write --static; 0 on success, 2 on bad input."""
    name = "minigpt explore"
    if args.static is not None and args.prompt is None:
        print(f"{name}: error: --static needs --prompt (the text the file shows)", file=sys.stderr)
        return 2
    if args.force and args.static is None:
        print(f"{name}: error: --force only applies to --static", file=sys.stderr)
        return 2
    try:
        explorer = load_explorer(args.ckpt)
        if args.static is not None:
            out = Path(args.static)
            _write_static(explorer, args.prompt, out, args.force)
            print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): open it in a browser, "
                  "no server or network needed")
            return 0
        if args.prompt is not None:
            explorer.encode_prompt(args.prompt)  # bad prompt: say so now, not on the page
        try:
            server = make_server(explorer, args.host, args.port, args.prompt)
        except OSError as e:
            raise ValueError(f"cannot serve on {args.host}:{args.port} ({e.strerror or e}); "
                             "pick another --port (0 = any free one)") from None
    except (CheckpointError, PromptError, ValueError, OSError) as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    print(f"{name}: serving {args.ckpt} at {url} (Ctrl-C stops)", flush=True)
    if host not in ("127.0.0.1", "::1", "localhost"):
        print(f"{name}: note: bound to {host}: anyone who can reach this address can use the "
              "page and run the model", flush=True)
    if not args.no_browser:
        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print(f"\n{name}: stopped", flush=True)
    finally:
        server.server_close()
    return 0
