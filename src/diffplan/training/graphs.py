"""One optimizer step (every micro-batch's forward and backward, Adam, the EMA) as one CUDA graph.

On a GPU the networks of diffplan are small enough that an eager training step is bound by
kernel launches, not arithmetic (measured on an H200: the `paper` preset spent 67 of 76 ms of a
batch-32 step launching forward and backward kernels). :class:`CapturedStep` records the whole
step once and replays it. Batches are still drawn outside the graph, on the device, from the
trainer's per-step seeded generator, and copied into the graph's input buffers, so the batches
(and a resumed run) are those of the eager loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from diffusers.training_utils import EMAModel

Batch = tuple[torch.Tensor, ...]


class CapturedStep:
    """A captured training step of ``model`` with ``accumulation`` micro-batches.

    Args:
        model: the network (on a CUDA device, not wrapped for several processes).
        optimizer: its Adam with ``capturable=True`` (its state, if any, is kept).
        ema: diffusers ``EMAModel`` of the network's parameters (counters advanced per step).
        batch_fn: ``batch_fn(step, micro)`` -> tensors on the device.
        loss_fn: ``loss_fn(model, batch)`` -> scalar loss.
        accumulation: micro-batches per optimizer step.
        step: the step whose batches shape the buffers (the first step to run).
        capture: record a CUDA graph; ``False`` runs the same step eagerly on the same buffers
            (the plumbing, testable without a GPU).

    Capturing runs two warm-up steps (autograd, cuDNN and Adam state set-up) and then restores
    the weights, the optimizer state and the EMA in place, so no training happens outside
    :meth:`__call__`.
    """

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        ema: EMAModel,
        batch_fn: Callable[[int, int], Batch],
        loss_fn: Callable[[torch.nn.Module, Batch], torch.Tensor],
        accumulation: int,
        step: int,
        capture: bool = True,
    ) -> None:
        self.model, self.optimizer, self.ema = model, optimizer, ema
        self.batch_fn, self.accumulation = batch_fn, accumulation
        self.params: list[torch.Tensor] = [p for p in model.parameters() if p.requires_grad]
        self.shadow = [s for s, p in zip(ema.shadow_params, model.parameters()) if p.requires_grad]
        device = self.params[0].device
        self.inputs: list[Batch] = [
            tuple(t.detach().clone() for t in batch_fn(step, micro)) for micro in range(accumulation)
        ]
        self.ema_weight = torch.zeros((), device=device)  # 1 - decay of this step

        def run() -> torch.Tensor:
            total = torch.zeros((), device=device)
            for micro in range(accumulation):
                loss = loss_fn(model, self.inputs[micro]) / accumulation
                loss.backward()
                total = total + loss.detach()
            optimizer.step()
            diff = torch._foreach_sub(self.params, self.shadow)
            torch._foreach_mul_(diff, self.ema_weight)
            torch._foreach_add_(self.shadow, diff)
            return total

        weights = [t.detach().clone() for t in self.params + self.shadow]
        adam = {
            p: {k: v.clone() for k, v in optimizer.state[p].items() if isinstance(v, torch.Tensor)}
            for p in self.params
            if optimizer.state.get(p)
        }
        stream = torch.cuda.Stream(device) if capture else None
        if stream is not None:
            stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            for _ in range(2):
                optimizer.zero_grad(set_to_none=True)
                run()
        if stream is not None:
            torch.cuda.current_stream(device).wait_stream(stream)
        with torch.no_grad():  # undo the warm-up in place (the graph keeps these addresses)
            for t, saved in zip(self.params + self.shadow, weights):
                t.copy_(saved)
            for p in self.params:
                for k, v in optimizer.state[p].items():
                    if isinstance(v, torch.Tensor) and p in adam:
                        v.copy_(adam[p][k])
                    elif isinstance(v, torch.Tensor):
                        v.zero_()  # state the warm-up created: as before any step
        optimizer.zero_grad(set_to_none=True)
        self.run, self.graph = run, None
        if capture:
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.loss = run()
            torch.cuda.synchronize(device)

    def __call__(self, step: int) -> torch.Tensor:
        """Run optimizer step ``step`` (its batches drawn by ``batch_fn``); returns the mean loss
        over the micro-batches (a device tensor: reading it synchronises)."""
        for micro in range(self.accumulation):
            for buffer, value in zip(self.inputs[micro], self.batch_fn(step, micro)):
                buffer.copy_(value)
        self.ema.optimization_step += 1
        decay = self.ema.get_decay(self.ema.optimization_step)
        self.ema.cur_decay_value = decay
        self.ema_weight.fill_(1.0 - decay)
        if self.graph is None:
            self.optimizer.zero_grad(set_to_none=True)
            return self.run()
        self.graph.replay()
        return self.loss
