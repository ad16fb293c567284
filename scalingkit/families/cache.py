"""Where the families keep what they build once (tokenised corpora, tokenizers, generators, the embedded corpus)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$SCALINGKIT_CACHE, else `.cache` in the source checkout (an editable install), else ~/.cache/scalingkit."""
    if os.environ.get("SCALINGKIT_CACHE"):
        return Path(os.environ["SCALINGKIT_CACHE"])
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "setup.cfg").exists():
        return checkout / ".cache"
    return Path.home() / ".cache" / "scalingkit"
