"""The store: the cube (cube.py): its schema, creation and growth under the coordinator's lock, a run's region
writes, status, and the reductions the fits read (best loss over learning rates and seeds, L(N, D) tables on the
exact or the sampled loss, each family's loss floor). Beside it: which coordinator trains which cell (claims.py),
the journal that makes growth and upgrades all-or-nothing (journal.py), and atomic file writes (atomic.py).

Below the statistics layer and above training: may import model and families and the shared modules; never
train, sweep, run, fit, optimal, plots or cli. Users' notebooks read the cube with xarray directly.
"""
from scalingkit.store.cube import (CURVE_VARS, LABEL_DTYPES, LOSSES, RUN_DIMS, RUN_FLOAT_VARS, RUN_STR_VARS,
                                   SCHEMA_VERSION, STATUS, STATUS_CODE, Cell, RunWriter, attrs, best_loss, create,
                                   family_entropy, family_floors, grow, lock, loss_kinds, loss_table, open_cube,
                                   open_group, package_versions, read_status, set_attrs, upgrade)

__all__ = ["CURVE_VARS", "LABEL_DTYPES", "LOSSES", "RUN_DIMS", "RUN_FLOAT_VARS", "RUN_STR_VARS", "SCHEMA_VERSION",
           "STATUS", "STATUS_CODE", "Cell", "RunWriter", "attrs", "best_loss", "create", "family_entropy",
           "family_floors", "grow", "lock", "loss_kinds", "loss_table", "open_cube", "open_group", "package_versions",
           "read_status", "set_attrs", "upgrade"]
