"""Do the three backends agree, and where do they stop? Parity tables, the float32/float64 divergence
of whole trajectories, per-layer gradient gaps, decision boundaries, and the `make demo` tour."""
