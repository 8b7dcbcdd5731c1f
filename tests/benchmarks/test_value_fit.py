"""benchmarks/value_fit.py on the tiny run: R² by diffusion step and the standardized-target
experiment, merged into a results file that keeps other runs' entries."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_value_fit_reports_r2_by_step_and_keeps_other_entries(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location("value_fit", ROOT / "benchmarks" / "value_fit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "value_fit.json"
    out.write_text(json.dumps({"other-run": {"r2_by_t": {"0": 0.5}}}))
    argv = ["value_fit.py", "--run", str(tiny_run), "--windows", "64", "--steps-t", "0", "3",
            "--standardized-steps", "3", "--out", str(out)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    module.main()

    table = json.loads(out.read_text())
    assert table["other-run"] == {"r2_by_t": {"0": 0.5}}
    record = table[str(tiny_run)]
    assert set(record["r2_by_t"]) == {"0", "3"}
    assert all(r2 <= 1.0 for r2 in record["r2_by_t"].values())
    assert record["target_std"] > 0 and record["windows"] == 64
    assert set(record["standardized"]) == {"3"} and set(record["standardized"]["3"]) == {"0", "3"}
    # a fresh network of 3 steps explains less of the targets than the trained one at the clean step
    assert record["standardized"]["3"]["0"] < record["r2_by_t"]["0"]
