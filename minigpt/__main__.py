"""`python -m minigpt ...`: the same as the `minigpt` command (minigpt/cli/)."""
import sys

from .cli import main

sys.exit(main())
