"""Run the benchmarks; write ``benchmarks/results.json`` and the tables in ``BENCHMARKS.md``.

    python -m benchmarks.run                 # every benchmark at its default size
    python -m benchmarks.run --only prepare  # one (or a comma-separated list)
    python -m benchmarks.run --quick         # smallest sizes (the smoke test)
    python -m benchmarks.run --full          # adds the embedded-default `dvc repro`

Each benchmark runs in its own subprocess (TensorFlow state such as op determinism,
which ``train_steps`` switches on like training does, cannot be undone); ``--quick``
runs them all in one process, ``train_steps`` last. Results are merged by figure id
into the JSON file, so re-running one benchmark keeps the others' figures, each with
the date and load it was measured under, and drops the figures of that benchmark it no
longer produces. Benchmarks are not tests: nothing here fails on a missed target; the
tables say which targets are met.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Order matters: input_pipeline compares with train_steps' figures, and in one process
# the benchmarks that train (op determinism) must come after the others.
MODULES = ["prepare", "evaluation", "inception", "dvc_pipeline", "train_steps", "layer_profile",
           "input_pipeline", "eval_overhead", "study_queue"]
SINGLE_PROCESS_ORDER = ["prepare", "evaluation", "inception", "dvc_pipeline", "study_queue",
                        "input_pipeline", "eval_overhead", "layer_profile", "train_steps"]
# They train as wgan.train does on CPU.
DETERMINISTIC = {"train_steps", "eval_overhead", "layer_profile"}
START, END = "<!-- results:start -->", "<!-- results:end -->"
SIZES = ("quick", "default", "full")  # each size produces every figure of the smaller ones


def _run_module(name: str, size: str, results: dict) -> list[dict]:
    module = importlib.import_module(f"benchmarks.{name}")
    if name in DETERMINISTIC:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()  # as wgan.train does on CPU
    kwargs = {"results": results} if name == "input_pipeline" else {}
    return [f.to_dict() for f in module.run(size, **kwargs)]


def _load(path: Path) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    return {"machine": {}, "figures": {}}


def merge(stored: dict[str, dict], module: str, size: str, emitted: list[dict],
          stamp: str, cpu: str = "") -> list[str]:
    """Store ``emitted`` by id, stamped with when and on which ``cpu`` they were measured
    (figures kept from earlier runs may come from another host), and drop ``module``'s
    figures that this run should have produced again but did not (a renamed or removed
    figure), so no stale figure stays in the tables. A default run keeps the figures only
    ``--full`` produces. Returns the dropped ids."""
    for fig in emitted:
        fig.update(measured_at=stamp, module=module, size=size, cpu=cpu)
    fresh = {fig["id"] for fig in emitted}
    covered = SIZES[: SIZES.index(size) + 1]
    dropped = [key for key, fig in stored.items() if fig.get("module") == module
               and fig.get("size") in covered and key not in fresh]  # untagged: kept
    for key in dropped:
        del stored[key]
    stored.update((fig["id"], fig) for fig in emitted)
    return dropped


def _child(name: str, size: str, results_path: Path, emit: Path) -> None:
    figures = _run_module(name, size, _load(results_path)["figures"])
    emit.write_text(json.dumps(figures))


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and value >= 100:
        value = round(value)
    text = f"{value:,}" if isinstance(value, int) else f"{value:g}"
    return f"{text} {unit}".strip()


def _load_cell(fig: dict) -> str:
    load = fig.get("load")
    if load is None:
        return "–"
    return f"{load:.2f}" + (" **under load**" if load >= 0.5 else "")


def _target(fig: dict) -> str:
    """The target with its unit after the number ("<= 0.45 s"; a ratio has none)."""
    unit = "" if fig["unit"] == "×" else f" {fig['unit']}"
    head, _, note = fig["target"].partition(" and ")
    return f"{head}{unit}" + (f" and {note}" if note else "")


def _measured(fig: dict) -> str:
    """When, and on which CPU when recorded: the tables mix runs, maybe of other hosts."""
    cpu = fig.get("cpu")
    return fig.get("measured_at", "") + (f" ({cpu})" if cpu else "")


def _meets(fig: dict) -> str:
    return {True: "yes", False: "**no**", None: ""}[fig.get("meets")]


def render(results: dict) -> str:
    """The generated part of BENCHMARKS.md: machine, targets, training and other tables."""
    m, figs = results["machine"], results["figures"]
    lines = [
        f"Machine: {m.get('cores')} cores, {m.get('cpu_model')} "
        f"({', '.join(m.get('cpu_flags', []))}), {m.get('memory_gib')} GiB, "
        f"{m.get('gpus', 0)} GPUs; Python {m.get('python')}, TensorFlow {m.get('tensorflow')}, "
        f"Keras {m.get('keras')}, NumPy {m.get('numpy')}. Last run {m.get('date')}, load "
        f"average at its start {m.get('loadavg_at_start')}.",
        "",
        "*Load* is the CPU that other processes used while the figure was measured (cores, "
        "from `/proc/stat` minus this process tree), the worst of its kept rounds; work "
        "under `nice` is not counted, as it only takes idle cycles; at 0.5 or "
        "more the figure is marked **under load** and is pessimistic. Rounds are "
        "quiet-gated: each starts when other processes are quiet, and one they disturbed "
        "is repeated while the waiting budget lasts. Each figure is a median after warm-up "
        "(`details` in `benchmarks/results.json` holds the individual rounds).",
        "",
        "### Targets",
        "",
        "| Figure | Value | Target | Met | Load | Measured | Command |",
        "|---|---|---|---|---|---|---|",
    ]
    for fig in figs.values():
        if fig.get("target"):
            lines.append(f"| {fig['what']} | {_fmt(fig['value'], fig['unit'])} | "
                         f"{_target(fig)} | "
                         f"{_meets(fig)} | {_load_cell(fig)} | {_measured(fig)} | "
                         f"`{fig['command']}` |")
    train = [f for f in figs.values() if f["id"].startswith("train.") and
             f["id"].endswith(".iteration_s")]
    if train:
        lines += [
            "", "### Training steps (batch 64, default model sizes)", "",
            "Images/s of critic steps and of generator steps; *iteration* = n_critic critic "
            "steps + 1 generator step (5 + 1 for the WGANs, 1 + 1 for gan). GFLOP per "
            "step from XLA's optimised HLO (convolutions and dots, see "
            "`benchmarks/hlo_flops.py`); *% matmul* is the iteration's achieved FLOP rate "
            "over the measured matmul rate "
            f"({_fmt(figs.get('machine.matmul_gflops', {}).get('value'), 'GFLOP/s')}).",
            "",
            "| Model | Variant | XLA | Critic img/s | Generator img/s | Iteration | "
            "GFLOP critic / gen step | GFLOP/s | % matmul | Load | Measured |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for fig in sorted(train, key=lambda f: (f["details"]["model"], f["details"]["variant"],
                                                not f["details"]["xla"])):
            d = fig["details"]
            gflop = (f"{d['critic_gflop']:g} / {d['generator_gflop']:g}"
                     if "critic_gflop" in d else "(same)")
            pct = f"{100 * d['fraction_of_matmul']:.0f}%" if "fraction_of_matmul" in d else ""
            lines.append(
                f"| {d['model']} | {d['variant']} | {'on' if d['xla'] else 'off'} | "
                f"{_fmt(d['critic_images_per_s'])} | {_fmt(d['generator_images_per_s'])} | "
                f"{_fmt(fig['value'], 's')} | {gflop} | {_fmt(d.get('achieved_gflops'))} | "
                f"{pct} | {_load_cell(fig)} | {_measured(fig)} |")
        commands = sorted({f["command"] for f in train})
        lines += ["", "Command: " + ", ".join(f"`{c}`" for c in commands) + "."]
    passes = [f for f in figs.values() if f["id"].startswith("layers.") and "pass" in
              f.get("details", {})]
    lines += _layer_table(passes, figs)
    rest = [f for f in figs.values() if not f.get("target") and f not in train
            and f not in passes]
    if rest:
        lines += ["", "### Other figures", "", "| Figure | Value | Load | Measured | Command |",
                  "|---|---|---|---|---|"]
        for fig in rest:
            lines.append(f"| {fig['what']} | {_fmt(fig['value'], fig['unit'])} | "
                         f"{_load_cell(fig)} | {_measured(fig)} | "
                         f"`{fig['command']}` |")
    return "\n".join(lines)


def _pct(fraction: float | None) -> str:
    return "–" if fraction is None else f"{100 * fraction:.0f}%"


def _layer_table(passes: list[dict], figs: dict) -> list[str]:
    """Where the default iteration's time goes: one row per layer pass (layer_profile)."""
    if not passes:
        return []
    first = passes[0]
    prefix = first["id"].split(".")[1]
    step, total, gap, bound = (figs.get(f"layers.{prefix}.{key}", {}) for key in
                               ("iteration_ms", "layers_sum_ms", "gap_ms", "gemm_bound_ms"))
    peak = figs.get(f"layers.{prefix}.matmul_gflops", {}).get("value")
    lines = [
        "", f"### Where the default iteration's time goes ({prefix}, layer by layer)", "",
        f"{first['what'].split(':')[0]}. Each pass of each layer timed alone under XLA "
        "(one pass per compiled call, an empty call's time subtracted); *runs* is how often "
        "one iteration runs it; *GEMM* is the same FLOPs as one matmul of the pass's im2col "
        f"shape (m×k×n). % of the matmul rate measured in the same run ({_fmt(peak, 'GFLOP/s')})."
        " `benchmarks/layer_profile.py` explains the counts.", "",
        "| Layer | Op | Pass | Runs | ms per run | ms per iteration | Share | GFLOP/s | "
        "% matmul | GEMM m×k×n | GEMM GFLOP/s | GEMM % matmul | Load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for fig in passes:
        d = fig["details"]
        lines.append(
            f"| {d['layer']} | {d['op']} | {d['pass']} | {d['runs_per_iteration']} | "
            f"{_fmt(d['ms_per_run'])} | {_fmt(fig['value'])} | "
            f"{_pct(d['share_of_iteration'])} | {_fmt(d['gflops'])} | "
            f"{_pct(d['fraction_of_matmul'])} | {d['gemm']} | {_fmt(d['gemm_gflops'])} | "
            f"{_pct(d['gemm_fraction_of_matmul'])} | {_load_cell(fig)} |")
    if step and total and gap:
        lines += ["", f"Sum of the passes {_fmt(total['value'], 'ms')} "
                  f"({_pct(total['details']['share_of_iteration'])} of the measured iteration, "
                  f"{_fmt(step['value'], 'ms')} at {_fmt(step['details']['gflops'])} GFLOP/s = "
                  f"{_pct(step['details']['fraction_of_matmul'])} of matmul); "
                  + (f"the gap, {_fmt(gap['value'], 'ms')}, is elementwise work, fusions, "
                     "the optimizer and launches." if gap["value"] >= 0 else
                     f"alone the passes take {_fmt(-gap['value'], 'ms')} more than the "
                     "whole iteration, in which XLA fuses them with their neighbours.")]
        if bound:
            lines[-1] += (" Were every pass as fast as its GEMM (the passes' share of the "
                          "iteration, at most all of it, sped up as their GEMMs), the "
                          f"iteration would take "
                          f"{_fmt(bound['value'], 'ms')} "
                          f"({_pct(bound['details']['fraction_of_matmul'])} of matmul).")
        lines[-1] += f" Measured {_measured(step)}, command `{step['command']}`."
    return lines


def write_markdown(path: Path, results: dict) -> None:
    text = path.read_text() if path.is_file() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        text += f"\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{render(results)}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smallest sizes (smoke test)")
    size.add_argument("--full", action="store_true", help="also the embedded-default repro")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(MODULES)}")
    parser.add_argument("--out", type=Path, default=BENCH / "results.json")
    parser.add_argument("--markdown", type=Path, default=BENCH.parent / "BENCHMARKS.md")
    parser.add_argument("--quiet-budget", type=float, default=None, metavar="SECONDS",
                        help="per benchmark: how long to wait for other processes to go "
                        "quiet and to repeat disturbed rounds (default 1800; 0 with --quick)")
    parser.add_argument("--quiet-limit", type=float, default=0.25, metavar="CORES",
                        help="other processes' load a timed round may see (default 0.25)")
    parser.add_argument("--child", nargs=2, metavar=("MODULE", "EMIT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = "quick" if args.quick else "full" if args.full else "default"
    budget = args.quiet_budget if args.quiet_budget is not None else 0 if args.quick else 1800
    os.environ["WGAN_BENCH_QUIET_BUDGET"] = str(budget)  # read by common.py (and children)
    os.environ["WGAN_BENCH_QUIET_LIMIT"] = str(args.quiet_limit)
    if args.child:
        _child(args.child[0], size, args.out, Path(args.child[1]))
        return

    from benchmarks.common import machine

    names = MODULES if not args.only else [m for m in MODULES if m in args.only.split(",")]
    unknown = set(args.only.split(",")) - set(MODULES) if args.only else set()
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {MODULES}")
    results = _load(args.out)
    results["machine"] = machine()
    if size == "quick":
        names = [m for m in SINGLE_PROCESS_ORDER if m in names]
    for name in names:
        print(f"== {name} ({size})", flush=True)
        t0 = time.perf_counter()
        if size == "quick":
            figures = _run_module(name, size, results["figures"])
        else:
            emit = args.out.with_name(f".{name}.emit.json")
            cmd = [sys.executable, "-m", "benchmarks.run", "--child", name, str(emit),
                   "--out", str(args.out), "--quiet-budget", str(budget),
                   "--quiet-limit", str(args.quiet_limit)]
            if args.full:
                cmd.append("--full")
            subprocess.run(cmd, check=True, cwd=BENCH.parent)
            figures = json.loads(emit.read_text())
            emit.unlink()
        for key in merge(results["figures"], name, size, figures,
                         time.strftime("%Y-%m-%d %H:%M"), results["machine"]["cpu_model"]):
            print(f"   {key}: no longer produced; dropped", flush=True)
        for fig in figures:
            print(f"   {fig['id']}: {fig['value']} {fig['unit']}"
                  f"{'' if fig['meets'] is None else ' meets' if fig['meets'] else ' MISSES'}"
                  f" {fig['target']} (load {fig['load']})", flush=True)
        print(f"   {time.perf_counter() - t0:.0f} s", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        write_markdown(args.markdown, results)


if __name__ == "__main__":
    main()
