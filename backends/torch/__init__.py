"""The PyTorch backend, autograd. Read mlp.py, then gpt.py, optim.py and train.py; backend.py is the
engine (registered as 'torch' in backends/__init__.py)."""
