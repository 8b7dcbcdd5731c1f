from pathlib import Path

import numpy as np
import pytest

from diffplan.cli import main
from diffplan.planning import ValueGuidedRLPipeline
from diffplan.render import render_episode


def test_video_has_one_frame_per_step_and_is_not_blank(tiny_run: Path, tmp_path: Path) -> None:
    import imageio.v2 as imageio

    pipe = ValueGuidedRLPipeline.from_pretrained(tiny_run)
    res = render_episode(
        pipe=pipe,
        out_dir=tmp_path,
        seed=0,
        max_episode_steps=6,
        plan=pipe.plan_config.override(batch_size=2),
        width=96,
        height=64,
    )
    assert res.video.is_file() and res.plot.is_file()
    frames = [np.asarray(f) for f in imageio.mimread(res.video)]
    assert len(frames) == res.frames == res.steps + 1 and 2 <= res.frames <= 7
    assert frames[0].shape[:2] == (64, 96)
    assert all(f.std() > 5 for f in frames)  # a rendered scene, not a blank image
    assert not np.array_equal(frames[0], frames[-1])  # the hopper moved


def test_render_cli(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert (
        main(
            [
                "render",
                str(tiny_run),
                "--out",
                str(tmp_path / "r"),
                "--max-episode-steps",
                "3",
                "--plan.batch-size",
                "2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "video:" in out and (tmp_path / "r" / "plan_vs_executed.png").is_file()
