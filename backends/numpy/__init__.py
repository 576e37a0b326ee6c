"""The NumPy backend, backprop by hand. Read mlp.py, then gpt.py, optim.py and train.py; backend.py is
the engine (registered as 'numpy' in backends/__init__.py)."""
