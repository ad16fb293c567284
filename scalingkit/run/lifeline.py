"""A worker process dies with the coordinator that started it: local pool workers (executors.py) and the worker
processes of a dask LocalCluster (dask.py). On Linux the worker asks the kernel for SIGKILL when its parent dies
(prctl(PR_SET_PDEATHSIG)); elsewhere a watchdog thread ends it when its parent pid changes."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1


def tie_to_parent(parent_pid: int) -> None:
    """Pool initializer: this worker dies when the coordinator `parent_pid` does."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent_pid:  # the parent died before the request took effect
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass  # no prctl: fall back on the watchdog
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="scalingkit-parent-watch", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.2)
    os._exit(1)
