"""The cube's schema: its dimensions, variables, run statuses and the version, and Cell, one run's labels. Shared by
every module of the store (cube.py re-exports them), so that none of them needs another to know the layout."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCHEMA_VERSION = 4
RUN_DIMS = ("family", "param", "N", "D", "lr", "seed")
STATUS = ("missing", "done", "diverged", "failed")
STATUS_CODE = {name: code for code, name in enumerate(STATUS)}
# eval_loss is the sampled loss (the held-out sequences' own next tokens); excess_loss the mean KL from the family's
# true next-token law, exact_loss = loss floor + excess_loss (NaN where the law is unknown: natural text); *_se
# their standard errors over held-out sequences (exact_loss_se is also the excess's).
CURVE_VARS = ("step", "tokens", "train_loss", "eval_loss", "lr_now", "eval_loss_se", "excess_loss", "exact_loss",
              "exact_loss_se")
RUN_FLOAT_VARS = ("final_eval_loss", "final_train_loss", "tokens_trained", "flops_6nd", "flops_exact", "wall_seconds",
                  "final_eval_loss_se", "final_exact_loss", "final_exact_loss_se", "stack_variants")
# Schema 2 added the exact-law measurements, schema 3 how each run was trained (stack_variants: 0 alone, K in a stack
# of K variants by the batched engine, whose numbers differ from a lone run's in the last digits), schema 4 each
# finished run's checksum (integrity.py). A store of an older schema opens with them NaN (the checksum empty); the
# coordinator adds the (empty) arrays before it trains, and its runs are never retrained for them (their checksums
# are computed over what they hold: verify.seal).
ADDED_IN = {2: ("eval_loss_se", "excess_loss", "exact_loss", "exact_loss_se", "final_eval_loss_se",
                "final_exact_loss", "final_exact_loss_se"),
            3: ("stack_variants",),
            4: ("checksum",)}
RUN_STR_VARS = ("config_hash", "finished_at", "message")
CHECKSUM = "checksum"  # per run, string: written by the worker, last (integrity.py); not one of RUN_STR_VARS
LABEL_DTYPES = {"family": object, "param": object, "N": np.int64, "D": np.int64, "lr": np.float64, "seed": np.int64}


@dataclass(frozen=True, order=True)
class Cell:
    """One run's coordinates in the cube."""

    family: str
    param: str
    N: int
    D: int
    lr: float
    seed: int

    def labels(self) -> tuple:
        return (self.family, self.param, int(self.N), int(self.D), float(self.lr), int(self.seed))

    def __str__(self) -> str:
        return f"{self.family}/{self.param}/N={self.N}/D={self.D}/lr={self.lr:g}/seed={self.seed}"
