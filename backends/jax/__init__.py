"""The JAX backend, jax.grad and jit. Read mlp.py, then gpt.py, optim.py and train.py; backend.py is the
engine (registered as 'jax' in backends/__init__.py)."""
