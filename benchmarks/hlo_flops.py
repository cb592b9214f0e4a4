"""Model FLOPs of a compiled step, counted from XLA's optimised HLO.

Only convolutions and dots are counted (2 FLOPs per multiply-add); elementwise work is
small beside them. A convolution with input ("base") dilation is how XLA writes a
transposed convolution or a backprop-input: its window also runs over the inserted
zeros, which do no useful work, so its count is divided by the dilation factor. The
result is the work the model needs, not what a particular kernel executes.
"""

from __future__ import annotations

import math
import re

__all__ = ["hlo_flops"]

_DEF = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*\w+\[([\d,]*)\]")
_OPERANDS = re.compile(r"\b(?:convolution|dot)\(([^)]*)\)")


def _dims(text: str) -> list[int]:
    return [int(d) for d in text.split(",") if d]


def hlo_flops(hlo: str) -> dict[str, float]:
    """``{"conv": ..., "dot": ..., "total": ...}`` FLOPs of one execution of ``hlo``."""
    shapes: dict[str, list[int]] = {}
    for line in hlo.splitlines():
        m = _DEF.match(line)
        if m:
            shapes[m.group(1)] = _dims(m.group(2))
    conv = dot = 0.0
    for line in hlo.splitlines():
        m = _DEF.match(line)
        ops = _OPERANDS.search(line)
        if not m or not ops:
            continue
        out = math.prod(_dims(m.group(2)))
        names = [o.strip().split()[-1].lstrip("%") for o in ops.group(1).split(",")]
        if " convolution(" in line:
            labels = re.search(r"dim_labels=(\w+)_(\w+)->(\w+)", line)
            window = re.search(r"size=([\dx]+)", line)
            rhs = shapes.get(names[1])
            if not (labels and rhs):
                continue
            taps = math.prod(int(v) for v in window.group(1).split("x")) if window else 1
            in_features = rhs[labels.group(2).index("i")]
            flops = 2.0 * out * taps * in_features
            lhs_dilate = re.search(r"lhs_dilate=([\dx]+)", line)
            if lhs_dilate:
                flops /= math.prod(int(v) for v in lhs_dilate.group(1).split("x"))
            conv += flops
        elif " dot(" in line:
            lhs = shapes.get(names[0])
            contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", line)
            if lhs is None or contracting is None:
                continue
            k = math.prod(lhs[int(i)] for i in _dims(contracting.group(1)))
            dot += 2.0 * out * k
    return {"conv": conv, "dot": dot, "total": conv + dot}
