"""The ``crosstime`` program's entry point: ``crosstime --version`` answers before the command line
is built (building it imports torch and every stage: seconds); anything else runs :data:`crosstime.cli.app`."""

from __future__ import annotations

import sys

from crosstime import __version__


def main() -> None:
    """Run the command line on ``sys.argv``."""
    if sys.argv[1:] == ["--version"]:  # the same answer as the app's own --version, without its imports
        print(f"crosstime {__version__}")
        return
    from crosstime.cli import app  # lazy: start-up time (the app imports torch and the stages: ~4 s)

    app()


if __name__ == "__main__":  # pragma: no cover
    main()
