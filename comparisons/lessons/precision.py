"""precision: how far each number format drifts from float64, and whether it is the framework or the format.

The same MLP on noisy moons trains from the same init, over several seeds, with SGD and momentum,
in float64, float32, pure bfloat16 and float16 (params, momentum and update in the format), and mixed
precision in each (float32 params and update, the forward and backward in the half format; float16
with dynamic loss scaling), on every installed backend. Measured per format: how far the trained
params end from the same backend's float64 run, how far the backends end from each other, the final
loss, and, at init, each layer's gradient gap to float64 in the format's own ε. (SGD, because Adam
cannot train in a pure half format: shared.precision.why_pure_half_cannot_train.) With --model gpt,
the same for a tiny transformer (8 tokens, 8 positions, d = 16, 2 heads, one block) on the strides
task, its gradient gaps per tensor group (the embeddings, the block, the final norm with the head).
"""

from __future__ import annotations

import itertools

import numpy as np

from backends import get_backend
from comparisons.core.options import add_seed_options, make_parser, seed_range, step_count
from comparisons.core.output import note, publish, pyplot
from comparisons.core.plots import band
from comparisons.core.problem import installed
from shared.data import make_dataset, strides
from shared.optim import SGD
from shared.params import init_params
from shared.precision import DynamicLossScale
from shared.spec import GPTSpec, MLPSpec
from shared.tolerances import gap_in_eps, relative_gap
from shared.validation import numpy_dtype, split_format

FORMATS = ("float64", "float32", "bfloat16", "float16", "bfloat16-mixed", "float16-mixed")
PURE_HALF = ("bfloat16", "float16")
COLORS = {
    "float64": "#333333",
    "float32": "#1f77b4",
    "bfloat16": "#ff9896",  # a pure format: the light shade of its mixed one
    "float16": "#98df8a",
    "bfloat16-mixed": "#d62728",
    "float16-mixed": "#2ca02c",
}
SPEC = MLPSpec((2, 16, 16, 1), "tanh", "bce")
GPT_SPEC = GPTSpec(8, 8, 16, 2, 1, activation="gelu")
OPTIMIZER = SGD(0.1, momentum=0.9)
BATCH, RECORD = 32, 10
GPT_BATCH, GPT_SEQUENCES = 8, 32
TASK = {"mlp": "noisy moons (2→16→16→1 tanh)", "gpt": "strides (a GPT: V=8, T=8, d=16, 2 heads, 1 block)"}
LOSS_NAME = {"mlp": "BCE", "gpt": "next-token cross-entropy"}
STEPS = {"mlp": 300, "gpt": 60}
"""Default steps. The GPT's 60: by 300 even its float64 runs end 9e-8 apart across backends (chaotic
training, every rounding grows), so its gaps there would measure the chaos, not the formats."""
CHAOS = 1e-10
"""float64 backends ending further apart than this: the training is chaotic, and the finding says so."""


def problem(model: str, seed: int):
    """(spec, X, y, params, batch size) of one seed: noisy moons for the MLP, strides for the GPT."""
    if model == "gpt":
        data = strides(GPT_SEQUENCES, GPT_SPEC.vocab_size, GPT_SPEC.seq_len, seed=seed)
        return GPT_SPEC, data.X, data.y, init_params(GPT_SPEC, seed=seed), GPT_BATCH
    data = make_dataset("moons", n=200, noise=0.2, seed=seed)
    return SPEC, data.X, data.targets(SPEC), init_params(SPEC, seed=seed), BATCH


def layer_groups(spec, grads) -> list[tuple[str, object]]:
    """The gradient, grouped as the figure's bars: each MLP layer's W; a GPT's embeddings, each block
    (every tensor in it), and its final layer norm with the head."""
    if isinstance(spec, GPTSpec):
        blocks = [(f"block {i}", g) for i, g in enumerate(grads["blocks"])]
        return [
            ("embeddings", [grads["tok_emb"], grads["pos_emb"]]),
            *blocks,
            ("ln_f + head", [grads["ln_f"], grads["head"]]),
        ]
    return [(f"layer {l} W", grads[l]["W"]) for l in range(spec.n_layers)]


