"""Comparison commands: `python -m comparisons <name> [options]`. Each writes figures and the numbers
behind them to --out (default out/) and prints a one-paragraph finding. Run without a name to list
them, grouped by role, as the folders are:

    agreement/   do the three backends agree, and where do they stop?
    lessons/     the learning lab: one classic lesson per command, computed over seeds
    backprop/    watch backprop: one step, the graph, the code side by side, gradcheck, the bugs
    playground/  the live page
    core/        what every command shares (options, problem, output); no commands
"""

GROUPS = {
    # group: {name: (module, one line for the listing)}
    "agreement": {
        "tour": (
            "comparisons.agreement.tour",
            "the `make demo` tour: XOR on every backend, parity, divergence, boundaries",
        ),
        "parity": (
            "comparisons.agreement.parity",
            "text table: every backend pair × forward, loss, grads, trained params",
        ),
        "divergence": (
            "comparisons.agreement.divergence",
            "where float32/float64 training drifts apart: framework or precision?",
        ),
        "gradients": (
            "comparisons.agreement.gradients",
            "per-layer heatmaps of the gradient gap for every backend pair",
        ),
        "boundaries": (
            "comparisons.agreement.boundaries",
            "decision boundaries of each backend after training, side by side",
        ),
    },
    "lessons": {
        "hidden-layer": ("comparisons.lessons.hidden_layer", "XOR cannot be learned without a hidden layer"),
        "precision": (
            "comparisons.lessons.precision",
            "float32, bfloat16 and float16 mixed precision against float64: the format or the framework?",
        ),
        "data-parallel": (
            "comparisons.lessons.data_parallel",
            "N workers with B/N each follow one process with B; bytes per all-reduce against time per step",
        ),
        "learning-rates": ("comparisons.lessons.learning_rates", "too small is slow, too large diverges"),
        "seeds": ("comparisons.lessons.seeds", "different seeds, different solutions (up to symmetry), some stuck"),
        "noise": (
            "comparisons.lessons.noise",
            "flipped training labels: wider nets memorize them, test accuracy drops",
        ),
        "paths": (
            "comparisons.lessons.paths",
            "what each hidden unit adds to the XOR output, per input, over 20 seeds",
        ),
        "weights": (
            "comparisons.lessons.weights",
            "every weight over training, backends overlaid; which settle, which swing",
        ),
        "attention": (
            "comparisons.lessons.attention",
            "a tiny GPT reverses digits; its attention is the anti-diagonal",
        ),
        "generate": ("comparisons.lessons.generate", "a character GPT on Genesis per backend, samples side by side"),
    },
    "backprop": {
        "step": (
            "comparisons.backprop.step",
            "one training step, layer by layer, every number, NumPy beside torch, JAX",
        ),
        "graph": ("comparisons.backprop.graph", "the graph of one loss: NumPy's tape, torch's grad_fn, JAX's jaxpr"),
        "code": ("comparisons.backprop.code", "one concept in NumPy, torch and JAX, side by side (or --html FILE)"),
        "gradcheck": (
            "comparisons.backprop.gradcheck",
            "gradients against central finite differences (--bug: a broken one)",
        ),
        "bugs": (
            "comparisons.backprop.bugs",
            "ten classic backprop bugs, one at a time: what parity and gradcheck show",
        ),
    },
    "playground": {
        "playground": ("comparisons.playground.server", "a local page training live on every backend, parity gap in ε"),
    },
}

COMMANDS = {name: entry for group in GROUPS.values() for name, entry in group.items()}
"""Every command by name: (module, one line for the listing)."""
