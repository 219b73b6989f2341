"""`minigpt explore`: a page that shows inside a trained model (minigpt/explore/).

    minigpt explore --ckpt runs/tiny                           serve the page on 127.0.0.1:8000
    minigpt explore --ckpt runs/tiny --prompt "ROMEO:" --static romeo.html   one offline file
"""
from __future__ import annotations

import sys
import threading
import webbrowser
from pathlib import Path

from ..checks import Rule, argparse_type
from ..explore import PromptError, load_explorer, make_server, write_static
from ..runfolder import CheckpointError

__all__ = ["add_commands", "cmd_explore"]

HELP = "see inside a trained model: attention, next-token choice, logit lens, backward pass"
port_number = Rule("port_number", int, "an integer in [0, 65535] (0: any free port)",
                   lambda v: 0 <= v <= 65535)


def add_commands(sub) -> None:
    p = sub.add_parser("explore", help=HELP, description=HELP)
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
    p.set_defaults(func=cmd_explore)


def cmd_explore(args) -> int:
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
            write_static(explorer, args.prompt, out, args.force)
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
