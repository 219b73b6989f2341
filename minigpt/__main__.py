"""`python -m minigpt ...`: the same as the `minigpt` command (minigpt/cli/)."""
import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while the command line loads: no traceback
    print("\nminigpt: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