def _backend(name: str, fmt: str):
    dtype, precision = split_format(fmt)
    return get_backend(name, dtype, precision=precision)


def one_seed(backends: list[str], steps: int, seed: int, model: str = "mlp") -> dict:
    """Every backend × format from one seed's data and init: losses, the gap to float64 over training,
    the final params, and each layer's gradient gap at init in the format's ε."""
    spec, X, y, params, batch = problem(model, seed)
    runs, grads = {}, {}
    for backend in backends:
        for fmt in FORMATS:
            scale = DynamicLossScale() if fmt == "float16-mixed" else None
            be = _backend(backend, fmt)
            traj = be.train(
                spec, params, X, y, OPTIMIZER, steps, batch_size=batch, seed=seed, record_every=RECORD, loss_scale=scale
            )
            runs[backend, fmt] = traj
            grads[backend, fmt] = be.loss_and_grads(spec, params, X, y)[1]
    out = {"curves": {}, "gaps": {}, "final_gap": {}, "final_loss": {}, "skipped": {}, "layer_eps": {}}
    for backend in backends:
        ref = runs[backend, "float64"]
        for fmt in FORMATS:
            traj, key = runs[backend, fmt], f"{backend}/{fmt}"
            out["curves"][key] = traj.losses.astype(np.float64)
            out["gaps"][key] = [relative_gap(traj.snapshot(s), ref.snapshot(s)) for s in ref.snapshot_steps] + [
                relative_gap(traj.params, ref.params)
            ]
            out["final_gap"][key] = relative_gap(traj.params, ref.params)
            out["final_loss"][key] = float(np.mean(traj.losses[-20:]))
            out["skipped"][key] = len((traj.meta.get("loss_scale") or {}).get("skipped", []))
            eps_dtype = split_format(fmt)[0]
            groups = zip(layer_groups(spec, grads[backend, fmt]), layer_groups(spec, grads[backend, "float64"]))
            out["layer_eps"][key] = [gap_in_eps(g, g64, eps_dtype) for (_, g), (_, g64) in groups]
    out["layer_names"] = [name for name, _ in layer_groups(spec, grads[backends[0], "float64"])]
    out["pair_gap"] = {
        f"{a}-{b}/{fmt}": relative_gap(runs[a, fmt].params, runs[b, fmt].params)
        for fmt in FORMATS
        for a, b in itertools.combinations(backends, 2)
    }
    out["snapshot_steps"] = [*runs[backends[0], "float64"].snapshot_steps.tolist(), steps]
    return out


def run(backends: list[str], steps: int, seeds: int, first_seed: int, model: str = "mlp") -> dict:
    per_seed = []
    for seed in range(first_seed, first_seed + seeds):
        note(f"seed {seed}: {len(backends)} backends × {len(FORMATS)} formats")
        per_seed.append(one_seed(backends, steps, seed, model))
    return {
        "backends": backends,
        "steps": steps,
        "seeds": seeds,
        "first_seed": first_seed,
        "model": model,
        "runs": per_seed,
    }


def summary(r: dict) -> dict:
    """Per format, over seeds and backends: the final gap to float64 (median, range), the largest gap
    between two backends, the final loss (median), the skipped steps, and the init's layer gaps in ε."""
    out = {}
    for fmt in FORMATS:
        keys = [f"{b}/{fmt}" for b in r["backends"]]
        gaps = [s["final_gap"][k] for s in r["runs"] for k in keys]
        pairs = [v for s in r["runs"] for k, v in s["pair_gap"].items() if k.endswith(f"/{fmt}")]
        out[fmt] = {
            "gap_median": float(np.median(gaps)),
            "gap_range": (float(min(gaps)), float(max(gaps))),
            "pair_max": float(max(pairs)) if pairs else 0.0,
            "pair_median": float(np.median(pairs)) if pairs else 0.0,
            "loss_median": float(np.median([s["final_loss"][k] for s in r["runs"] for k in keys])),
            "skipped_max": int(max(s["skipped"][k] for s in r["runs"] for k in keys)),
            "layer_eps_max": float(max(max(s["layer_eps"][k]) for s in r["runs"] for k in keys)),
        }
    return out


