"""Training step throughput: every variant at the default model sizes, XLA on and off.

The default sizes are dcgan 28×28×1 (width 32), 32×32×3 and 64×64×3 (width 64) and
mlp 8192; dcgan 28×28 at width 64 (``dcgan28-b64``) is measured too, because the
step-time and penalty-overhead targets are stated for that model.

Models and optimizers are built the way ``wgan.train`` builds them (default params,
global batch 64, the default strategy on this CPU, op determinism on) and the steps
come from ``wgan.steps.make_train_steps``. Each critic/generator step is timed in
rounds of a few calls ended by one host sync, as the training loop syncs only when it
logs; the figure is the median round after a warm-up (which includes compilation).
The real batch is a fixed tensor here, so the input pipeline is not on the clock; the
headline loop (``train.dcgan28-b64.wgan-gp.xla.loop_iteration_s``) does take its batches from
``training_stream`` on prepared MNIST, exactly as ``wgan.train`` does, in rounds that
alternate with the reference loops (:mod:`benchmarks.reference_loop`), so that the ratio to
the straightforward XLA loop is free of this machine's hour-to-hour speed drift. The
target model's penalty overhead is timed the same way, wgan-gp and wgan rounds alternating.

FLOPs per step come from XLA's optimised HLO of the compiled step
(:mod:`hlo_flops`); the achieved rate is compared with a measured float32 matmul.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import WORK, Figure, Gated, command, gated
from benchmarks.hlo_flops import hlo_flops
from wgan.variants import VARIANTS as VARIANT_TABLE

# The step-time target and its reference loops (0.9 s plain, 0.5 s XLA) describe
# the 28×28 DCGAN at width 64; the default width at 28×28 is 32 (wgan.models.base_channels).
TARGET_MODEL = "dcgan28-b64"
MODELS = {  # name -> (sample shape, model params)
    "dcgan28": ((28, 28, 1), {}),
    TARGET_MODEL: ((28, 28, 1), {"base_channels": 64}),
    "dcgan32": ((32, 32, 3), {}),
    "dcgan64": ((64, 64, 3), {}),
    "mlp8192": ((8192,), {}),
}
VARIANTS = tuple(VARIANT_TABLE)  # every entry of wgan.variants.VARIANTS
TARGET_ITERATION_S = 0.45
REFERENCE_S = {"reference-xla": 0.5, "reference-plain": 0.9}  # as first measured here
TARGET_VS_REFERENCE = round(TARGET_ITERATION_S / REFERENCE_S["reference-xla"], 2)
TARGET_GP_RATIO = 1.5
SIZES = {
    # quick: one tiny model, enough to prove every code path still runs
    "quick": dict(models={TARGET_MODEL: ((28, 28, 1), {"base_channels": 4, "z_dim": 8})},
                  variants=("wgan-gp",), xla=(True,), rounds=2, calls=2, batch=8,
                  loop_iterations=2),
    "default": dict(models=MODELS, variants=VARIANTS, xla=(True, False), rounds=5, calls=3,
                    batch=64, loop_iterations=10),
}
SIZES["full"] = {**SIZES["default"], "rounds": 9}


MNIST_CLASSES = 10  # what a ``model.conditional`` benchmark model is built for


def _setup(shape, model: dict, variant: str, xla: bool, batch: int, train: dict | None = None):
    """(resolved train config, the ``TrainingSetup`` ``wgan.train`` would build, params);
    ``train`` overrides more train params (e.g. ``n_critic``)."""
    import tensorflow as tf

    from wgan.config import parse_params, resolve_train
    from wgan.training_setup import build_training

    params = parse_params({"train": {**(train or {}), "variant": variant, "jit_compile": xla,
                                     "batch": batch}, "model": model})
    cfg = resolve_train(params.train)
    run = build_training(params.model, cfg, shape, tf.distribute.get_strategy(), seed=0,
                         num_classes=MNIST_CLASSES)
    return cfg, run, params


def _build(shape, model: dict, variant: str, xla: bool, batch: int, train: dict | None = None):
    """The steps ``wgan.train`` would build (see :func:`_setup`)."""
    cfg, run, params = _setup(shape, model, variant, xla, batch, train)
    return cfg, run.steps, params


def _time_calls(call, rounds: int, calls: int) -> tuple[float, Gated]:
    """Median seconds per call: ``rounds`` quiet-gated rounds of ``calls`` calls, one sync
    each. Slow steps get fewer calls per round (about half a second, at least one call)."""
    float(call(0))  # warm-up: tracing and compilation
    t0 = time.perf_counter()
    float(call(1))
    calls = max(1, min(calls, round(0.5 / (time.perf_counter() - t0))))
    counter = iter(range(2, 10**9))

    def one_round():
        for _ in range(calls):
            out = call(next(counter))
        float(out)

    result = gated(one_round, rounds)
    return result.median / calls, result


def _step_flops(steps, real, seed) -> dict[str, float]:
    critic = steps.critic_step.experimental_get_compiler_ir(real, seed)(stage="optimized_hlo")
    generator = steps.generator_step.experimental_get_compiler_ir(seed)(stage="optimized_hlo")
    return {"critic": hlo_flops(critic)["total"], "generator": hlo_flops(generator)["total"]}


def matmul_rate(n: int = 2048, repeats: int = 7) -> tuple[float, dict]:
    """Best of XLA and non-XLA float32 n×n matmul, in GFLOP/s (median of repeats)."""
    import tensorflow as tf

    a = tf.random.stateless_normal([n, n], [1, 2])
    b = tf.random.stateless_normal([n, n], [3, 4])
    rates, loads = {}, []
    for name, jit in (("tf", False), ("xla", True)):
        fn = tf.function(lambda x, y: tf.matmul(x, y), jit_compile=jit)
        for _ in range(2):
            fn(a, b).numpy()
        result = gated(lambda fn=fn: fn(a, b).numpy(), repeats)
        rates[name] = 2 * n**3 / result.median / 1e9
        loads.append(result.load)
    return max(rates.values()), {**{k: round(v, 1) for k, v in rates.items()},
                                 "load": max(loads)}


def _prepared_mnist() -> Path:
    """Prepared bundled MNIST under ``WORK``, made once."""
    from wgan.config import parse_params
    from wgan.datasets import prepare

    prepared = WORK / "prepared-mnist"
    if not (prepared / "meta.json").is_file():
        prepare(parse_params({}).data, prepared)
    return prepared


def _alternating(calls: dict[str, Callable[[int], object]], per_round: int,
                 rounds: int) -> Gated:
    """Quiet-gated rounds in which each call runs ``per_round`` times in turn, ended by one
    host sync, so all of them see the same machine speed. Each kept round's value maps a
    call's name to its seconds per call. ``call(i)`` returns a scalar; two warm-up calls
    each (tracing and compilation) come first."""
    for call in calls.values():
        for i in range(2):
            float(call(i))
    counter = iter(range(2, 10**9))

    def one_round() -> dict[str, float]:
        seconds = {}
        for name, call in calls.items():
            t0 = time.perf_counter()
            for _ in range(per_round):
                out = call(next(counter))
            float(out)
            seconds[name] = (time.perf_counter() - t0) / per_round
        return seconds

    return gated(one_round, rounds)


def _headline_loop(size: str, spec: dict) -> list[Figure]:
    """The target model's wgan-gp iteration with XLA, fed by ``training_stream`` like
    ``wgan.train``, in rounds alternating with the reference loops
    (:mod:`benchmarks.reference_loop`, with and without XLA) on the same stream."""
    import tensorflow as tf

    from benchmarks.reference_loop import reference_steps
    from wgan.distribution import CRITIC, GENERATOR, update_seed
    from wgan.models import latent_dim
    from wgan.prepared.read import training_stream

    shape, model = spec["models"][TARGET_MODEL]
    cfg, steps, params = _build(shape, model, "wgan-gp", True, spec["batch"])
    z_dim = latent_dim(params.model, shape)
    strategy = tf.distribute.get_strategy()
    data = iter(strategy.distribute_datasets_from_function(
        lambda ctx: training_stream(_prepared_mnist(), cfg.batch, seed=0, input_context=ctx)))
    loops = {"ours": steps, **{name: reference_steps(params.model, shape, cfg, z_dim, xla)
                               for name, xla in (("reference-xla", True),
                                                 ("reference-plain", False))}}

    def iteration(loop, s: int):
        for k in range(cfg.n_critic):
            loop.critic_step(next(data), tf.constant(update_seed(0, s, CRITIC, k), tf.int64))
        out = loop.generator_step(tf.constant(update_seed(0, s, GENERATOR, 0), tf.int64))
        return out["generator_loss"] if isinstance(out, dict) else out

    n = spec["loop_iterations"]
    result = _alternating({name: lambda i, loop=loop: iteration(loop, i)
                           for name, loop in loops.items()}, n, spec["rounds"])
    per_loop = {name: statistics.median(r[name] for r in result.values) for name in loops}
    ratios = [r["ours"] / r["reference-xla"] for r in result.values]
    ratio = statistics.median(ratios)
    cmd, value = command("train_steps", size), per_loop["ours"]
    rounds = {name: [round(r[name], 4) for r in result.values] for name in loops}
    common = dict(unit="s", command=cmd, load=result.load)
    what = f"dcgan 28×28 width 64 wgan-gp batch {cfg.batch}"
    return [
        Figure(id=f"train.{TARGET_MODEL}.wgan-gp.xla.loop_iteration_s",
               what=f"{what}, XLA: one generator iteration ({cfg.n_critic} critic + 1 "
                    "generator step), data from training_stream",
               value=round(value, 4), target=f"<= {TARGET_ITERATION_S}",
               meets=value <= TARGET_ITERATION_S,
               details={"rounds": rounds["ours"], "iterations_per_round": n}, **common),
        *[Figure(id=f"train.{TARGET_MODEL}.wgan-gp.{name}.loop_iteration_s",
                 what=f"{what}: the reference, a straightforward tf.function loop"
                      f"{' with XLA' if name == 'reference-xla' else ''} (first measured "
                      f"at about {REFERENCE_S[name]} s), rounds alternating with ours",
                 value=round(per_loop[name], 4), details={"rounds": rounds[name]}, **common)
          for name in REFERENCE_S],
        Figure(id=f"train.{TARGET_MODEL}.wgan-gp.xla.loop_iteration_vs_reference",
               what=f"{what}: our iteration ÷ the straightforward XLA loop's, same rounds "
                    f"(the {TARGET_ITERATION_S} s target is {TARGET_VS_REFERENCE}× the "
                    f"{REFERENCE_S['reference-xla']} s reference)",
               value=round(ratio, 3), unit="×", command=cmd, load=result.load,
               target=f"<= {TARGET_VS_REFERENCE}", meets=ratio <= TARGET_VS_REFERENCE,
               details={"rounds": [round(v, 3) for v in ratios]}),
    ]


def _gp_overhead(size: str, spec: dict) -> Figure:
    """wgan-gp critic step ÷ wgan critic step on the target model with XLA, timed in
    alternating rounds so that both see the same machine speed."""
    import tensorflow as tf

    shape, model = spec["models"][TARGET_MODEL]
    real = tf.random.stateless_uniform([spec["batch"], *shape], [5, 6], -1, 1)
    steps = {v: _build(shape, model, v, True, spec["batch"])[1] for v in ("wgan-gp", "wgan")}
    calls = spec["calls"] * 3
    result = _alternating(
        {variant: lambda i, step=step: step.critic_step(real, tf.constant([0, i], tf.int64))
         ["critic_loss"] for variant, step in steps.items()}, calls, spec["rounds"])
    ratios = [r["wgan-gp"] / r["wgan"] for r in result.values]
    ratio = statistics.median(ratios)
    return Figure(
        id=f"train.{TARGET_MODEL}.xla.gp_overhead",
        what=f"{TARGET_MODEL} XLA: wgan-gp critic step / wgan critic step (rounds alternating "
             "between the two)", value=round(ratio, 3), unit="×",
        command=command("train_steps", size), target=f"<= {TARGET_GP_RATIO}",
        meets=ratio <= TARGET_GP_RATIO, load=result.load,
        details={"rounds": [round(v, 3) for v in ratios], "calls_per_round": calls})


def run(size: str = "default") -> list[Figure]:
    import tensorflow as tf

    spec = SIZES[size]
    cmd = command("train_steps", size)
    figures = []
    peak, peak_detail = matmul_rate(512 if size == "quick" else 2048)
    figures.append(Figure(id="machine.matmul_gflops", what="float32 2048×2048 matmul rate "
                          "(best of TF/oneDNN and XLA)", value=round(peak, 1), unit="GFLOP/s",
                          command=cmd, load=peak_detail.pop("load"), details=peak_detail))
    figures.extend(_headline_loop(size, spec))
    figures.append(_gp_overhead(size, spec))
    step_times: dict[tuple, float] = {}
    for model_name, (shape, model) in spec["models"].items():
        for variant in spec["variants"]:
            for xla in spec["xla"]:
                cfg, steps, _ = _build(shape, model, variant, xla, spec["batch"])
                real = tf.random.stateless_uniform([cfg.batch, *shape], [5, 6], -1, 1)
                critic_s, critic_runs = _time_calls(
                    lambda i, steps=steps, real=real:
                    steps.critic_step(real, tf.constant([0, i], tf.int64))
                    ["critic_loss"], spec["rounds"], spec["calls"])
                gen_s, gen_runs = _time_calls(
                    lambda i, steps=steps: steps.generator_step(tf.constant([0, i], tf.int64))
                    ["generator_loss"], spec["rounds"], spec["calls"])
                iteration = cfg.n_critic * critic_s + cfg.g_steps * gen_s
                details = {"model": model_name, "variant": variant, "xla": xla,
                           "batch": cfg.batch, "n_critic": cfg.n_critic,
                           "critic_step_s": round(critic_s, 5), "generator_step_s":
                           round(gen_s, 5), "critic_images_per_s": round(cfg.batch / critic_s),
                           "generator_images_per_s": round(cfg.batch / gen_s),
                           "critic_rounds": critic_runs.details(digits=5),
                           "generator_rounds": gen_runs.details(digits=5)}
                if xla:
                    flops = _step_flops(steps, real, tf.constant([0, 1], tf.int64))
                    it_flops = cfg.n_critic * flops["critic"] + cfg.g_steps * flops["generator"]
                    details.update(
                        critic_gflop=round(flops["critic"] / 1e9, 3),
                        generator_gflop=round(flops["generator"] / 1e9, 3),
                        achieved_gflops=round(it_flops / iteration / 1e9, 1),
                        fraction_of_matmul=round(it_flops / iteration / 1e9 / peak, 3))
                step_times[model_name, variant, xla] = critic_s
                print(f"   ... {model_name} {variant} xla={xla}: critic {critic_s:.4f} s, "
                      f"generator {gen_s:.4f} s", flush=True)
                mode = "xla" if xla else "noxla"
                figures.append(Figure(
                    id=f"train.{model_name}.{variant}.{mode}.iteration_s",
                    what=f"{model_name} {variant} {'XLA' if xla else 'no XLA'}: "
                         f"{cfg.n_critic} critic + {cfg.g_steps} generator steps",
                    value=round(iteration, 4), unit="s", command=cmd,
                    load=max(critic_runs.load, gen_runs.load),
                    target=f"<= {TARGET_ITERATION_S}" if (model_name, variant, xla) ==
                    (TARGET_MODEL, "wgan-gp", True) else "",
                    meets=iteration <= TARGET_ITERATION_S if (model_name, variant, xla) ==
                    (TARGET_MODEL, "wgan-gp", True) else None,
                    details=details))
    for model_name in spec["models"]:
        for xla in spec["xla"]:
            gp, plain = step_times.get((model_name, "wgan-gp", xla)), \
                step_times.get((model_name, "wgan", xla))
            if gp is None or plain is None or (model_name, xla) == (TARGET_MODEL, True):
                continue  # the target model's XLA ratio is measured paired (_gp_overhead)
            figures.append(Figure(
                id=f"train.{model_name}.{'xla' if xla else 'noxla'}.gp_overhead",
                what=f"{model_name} {'XLA' if xla else 'no XLA'}: wgan-gp critic step / "
                     "wgan critic step", value=round(gp / plain, 3), unit="×", command=cmd))
    return figures


if __name__ == "__main__":
    import sys

    for fig in run(sys.argv[1] if len(sys.argv) > 1 else "quick"):
        print(fig.id, fig.value, fig.unit, fig.meets, fig.load)
        if fig.details.get("critic_gflop"):
            print("   ", {k: v for k, v in fig.details.items() if "rounds" not in k})

