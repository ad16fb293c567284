"""Keep BLAS single-threaded while fitting.

The fits solve thousands of tiny problems (5 parameters, a few hundred points). OpenBLAS's thread pool gains
nothing there and, on a busy machine, its spinning threads made each L-BFGS-B step ~100x slower (measured:
0.43 s against 0.005 s for one refit). Parallelism comes from worker processes instead (parallel.py).
threadpoolctl does this job but is not a dependency, so this is the small part of it we need: find the loaded
OpenBLAS libraries (numpy and scipy bundle one each) and call their set_num_threads through ctypes.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools


@functools.lru_cache(maxsize=None)
def _controls(paths: tuple) -> list:
    found = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for base in ("openblas", "scipy_openblas"):
            for tail in ("", "64_"):
                setter, getter = f"{base}_set_num_threads{tail}", f"{base}_get_num_threads{tail}"
                if hasattr(lib, setter) and hasattr(lib, getter):
                    found.append((getattr(lib, setter), getattr(lib, getter)))
    return found


def _loaded_openblas() -> tuple:
    try:
        with open("/proc/self/maps") as fh:
            return tuple(sorted({ln.split()[-1] for ln in fh if "openblas" in ln.lower() and "/" in ln}))
    except OSError:  # not Linux: leave BLAS alone
        return ()


@contextlib.contextmanager
def single_threaded_blas():
    controls = _controls(_loaded_openblas())
    before = [get() for _, get in controls]
    for set_, _ in controls:
        set_(1)
    try:
        yield
    finally:
        for (set_, _), n in zip(controls, before):
            set_(n)


def blas_single(fn):
    """Decorator: run `fn` with single-threaded BLAS."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with single_threaded_blas():
            return fn(*args, **kwargs)

    return wrapper
