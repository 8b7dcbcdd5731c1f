"""benchmarks/guidance_check.py on the tiny run: per guidance scale, the value predicted for the
best plan and what its actions do open loop."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_guidance_check_measures_each_scale(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("guidance_check", ROOT / "benchmarks" / "guidance_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "guidance_check.json"
    argv = ["guidance_check.py", "--run", str(tiny_run), "--scales", "0", "1", "--episodes", "3", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    module.main()

    record = json.loads(out.read_text())[str(tiny_run)]
    off, on = record["0.0"], record["1.0"]
    for row in (off, on):
        assert 0.0 <= row["falls"] <= 1.0 and row["first_state_error"] >= 0.0 and row["state_error"] >= 0.0
    assert on["predicted_value"] > off["predicted_value"]  # the gradient climbs the value network
    assert record["episodes"] == 3 and "warm_start_steps" not in record["settings"]
