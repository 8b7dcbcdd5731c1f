"""plots.py: figures written as PNG."""

from pathlib import Path

import numpy as np

from diffplan.planning import ValueGuidedRLPipeline


def test_denoising_strip_picture(maze_run: Path, tmp_path: Path) -> None:
    from diffplan.envs.specs import make_env
    from diffplan.plots import plot_denoising

    pipe = ValueGuidedRLPipeline.from_pretrained(maze_run)
    env = make_env("PointMaze_UMaze-v3")
    out = plot_denoising(
        pipe=pipe,
        obs=np.array([-1.0, -1.0, 0, 0]),
        goal=np.array([1.0, 1.0]),
        env=env,
        path=tmp_path / "strip.png",
        panels=4,
    )
    assert out.is_file() and out.stat().st_size > 5_000
