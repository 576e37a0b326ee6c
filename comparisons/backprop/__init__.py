"""Watch backprop: one step with every number (step), the computation graph (graph), one concept's
code side by side (code), finite differences (gradcheck) and the catalogue of classic bugs (bugs)."""
