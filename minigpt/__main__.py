"""`python -m minigpt ...` and the `minigpt` command (setup.py's console script): minigpt/cli/.

The command line is imported inside `run`, so a Ctrl-C while it loads is a one-line message
and exit status 130, not a traceback. (The package's own `import numpy` comes before any of
minigpt's code runs; a Ctrl-C there is Python's.)"""
import sys


def run() -> int:
    try:
        from .cli import main
    except KeyboardInterrupt:  # Ctrl-C while the command line loads: no traceback
        print("\nminigpt: interrupted", file=sys.stderr)
        return 130
    return main()


if __name__ == "__main__":
    sys.exit(run())
