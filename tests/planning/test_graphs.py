"""The CUDA-graph path's plumbing (static buffers, cache per call shape), checked on the CPU.

On a CPU the graph cannot be recorded; ``engine.graph_mode = "emulate"`` runs the same static-buffer
path eagerly, so every input must reach the captured function through its buffer.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from diffplan.planning import ValueGuidedRLPipeline
from diffplan.planning.graphs import GraphedCall


@pytest.fixture()
def pipes(tiny_run: Path) -> tuple[ValueGuidedRLPipeline, ValueGuidedRLPipeline]:
    eager = ValueGuidedRLPipeline.from_pretrained(tiny_run)
    graphed = ValueGuidedRLPipeline.from_pretrained(tiny_run)
    graphed.engine.graph_mode = "emulate"
    return eager, graphed


def _obs(n: int, shift: float = 0.0) -> np.ndarray:
    base = np.zeros((n, 11))
    base[:, 0] = 1.25 + shift
    return base + 0.01 * np.random.default_rng(int(abs(shift) * 100)).normal(size=(n, 11))


@pytest.mark.parametrize(
    "kwargs", [dict(), dict(sampler="ddim", num_inference_steps=4), dict(goal_arrivals=3), dict(n_guide_steps=0)]
)
def test_replayed_calls_equal_eager_calls(pipes: tuple, kwargs: dict) -> None:
    eager, graphed = pipes
    goal = None
    if "goal_arrivals" in kwargs:
        goal = np.array([1.0, 0.1])
    for call, shift in enumerate((0.0, 0.3, -0.2)):  # new inputs each call: nothing stale in the buffers
        a = eager.plan(_obs(2, shift), goal=goal, batch_size=4, generator=torch.Generator().manual_seed(call), **kwargs)
        b = graphed.plan(
            _obs(2, shift), goal=goal, batch_size=4, generator=torch.Generator().manual_seed(call), **kwargs
        )
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.values, b.values)
    assert len(graphed.engine.graphs) == 1  # one call shape, one graph


def test_warm_starts_replay_their_own_graph(pipes: tuple) -> None:
    eager, graphed = pipes
    cold = eager.plan(_obs(3), batch_size=2, generator=torch.Generator().manual_seed(0))
    for pipe in pipes:
        pipe.plan(_obs(3), batch_size=2, generator=torch.Generator().manual_seed(0))
    init = cold.normalized[:, 0]
    a = eager.plan(
        _obs(3, 0.1), batch_size=2, init=init, warm_start_steps=3, generator=torch.Generator().manual_seed(1)
    )
    b = graphed.plan(
        _obs(3, 0.1), batch_size=2, init=init, warm_start_steps=3, generator=torch.Generator().manual_seed(1)
    )
    np.testing.assert_array_equal(a.actions, b.actions)
    assert len(graphed.engine.graphs) == 2  # cold and warm calls differ in shape and schedule


def test_calls_that_need_the_host_stay_eager(pipes: tuple) -> None:
    _, graphed = pipes
    seen: list[int] = []
    graphed.plan(_obs(1), batch_size=2, callback_on_step_end=lambda pipe, i, t, tensors: seen.append(t))
    graphed.plan(_obs(1), batch_size=2, sampler="dpmsolver++", num_inference_steps=3)
    graphed.plan(_obs(1), batch_size=2, cost=lambda obs: np.zeros(obs.shape[:2]))
    assert seen and not graphed.engine.graphs


def test_cuda_graphs_are_a_no_op_on_the_cpu(pipes: tuple) -> None:
    eager, _ = pipes
    eager.use_cuda_graphs()
    assert eager.plan(_obs(1), batch_size=2).actions.shape[:2] == (1, 2)
    assert not eager.engine.graphs and eager.graph_capture_seconds == 0.0
    eager.use_cuda_graphs(False)


def test_graphed_call_refuses_other_inputs() -> None:
    call = GraphedCall(lambda i: (i["a"] * 2,), {"a": torch.ones(3)}, capture=False)
    assert torch.equal(call({"a": torch.arange(3.0)})[0], torch.tensor([0.0, 2.0, 4.0]))
    with pytest.raises(ValueError, match=r"input 'a': expected shape \(3,\), got \(4,\)"):
        call({"a": torch.ones(4)})
    with pytest.raises(ValueError, match=r"expected inputs \['a'\], got \['b'\]"):
        call({"b": torch.ones(3)})
