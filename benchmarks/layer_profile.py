"""Where the default model's wgan-gp iteration spends its time, layer by layer.

The default run (params.yaml: dcgan 28×28×1 at width 32 with ``model.extra_layers``,
params.yaml's batch, wgan-gp with ``n_critic`` critic steps + 1 generator step, XLA) is
built as ``wgan.train`` builds it. Each of its weight layers (critic: the 1→32 block
convolution, the extra 3×3 32→32 convolutions, the 32→64 convolution, the dense output;
generator: the dense input, the 64→32 transposed convolution, the extra 3×3
convolutions, the 32→1 block transposed convolution) is timed in its three passes —
forward, backprop-input (the gradient to the layer's input) and backprop-filter (to its
kernel) — as the step runs them: the model's own layer object (so the block convolution
where the step uses one), the step's shapes, under XLA, ONE pass per compiled call; not
inside a ``tf.range`` loop, where XLA loses its fast convolution path. Each pass is timed
in rounds alternating with its GEMM (below) and with an empty compiled call, each call
run several times and ended by one host sync (``train_steps._alternating``), so all three
see the same machine speed; the empty call's time is subtracted from the other two (the
step pays no per-op dispatch). The real step is timed as ``train_steps`` times it.

FLOPs are analytic: every pass of a layer is the same im2col product, 2·m·k·n with
m = batch·OH·OW (output pixels of the layer's convolution direction; for a transposed
convolution the pixels of its small input), k = kh·kw·C of the larger map and n = C of
the smaller one (a dense layer: m = batch, k = inputs, n = units). The forward GEMM is
[m,k]×[k,n], the backprop-input [m,n]×[n,k] and the backprop-filter [k,m]×[m,n] (a
transposed convolution swaps forward and backprop-input). :func:`passes_per_iteration`
says how many times an iteration runs each pass; the sum is checked against
``hlo_flops`` of the real compiled steps, and each pass's own compiled HLO is counted
too (one pass: the forward inside a gradient call must be dead code).

Beside each pass, the same FLOPs as one plain matmul of its GEMM shape is timed: when a
layer is slow and its GEMM is just as slow, the shape (k or n of 1–32, from the image's
single channel or the critic's single output) is why, not the convolution.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import yaml

from benchmarks.common import ROOT, Figure, command
from benchmarks.train_steps import _alternating, _setup, _step_flops, _time_calls, matmul_rate

__all__ = ["Layer", "PASSES", "gemm", "pass_function", "passes_per_iteration", "weight_layers",
           "run"]

MODEL = "dcgan28"
SHAPE = (28, 28, 1)
PASSES = ("forward", "backprop-input", "backprop-filter")
SIZES = {
    # quick: a tiny model and a few calls, enough to prove every code path still runs
    "quick": dict(model={"base_channels": 4, "z_dim": 8}, batch=8, rounds=2, calls=2,
                  matmul=512),
    "default": dict(model={}, batch=None, rounds=5, calls=20, matmul=2048),
}
SIZES["full"] = {**SIZES["default"], "rounds": 9}


@dataclass(frozen=True)
class Layer:
    """One weight layer of the default model, as the profile names and sizes it."""

    name: str  # e.g. "critic.conv1"
    network: str  # "critic" | "generator"
    index: int  # position among the network's weight layers
    count: int  # how many weight layers the network has
    op: str  # what computes it: "block conv", "conv", "transposed conv", "dense", ...
    m: int
    k: int
    n: int
    transposed: bool  # a transposed convolution: its forward is the conv's backprop-input

    @property
    def flops(self) -> float:
        """2·m·k·n: each of the three passes does this many multiply-adds, twice."""
        return 2.0 * self.m * self.k * self.n


def gemm(layer: Layer, pass_name: str) -> tuple[int, int, int]:
    """(rows, inner, columns) of the im2col matrix product that ``pass_name`` is."""
    m, k, n = layer.m, layer.k, layer.n
    shapes = {"forward": (m, k, n), "backprop-input": (m, n, k), "backprop-filter": (k, m, n)}
    if layer.transposed:
        shapes["forward"], shapes["backprop-input"] = shapes["backprop-input"], shapes["forward"]
    return shapes[pass_name]


def passes_per_iteration(layer: Layer, n_critic: int) -> dict[str, int]:
    """How often one wgan-gp iteration (``n_critic`` critic steps + 1 generator step) runs
    each pass of ``layer``, with the penalty's forward pass off the outer tape
    (:mod:`wgan.penalties`).

    A critic step runs the critic forward on real, fake and x̂; the penalty's input
    gradient (one backprop-input per layer); its double backward (per layer a
    backprop-filter, and a forward to carry the gradient on, except for the last layer,
    whose upstream gradient is a constant); and the adversarial backward on real and fake
    (backprop-filter everywhere, backprop-input except into the image). It runs the
    generator forward once. A generator step runs both networks forward once and back
    once: backprop-input through every critic layer and every generator layer but the
    first (z), backprop-filter for the generator only.
    """
    if layer.network == "critic":
        last, first = layer.index == layer.count - 1, layer.index == 0
        return {"forward": n_critic * (3 + (not last)) + 1,
                "backprop-input": n_critic * (1 + 2 * (not first)) + 1,
                "backprop-filter": 3 * n_critic}
    return {"forward": n_critic + 1, "backprop-input": int(layer.index > 0),
            "backprop-filter": 1}


def _describe(layer, batch: int) -> tuple[str, int, int, int, bool]:
    """(op, m, k, n, transposed) of a Keras conv/dense layer at ``batch``."""
    from keras import layers

    from wgan.block_conv import BlockConv2D, BlockConv2DTranspose

    kernel = tuple(layer.kernel.shape)
    if isinstance(layer, layers.Dense):
        return "dense", batch, kernel[0], kernel[1], False
    block = isinstance(layer, (BlockConv2D, BlockConv2DTranspose))
    taps = kernel[0] * kernel[1]
    if isinstance(layer, layers.Conv2DTranspose):  # kernel [kh, kw, out, in]
        _, h, w, _ = layer.input.shape
        op = "block transposed conv" if block else "transposed conv"
        return op, batch * h * w, taps * kernel[2], kernel[3], True
    _, h, w, _ = layer.output.shape  # Conv2D, kernel [kh, kw, in, out]
    return "block conv" if block else "conv", batch * h * w, taps * kernel[2], kernel[3], False


def weight_layers(generator, critic, batch: int) -> list[tuple[Layer, object]]:
    """Every conv/dense layer of both networks, in order, with the Keras layer object."""
    out = []
    for network, model in (("critic", critic), ("generator", generator)):
        own = [layer for layer in model.layers if hasattr(layer, "kernel")]
        kinds: dict[str, int] = {}
        for i, keras_layer in enumerate(own):
            op, m, k, n, transposed = _describe(keras_layer, batch)
            kind = "dense" if op == "dense" else "deconv" if transposed else "conv"
            kinds[kind] = kinds.get(kind, 0) + 1
            name = f"{network}.{kind}{kinds[kind] if kind != 'dense' else ''}"
            out.append((Layer(name, network, i, len(own), op, m, k, n, transposed),
                        keras_layer))
    return out


def pass_function(keras_layer, pass_name: str):
    """One pass of ``keras_layer`` as an XLA-compiled function of (x, upstream gradient)."""
    import tensorflow as tf

    def forward(x, dy):
        return keras_layer(x)

    def backprop_input(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = keras_layer(x)
        return tape.gradient(y, x, output_gradients=dy)

    def backprop_filter(x, dy):
        with tf.GradientTape() as tape:
            y = keras_layer(x)
        return tape.gradient(y, keras_layer.kernel, output_gradients=dy)

    fn = {"forward": forward, "backprop-input": backprop_input,
          "backprop-filter": backprop_filter}[pass_name]
    return tf.function(fn, jit_compile=True)


def _sync_call(fn, args):
    """``call(i)`` for :func:`train_steps._alternating`: ``fn(*args)`` under XLA, returning
    one element of the result (the scalar a round's host sync reads) beside it, called as
    a concrete function: no eager op or retracing check per call."""
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def with_scalar(*inputs):
        out = fn(*inputs)
        return out, tf.reshape(out, [-1])[0]

    call = with_scalar.get_concrete_function(*args)
    return lambda i: call(*args)[1]


def _default_run(size_model: dict) -> tuple[dict, dict]:
    """(train, model) params of the default run in params.yaml, model overridden by size.

    Unconditional: a conditional critic has the same layers (its output is 10 wide, not 1)
    and the generator one embedding added, which ``default_candidates ratios`` costs."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    return raw["train"], {**raw["model"], **size_model, "conditional": False}


def _profile_pass(layer: Layer, keras_layer, pass_name: str, spec: dict) -> dict:
    """Seconds per call of the pass, of its GEMM and of an empty call, in alternating
    rounds (the same machine speed for all three); the pass's own compiled FLOPs."""
    import tensorflow as tf

    from benchmarks.hlo_flops import hlo_flops

    x = tf.random.stateless_normal([spec["batch"], *keras_layer.input.shape[1:]], [1, 2])
    dy = tf.random.stateless_normal([spec["batch"], *keras_layer.output.shape[1:]], [3, 4])
    fn = pass_function(keras_layer, pass_name)
    hlo = hlo_flops(fn.experimental_get_compiler_ir(x, dy)(stage="optimized_hlo"))["total"]
    m, k, n = gemm(layer, pass_name)
    a, b = tf.random.stateless_normal([m, k], [7, 8]), tf.random.stateless_normal([k, n], [9, 10])
    result = _alternating({"pass": _sync_call(fn, (x, dy)), "gemm": _sync_call(tf.matmul, (a, b)),
                           "empty": _sync_call(lambda v: v[:1, :1], (x,))},
                          spec["calls"], spec["rounds"])
    seconds = {name: statistics.median(r[name] for r in result.values)
               for name in ("pass", "gemm", "empty")}
    return {"seconds": max(seconds["pass"] - seconds["empty"], 0.0), "raw_seconds":
            seconds["pass"], "gemm_seconds": max(seconds["gemm"] - seconds["empty"], 0.0),
            "empty_seconds": seconds["empty"], "hlo_flops": hlo, "load": result.load}


def _rate(flops: float, seconds: float) -> float | None:
    """GFLOP/s, or None for a pass that took no longer than an empty call."""
    return round(flops / seconds / 1e9, 1) if seconds > 0 else None


def _fraction(gflops: float | None, peak: float) -> float | None:
    return None if gflops is None else round(gflops / peak, 3)


def _iteration(cfg, run, shape, batch: int, spec: dict) -> dict:
    """The real step: seconds per iteration and its FLOPs from the compiled HLO."""
    import tensorflow as tf

    real = tf.random.stateless_uniform([batch, *shape], [5, 6], -1, 1)
    critic_s, critic_runs = _time_calls(
        lambda i: run.steps.critic_step(real, tf.constant([0, i], tf.int64))["critic_loss"],
        spec["rounds"], spec["calls"])
    gen_s, gen_runs = _time_calls(
        lambda i: run.steps.generator_step(tf.constant([0, i], tf.int64))["generator_loss"],
        spec["rounds"], spec["calls"])
    flops = _step_flops(run.steps, real, tf.constant([0, 1], tf.int64))
    return {"seconds": cfg.n_critic * critic_s + gen_s, "critic_s": critic_s, "gen_s": gen_s,
            "flops": cfg.n_critic * flops["critic"] + flops["generator"],
            "load": max(critic_runs.load, gen_runs.load)}


def run(size: str = "default") -> list[Figure]:
    from wgan.models import base_channels

    spec = dict(SIZES[size])
    train, model = _default_run(spec["model"])
    spec["batch"] = spec["batch"] or train["batch"]
    cmd = command("layer_profile", size)
    peak, peak_detail = matmul_rate(spec["matmul"])
    cfg, setup, params = _setup(SHAPE, model, "wgan-gp", True, spec["batch"], train)
    step = _iteration(cfg, setup, SHAPE, spec["batch"], spec)
    what = (f"{MODEL} width {base_channels(params.model, SHAPE)} wgan-gp batch "
            f"{spec['batch']}, XLA, {cfg.n_critic} critic + 1 generator steps")
    figures, total_s, total_flops, gemm_s, empty = [], 0.0, 0.0, 0.0, []
    for layer, keras_layer in weight_layers(setup.generator, setup.critic, spec["batch"]):
        for pass_name, runs in passes_per_iteration(layer, cfg.n_critic).items():
            if not runs:
                continue
            timed = _profile_pass(layer, keras_layer, pass_name, spec)
            empty.append(timed["empty_seconds"])
            per_iteration = runs * timed["seconds"]
            total_s += per_iteration
            gemm_s += runs * timed["gemm_seconds"]
            total_flops += runs * layer.flops
            gflops, gemm_gflops = _rate(layer.flops, timed["seconds"]), \
                _rate(layer.flops, timed["gemm_seconds"])
            print(f"   ... {layer.name} {pass_name}: {1e3 * timed['seconds']:.3f} ms × {runs}, "
                  f"{gflops} GFLOP/s (GEMM {gemm_gflops})", flush=True)
            figures.append(Figure(
                id=f"layers.{MODEL}.{layer.name}.{pass_name}.ms",
                what=f"{what}: {layer.name} ({layer.op}) {pass_name}, ms per iteration",
                value=round(1e3 * per_iteration, 3), unit="ms", command=cmd,
                load=timed["load"], details={
                    "layer": layer.name, "op": layer.op, "pass": pass_name,
                    "runs_per_iteration": runs, "ms_per_run": round(1e3 * timed["seconds"], 4),
                    "ms_per_call_with_overhead": round(1e3 * timed["raw_seconds"], 4),
                    "gflop_per_run": round(layer.flops / 1e9, 5),
                    "hlo_gflop_per_run": round(timed["hlo_flops"] / 1e9, 5),
                    "gflops": gflops, "fraction_of_matmul": _fraction(gflops, peak),
                    "gemm": "×".join(map(str, gemm(layer, pass_name))),
                    "gemm_gflops": gemm_gflops,
                    "gemm_fraction_of_matmul": _fraction(gemm_gflops, peak),
                    "share_of_iteration": round(per_iteration / step["seconds"], 3)}))
    common = dict(command=cmd, load=step["load"])
    gap = step["seconds"] - total_s
    # The passes' share of the iteration (their sum, at most the iteration: alone they can
    # take longer than fused into it) run at their GEMMs' speed; the rest unchanged.
    gemm_bound = step["seconds"] - min(step["seconds"], total_s) * (1 - gemm_s / total_s)
    return figures + [
        Figure(id=f"layers.{MODEL}.matmul_gflops", what="float32 matmul rate in the layer "
               f"profile's run ({spec['matmul']}², best of TF and XLA)", value=round(peak, 1),
               unit="GFLOP/s", command=cmd, load=peak_detail.pop("load"), details=peak_detail),
        Figure(id=f"layers.{MODEL}.iteration_ms", what=f"{what}: the real step, per iteration",
               value=round(1e3 * step["seconds"], 2), unit="ms", **common, details={
                   "critic_step_ms": round(1e3 * step["critic_s"], 3),
                   "generator_step_ms": round(1e3 * step["gen_s"], 3),
                   "hlo_gflop": round(step["flops"] / 1e9, 4),
                   "gflops": round(step["flops"] / step["seconds"] / 1e9, 1),
                   "fraction_of_matmul": round(step["flops"] / step["seconds"] / 1e9 / peak,
                                               3)}),
        Figure(id=f"layers.{MODEL}.layers_sum_ms", what=f"{what}: the layers' passes timed one "
               "by one, summed per iteration", value=round(1e3 * total_s, 2), unit="ms",
               **common, details={"share_of_iteration": round(total_s / step["seconds"], 3),
                                  "gflops": round(total_flops / total_s / 1e9, 1)}),
        Figure(id=f"layers.{MODEL}.gap_ms", what=f"{what}: iteration − the layers' sum "
               "(elementwise, fusions, optimizer, launches)", value=round(1e3 * gap, 2),
               unit="ms", **common,
               details={"share_of_iteration": round(gap / step["seconds"], 3)}),
        Figure(id=f"layers.{MODEL}.gemm_bound_ms", what=f"{what}: the iteration if every pass "
               "ran as fast as one matmul of its GEMM shape, the rest unchanged",
               value=round(1e3 * gemm_bound, 2), unit="ms", **common, details={
                   "fraction_of_matmul": round(step["flops"] / gemm_bound / 1e9 / peak, 3)}),
        Figure(id=f"layers.{MODEL}.flops_vs_hlo", what=f"{what}: analytic FLOPs of the passes "
               "÷ hlo_flops of the compiled steps", value=round(total_flops / step["flops"], 4),
               unit="×", **common, details={"analytic_gflop": round(total_flops / 1e9, 4),
                                            "hlo_gflop": round(step["flops"] / 1e9, 4)}),
        Figure(id=f"layers.{MODEL}.call_overhead_ms", what="a compiled call that does nothing, "
               "timed in each pass's rounds and subtracted (median over the passes)",
               value=round(1e3 * statistics.median(empty), 4), unit="ms",
               **common),
    ]


if __name__ == "__main__":
    import sys

    for fig in run(sys.argv[1] if len(sys.argv) > 1 else "quick"):
        print(fig.id, fig.value, fig.unit, fig.load, fig.details)
