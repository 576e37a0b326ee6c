"""Comparison commands: `python -m comparisons <name> [options]`. Each writes figures and the numbers
behind them to --out (default out/) and prints a one-paragraph finding. Run without a name to list
them."""

COMMANDS = {
    # name: (module, one line for the listing)
    "tour": ("comparisons.tour", "the `make demo` tour: XOR on every backend, parity, divergence and boundaries"),
    "parity": ("comparisons.parity", "text table: every backend pair × forward, loss, grads, trained params"),
    "divergence": ("comparisons.divergence", "where float32/float64 training drifts apart: framework or precision?"),
    "gradients": ("comparisons.gradients", "per-layer heatmaps of the gradient gap for every backend pair"),
    "boundaries": ("comparisons.boundaries", "decision boundaries of each backend after training, side by side"),
    "weights": (
        "comparisons.weights",
        "every weight over training, backends overlaid; which converge, which oscillate",
    ),
    "hidden-layer": ("comparisons.hidden_layer", "lesson: XOR cannot be learned without a hidden layer"),
    "learning-rates": ("comparisons.learning_rates", "lesson: too small is slow, too large diverges"),
    "seeds": ("comparisons.seeds", "lesson: different seeds, different solutions (up to symmetry), some stuck"),
    "noise": ("comparisons.noise", "lesson: flipped training labels: wider nets memorize them and test accuracy drops"),
    "paths": ("comparisons.paths", "lesson: what each hidden unit adds to the XOR output, per input, over 20 seeds"),
    "attention": (
        "comparisons.attention",
        "lesson: a tiny GPT reverses digits; its attention is the anti-diagonal",
    ),
    "generate": (
        "comparisons.generate",
        "a character GPT on Genesis per backend, samples side by side",
    ),
    "code": ("comparisons.code", "one concept in NumPy, torch and JAX, side by side (or --html FILE)"),
    "bugs": ("comparisons.bugs", "ten classic backprop bugs, one at a time in NumPy: what parity and gradcheck show"),
    "gradcheck": (
        "comparisons.gradcheck",
        "gradients against central finite differences, per tensor (--bug: a broken one)",
    ),
    "step": ("comparisons.step", "one training step, layer by layer, every number, NumPy beside torch and JAX"),
    "graph": ("comparisons.graph", "the computation graph of one loss: NumPy's tape, torch's grad_fn, JAX's jaxpr"),
    "playground": (
        "comparisons.playground",
        "a local page that trains live on every backend: boundary, hidden units, losses, parity gap in ε",
    ),
}
