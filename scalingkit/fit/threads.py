"""Keep BLAS single-threaded while fitting (threadpoolctl).

The fits solve thousands of tiny problems (5 parameters, a few hundred points). OpenBLAS's thread pool gains
nothing there and, on a busy machine, its spinning threads made each L-BFGS-B step ~100x slower (measured:
0.43 s against 0.005 s for one refit). Parallelism comes from worker processes instead (parallel.py).
"""
from __future__ import annotations

import contextlib
import functools

from threadpoolctl import ThreadpoolController


@functools.lru_cache(maxsize=None)
def _controller() -> ThreadpoolController:
    # Finding the loaded BLAS libraries walks every shared object of the process (1.4 ms here, against 0.01 ms to
    # set a limit), so it is done once. By the first fit both OpenBLAS copies are loaded: numpy's with numpy, and
    # scipy's with scipy.optimize, which every fitting module imports at module level.
    return ThreadpoolController()


@contextlib.contextmanager
def single_threaded_blas():
    with _controller().limit(limits=1, user_api="blas"):
        yield


def blas_single(fn):
    """Decorator: run `fn` with single-threaded BLAS."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with single_threaded_blas():
            return fn(*args, **kwargs)

    return wrapper
