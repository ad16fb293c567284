"""Running: `train --fill-missing` (runner.py, the coordinator), one cell or batch in a worker process
(worker.py), and the executors that host workers (executors.py).

The top of the training side: may import sweep, store, families, train and model, and the shared modules; never
fit, optimal, plots or cli.
"""
