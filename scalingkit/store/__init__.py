"""The store: the cube (cube.py): its schema, creation and growth under the coordinator's lock, a run's region
writes, status, and the reductions the fits read (best loss over learning rates and seeds, L(N, D) tables on the
exact or the sampled loss, each family's loss floor). Beside it: which coordinator trains which cell (claims.py),
the journal that makes growth and upgrades all-or-nothing (journal.py), atomic file writes (atomic.py), each finished
run's checksum, checked by every read (integrity.py, checked.py) and by `status --verify` (verify.py), reading runs
chunk by chunk (chunks.py), and the schema all of them share (schema.py).

Below the statistics layer and above training: may import model and families and the shared modules; never
train, sweep, run, fit, optimal, plots or cli. Users' notebooks read the cube with xarray directly.
"""
from scalingkit.store.cube import (CHECKSUM, CURVE_VARS, LABEL_DTYPES, LOSSES, RUN_DIMS, RUN_FLOAT_VARS, RUN_STR_VARS,
                                   SCHEMA_VERSION, STATUS, STATUS_CODE, TABLE_COLUMNS, Cell, RunWriter, attrs,
                                   best_loss, best_table, create, family_entropy, family_floors, grow, lock,
                                   loss_kinds, loss_table, open_cube, open_group, package_versions, read_status,
                                   set_attrs, upgrade)
from scalingkit.store.verify import upgrade_and_seal

__all__ = ["CHECKSUM", "CURVE_VARS", "LABEL_DTYPES", "LOSSES", "RUN_DIMS", "RUN_FLOAT_VARS", "RUN_STR_VARS",
           "SCHEMA_VERSION", "STATUS", "STATUS_CODE", "TABLE_COLUMNS", "Cell", "RunWriter", "attrs", "best_loss",
           "best_table", "create", "family_entropy", "family_floors", "grow", "lock", "loss_kinds", "loss_table",
           "open_cube", "open_group", "package_versions", "read_status", "set_attrs", "upgrade", "upgrade_and_seal"]
