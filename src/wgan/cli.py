"""What every stage script shares: argv checks and errors printed as one clear line."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

__all__ = ["run_stage"]


def run_stage(main: Callable[[list[str]], None], usage: str, n_args: int) -> None:
    """Run ``main(argv)``; user-facing errors exit 1 with their message, not a traceback.

    Set ``WGAN_TRACEBACK=1`` to see the full traceback of such an error.
    """
    argv = sys.argv[1:]
    if len(argv) != n_args:
        sys.exit(f"usage: {usage}")
    try:
        main(argv)
    except (ValueError, OSError, RuntimeError) as err:  # OSError names its path
        if os.environ.get("WGAN_TRACEBACK"):
            raise
        sys.exit(f"error: {err}")
