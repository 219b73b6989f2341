"""python -m minigpt.explore --ckpt DIR [...]: the same as `minigpt explore`."""
import argparse
import sys

from .command import HELP, add_arguments, run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="minigpt explore", description=HELP)
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except KeyboardInterrupt:  # Ctrl-C while loading or writing --static
        print("\nminigpt explore: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