def finding(r: dict) -> str:
    s = summary(r)
    seeds = seed_range(r["first_seed"], r["seeds"])
    parts = [
        f"After {r['steps']} steps of {OPTIMIZER.describe()} on {TASK[r.get('model', 'mlp')]} "
        f"({seeds}, {', '.join(r['backends'])}), "
        "the params end"
    ]
    for fmt in FORMATS[1:]:
        f = s[fmt]
        parts.append(
            f"{fmt}: {f['gap_median']:.1e} from float64 (median; {f['gap_range'][0]:.1e}–{f['gap_range'][1]:.1e}), "
            + (f"backends at most {f['pair_max']:.1e} apart, " if len(r["backends"]) > 1 else "")
            + f"final loss {f['loss_median']:.4f}"
        )
    text = parts[0] + " — " + "; ".join(parts[1:]) + f" (float64's final loss {s['float64']['loss_median']:.4f})."
    ratios = {fmt: s[fmt]["pair_median"] / s[fmt]["gap_median"] for fmt in FORMATS[1:] if s[fmt]["gap_median"] > 0}
    same_order = [fmt for fmt, q in ratios.items() if q < 3]
    text += (
        " Two backends end "
        + ", ".join(f"{q:.1f}× ({fmt})" for fmt, q in ratios.items())
        + " as far from each other as each ends from its float64 run (medians): "
        + (
            "never more than a few times the drift each format causes alone, so the format, not the framework, sets it"
            if len(same_order) == len(ratios)
            else f"the same order only in {', '.join(same_order) or 'none'}; elsewhere the framework adds to it"
        )
        + "."
    )
    mixed = [s[f]["loss_median"] - s["float64"]["loss_median"] for f in ("bfloat16-mixed", "float16-mixed")]
    text += (
        f" Mixed precision trains to within {max(abs(m) for m in mixed):.1e} of float64's loss"
        f" though each run ends {s['bfloat16-mixed']['gap_median']:.0e} (bfloat16) and "
        f"{s['float16-mixed']['gap_median']:.0e} (float16) from its params;"
        + (
            f" float16's loss scale skipped at most {s['float16-mixed']['skipped_max']} step(s) per run."
            if s["float16-mixed"]["skipped_max"]
            else " float16's loss scale skipped no step."
        )
        + f" At init every layer's gradient is within {max(s[f]['layer_eps_max'] for f in FORMATS[1:]):.1f} ε"
        " of float64's in each format's own ε."
    )
    closes = {h: s[h]["gap_median"] / s[f"{h}-mixed"]["gap_median"] for h in PURE_HALF if s[f"{h}-mixed"]["gap_median"]}
    text += (
        " Mixed precision against the pure format (params and momentum rounded to it every step): "
        + ", ".join(
            f"{h} ends {s[h]['gap_median']:.1e} from float64 pure and {s[h + '-mixed']['gap_median']:.1e} mixed "
            f"({q:.1f}× {'closer' if q >= 1 else 'further'})"
            for h, q in closes.items()
        )
        + "; pure final losses "
        + ", ".join(f"{s[h]['loss_median']:.4f} ({h})" for h in PURE_HALF)
        + "."
    )
    text += _skipped_steps_sentence(r)
    if s["float64"]["pair_max"] > CHAOS:
        text += (
            f" But even in float64 the backends end {s['float64']['pair_max']:.1e} apart: the training is chaotic "
            "here, every rounding difference grows, and the gaps above measure that more than the formats (fewer "
            "steps show the formats alone)."
        )
    return text


def _skipped_steps_sentence(r: dict) -> str:
    """float16 mixed runs split by whether the loss scale skipped a step: their gaps to float64."""
    keys = [f"{b}/float16-mixed" for b in r["backends"]]
    runs = [(s["skipped"][k], s["final_gap"][k]) for s in r["runs"] for k in keys]
    skipped, kept = [g for n, g in runs if n], [g for n, g in runs if not n]
    if not skipped or not kept:
        return ""
    return (
        f" The float16 mixed runs whose loss scale skipped a step ({len(skipped)} of {len(runs)}) end "
        f"{min(skipped):.1e}–{max(skipped):.1e} from float64, those that skipped none {min(kept):.1e}–{max(kept):.1e}: "
        "a skipped step is an update float64 made and the mixed run did not, so the two part there."
    )


