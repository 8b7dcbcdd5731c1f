"""One fixed-shape planning call captured as a CUDA graph and replayed.

A planning call of fixed shape (envs, plans, horizon, schedule, guidance, goal) launches hundreds
of small kernels: at one environment a GPU spends its time in Python and in kernel launches, not
in arithmetic. :class:`GraphedCall` records the call once into a CUDA graph over static input and
output buffers; each later call copies its inputs into those buffers and replays the graph.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from diffplan.cudnn import cudnn_settings

Outputs = Sequence[torch.Tensor]


class GraphedCall:
    """``fn(inputs) -> tensors``, captured once for the shapes of ``example`` and replayed.

    Args:
        fn: reads only the tensors of its ``dict`` argument and copies nothing to the host.
        example: inputs of the shapes, dtypes and devices of every later call.
        capture: record a CUDA graph (the inputs must be on a CUDA device); ``False`` runs ``fn``
            eagerly on the same static buffers (the plumbing, testable without a GPU).
        warmup: eager runs on a side stream before the capture (cuBLAS/cuDNN set-up, autograd).

    Attributes:
        capture_seconds: wall time of the warm-up runs and the capture.
    """

    def __init__(
        self,
        fn: Callable[[dict[str, torch.Tensor]], Outputs],
        example: dict[str, torch.Tensor],
        *,
        capture: bool = True,
        warmup: int = 2,
    ) -> None:
        started = time.perf_counter()
        self.fn = fn
        self.static = {k: v.detach().clone() for k, v in example.items()}
        self.graph: torch.cuda.CUDAGraph | None = None
        if capture:
            # the fastest deterministic convolutions of these fixed shapes, chosen once
            with cudnn_settings(deterministic=True, benchmark=True):
                stream = torch.cuda.Stream()
                stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(stream):
                    for _ in range(warmup):
                        fn(self.static)
                torch.cuda.current_stream().wait_stream(stream)
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph):
                    self.outputs = tuple(fn(self.static))
                torch.cuda.synchronize()
        self.capture_seconds = time.perf_counter() - started

    def __call__(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Copy ``inputs`` into the static buffers, replay, and return copies of the outputs.

        Raises:
            ValueError: an input's name or shape differs from the captured ones.
        """
        if inputs.keys() != self.static.keys():
            raise ValueError(f"expected inputs {sorted(self.static)}, got {sorted(inputs)}")
        for name, value in inputs.items():
            if value.shape != self.static[name].shape:
                raise ValueError(
                    f"input {name!r}: expected shape {tuple(self.static[name].shape)}, got {tuple(value.shape)}"
                )
            self.static[name].copy_(value)
        if self.graph is None:
            return tuple(t.clone() for t in self.fn(self.static))
        self.graph.replay()
        return tuple(t.clone() for t in self.outputs)
