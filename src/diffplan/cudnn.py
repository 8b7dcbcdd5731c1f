"""cuDNN settings for planning and training (no effect on the CPU).

Both run under ``deterministic=True``: the same seed gives the same plans and a resumed training
run the same weights on a GPU too (cuDNN's default convolution algorithms may sum in a different
order on every call). Captured planning graphs pick the fastest deterministic algorithm of their
fixed shapes once (``benchmark=True`` while capturing); training does not benchmark, so that a
resumed process chooses the same algorithms as the first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def cudnn_settings(*, deterministic: bool | None = None, benchmark: bool | None = None) -> Iterator[None]:
    """Set ``torch.backends.cudnn.deterministic`` / ``benchmark`` (``None``: unchanged) for the block."""
    cudnn = torch.backends.cudnn
    old = cudnn.deterministic, cudnn.benchmark
    if deterministic is not None:
        cudnn.deterministic = deterministic
    if benchmark is not None:
        cudnn.benchmark = benchmark
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = old
