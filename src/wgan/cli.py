"""What every stage script shares: argv checks and errors printed as one clear line."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable

__all__ = ["error_line", "run_stage"]

_MAX_LINE = 500
# TensorFlow wraps an op's message in where it ran: "{{function_node ...}} <message>
# [Op:IteratorGetNext] name: " and, inside graphs, "[[{{node ...}}]]" lines.
_TF_NOISE = re.compile(r"\{\{function_node [^}]*\}\}|\[\[.*?\]\]|\[Op:[^\]]*\]( name: ?\S*)?")


def error_line(err: BaseException) -> str:
    """``err`` as one line: its message (and notes), prefixed by its type unless it is one
    of the errors whose message says it all (``ValueError``, ``RuntimeError``, ``OSError``,
    the project's own), cut to a bounded length."""
    message = getattr(err, "message", None)  # TensorFlow's, without its node definitions
    text = str(message if isinstance(message, str) else err)
    text = " ".join(_TF_NOISE.sub(" ", text).split())
    notes = " ".join(" ".join(getattr(err, "__notes__", [])).split())
    if notes:
        text = f"{text} ({notes})" if text else notes
    if len(text) > _MAX_LINE:
        text = text[:_MAX_LINE] + "…"
    kind = type(err)
    if kind in (ValueError, RuntimeError) or issubclass(kind, OSError) or (
            kind.__module__.split(".")[0] == "wgan"):
        return text or kind.__name__
    return f"{kind.__name__}{': ' if text else ''}{text}; set WGAN_TRACEBACK=1 for the traceback"


def run_stage(main: Callable[[list[str]], None], usage: str, n_args: int) -> None:
    """Run ``main(argv)``; any error exits 1 with ``error: <what>`` on one line, not a
    traceback, and Ctrl-C exits 130 quietly.

    Set ``WGAN_TRACEBACK=1`` to see the full traceback instead.
    """
    argv = sys.argv[1:]
    if len(argv) != n_args:
        sys.exit(f"usage: {usage}")
    try:
        main(argv)
    except KeyboardInterrupt:
        if os.environ.get("WGAN_TRACEBACK"):
            raise
        sys.exit(130)
    except Exception as err:
        if os.environ.get("WGAN_TRACEBACK"):
            raise
        sys.exit(f"error: {error_line(err)}")
