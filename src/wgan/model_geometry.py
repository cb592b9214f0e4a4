"""The dcgan's geometry: which image sides it builds, and how.

Part of the models (:mod:`wgan.models` builds the layers from it), kept free of Keras so
that params validation (:mod:`wgan.config`) can refuse an impossible ``resize`` before
``prepare`` spends minutes on the data.
"""

from __future__ import annotations

__all__ = ["dcgan_plan"]


def dcgan_plan(side: int) -> tuple[int, int]:
    """(starting side, number of 2× up/down-sampling steps) of a dcgan for ``side``.

    The generator starts at 4×4 (7×7 for 28×28-like sides) and doubles at least twice.
    Raises: ValueError for a side that is not 4·2^k or 7·2^k with k ≥ 2.
    """
    start, steps = side, 0
    while start % 2 == 0 and start > 7:
        start //= 2
        steps += 1
    if steps < 2 or start not in (4, 7):
        raise ValueError(f"dcgan supports sides 4·2^k or 7·2^k with k ≥ 2 (16, 28, 32, 56, "
                         f"64, 112, 128, ...), got {side}")
    return start, steps
