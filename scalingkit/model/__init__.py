"""The model: the GPT and its two parameterisations (SP, muP), parameter and FLOP counts, the muP coordinate check.

Stage 2 of the flow (families -> model -> train -> store). Imports only the shared modules (config, errors,
progress, device) and torch; never the data families, the training loop, the store or the statistics layer.
"""
