"""Training: one run (engine.py) or a batch of learning-rate/seed variants of one shape (batched.py, with the
stacked model and optimiser) from a RunConfig to a loss curve; the memory model and timing probe that decide
whether batching pays.

Takes a family as a duck-typed object (sample, vocab_size), so it imports only `model` and the shared modules
(config, errors, progress, device); never families, the store, sweeps, executors, fits or figures.
"""
