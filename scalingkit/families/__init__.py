"""Data families: what a sweep trains on. A family is built from the TOML table of a sweep by `build_family`.

KINDS maps the table's "kind" to a builder(name, spec) -> Family that validates its own keys (UserError naming
the family and the key). Built families are cached per process: sweeps reuse one family for many runs.

The first stage of the flow: imports the shared modules, and model and train only where the TnL family
trains its generator GPT; never the store, sweeps, executors, fits or figures.
"""
from __future__ import annotations

import json
from functools import lru_cache

from scalingkit.errors import UserError
from scalingkit.families.bigram import build_bigram
from scalingkit.families.generated import build_generated
from scalingkit.families.graphs import build_ba, build_er
from scalingkit.families.markov import Family, MarkovChainFamily
from scalingkit.families.text import build_text

KINDS = {"er": build_er, "ba": build_ba, "bigram": build_bigram, "text": build_text,
         "generated": build_generated}

__all__ = ["KINDS", "Family", "MarkovChainFamily", "build_family"]


def build_family(name: str, spec: dict) -> Family:
    """The family described by `spec` (a sweep's TOML table, or a stored Family.spec()), cached per process."""
    if not isinstance(spec, dict):
        raise UserError(f"family {name!r}: expected a table of settings, got {type(spec).__name__}")
    if "kind" not in spec:
        raise UserError(f"family {name!r}: missing key 'kind' (known kinds: {', '.join(sorted(KINDS))})")
    if not isinstance(spec["kind"], str) or spec["kind"] not in KINDS:
        raise UserError(f"family {name!r}: unknown kind {spec['kind']!r} in key 'kind' "
                        f"(known kinds: {', '.join(sorted(KINDS))})")
    return _cached(name, json.dumps(spec, sort_keys=True, default=_plain))


def _plain(value):
    # numpy scalars become Python ones; anything else JSON cannot hold reaches the builder as text and is rejected
    return value.item() if hasattr(value, "item") else repr(value)


@lru_cache(maxsize=32)
def _cached(name: str, canonical: str) -> Family:
    spec = json.loads(canonical)
    return KINDS[spec["kind"]](name, spec)
