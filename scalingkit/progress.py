"""Whether progress bars are drawn: one switch for a command and every worker process it starts.

`train --no-progress` sets it; the bars of family builds (tokenising a corpus, training or sampling a generator)
read it (the sweep's own bar is told directly). An environment variable, so that worker processes inherit it.
"""
from __future__ import annotations

import os

ENV = "SCALINGKIT_NO_PROGRESS"


def enabled() -> bool:
    return os.environ.get(ENV, "") in ("", "0")


def disable() -> None:
    os.environ[ENV] = "1"


def resolve(progress: bool | None) -> bool:
    """An explicit True/False wins; None means the process-wide switch."""
    return enabled() if progress is None else bool(progress)