def plot(r: dict, title: str):
    plt = pyplot()
    fig, (ax_loss, ax_gap, ax_layers) = plt.subplots(1, 3, figsize=(18, 5.2), layout="constrained")
    for fmt in FORMATS:
        curves = np.array([s["curves"][f"{b}/{fmt}"] for s in r["runs"] for b in r["backends"]])  # (runs, steps)
        steps = np.arange(curves.shape[1])
        band(ax_loss, steps, np.median(curves, 0), curves.min(0), curves.max(0), COLORS[fmt], label=fmt, lw=1.5)
        if fmt != "float64":
            gaps = np.maximum(np.array([s["gaps"][f"{b}/{fmt}"] for s in r["runs"] for b in r["backends"]]), 1e-17)
            x = r["runs"][0]["snapshot_steps"]
            band(ax_gap, x, np.median(gaps, 0), gaps.min(0), gaps.max(0), COLORS[fmt], label=fmt)
    ax_loss.set(xlabel="training step", ylabel=f"minibatch {LOSS_NAME[r.get('model', 'mlp')]} loss")
    ax_loss.set_title("Loss (median, band min–max over seeds × backends): the formats overlap")
    ax_loss.legend()
    ax_gap.set_yscale("log")
    ax_gap.set(xlabel="training step", ylabel="max|θ − θ_float64| / max|θ_float64|")
    ax_gap.set_title("Distance from the same backend's float64 run")
    ax_gap.legend(loc="lower right")
    width, names = 0.8 / (len(FORMATS) - 1), r["runs"][0]["layer_names"]
    for k, fmt in enumerate(FORMATS[1:]):
        values = np.array([[s["layer_eps"][f"{b}/{fmt}"] for s in r["runs"] for b in r["backends"]]])[0]  # (runs, L)
        x = np.arange(len(names)) + (k - (len(FORMATS) - 2) / 2) * width
        ax_layers.bar(x, values.max(0), width, color=COLORS[fmt], alpha=0.35)
        ax_layers.bar(x, np.median(values, 0), width, color=COLORS[fmt], label=f"{fmt}: median, light: max")
    ax_layers.set_xticks(range(len(names)), names)
    ax_layers.set(ylabel="gradient gap to float64, in the format's ε", title="At init: one backward, per layer")
    ax_layers.legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("precision", __doc__.split("\n\n")[1], None)
    parser.add_argument(
        "--steps", type=step_count, default=None, help=f"{OPTIMIZER.describe()} steps (default: 300; the GPT: 60)"
    )
    parser.add_argument(
        "--model",
        choices=["mlp", "gpt"],
        default="mlp",
        help="mlp: 2→16→16→1 tanh on noisy moons, batch 32 (default); gpt: the tiny GPT (V=8, T=8, d=16, 2 "
        "heads, 1 block, GELU) on 32 strides sequences, batch 8",
    )
    add_seed_options(parser, 3, "seeds (each sets the data, the init and the batches)")
    args = parser.parse_args(argv)
    for fmt in FORMATS:
        numpy_dtype(split_format(fmt)[0])  # bfloat16 needs ml_dtypes: say so before any work
    backends = installed(args.backends)
    args.steps = args.steps or STEPS[args.model]
    r = run(backends, args.steps, args.seeds, args.first_seed, args.model)
    text = finding(r)
    title = f"Number formats on {TASK[args.model]}, {OPTIMIZER.describe()}: {seed_range(args.first_seed, args.seeds)}"
    numbers = {"summary": summary(r), "backends": backends, "steps": args.steps, "formats": list(FORMATS)}
    numbers |= {"model": args.model, "runs": [{k: v for k, v in s.items() if k != "curves"} for s in r["runs"]]}
    publish(args.out, "precision" if args.model == "mlp" else "precision-gpt", plot(r, title), numbers, text)
    return 0
