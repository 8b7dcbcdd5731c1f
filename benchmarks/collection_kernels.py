"""Does a collected dataset depend on the CPU's arithmetic kernels? The same SAC collection made under
PyTorch's CPU kernel variants (``ATEN_CPU_CAPABILITY``) and MKL's reproducible mode (``MKL_CBWR``),
each in a fresh process, compared by the episodes' SHA-256 (``EpisodeSet.fingerprint``).

    python benchmarks/collection_kernels.py Hopper-v5 --steps 3000 [--out results/collection_kernels.json]

A machine with another CPU picks other kernels on its own (AVX-512 here, AVX2 on many AMD EPYCs; MKL
takes other paths on non-Intel CPUs), so fingerprints that differ between variants here mean that a
dataset made again on another machine can differ too.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import the package as `python -m benchmarks.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, machine  # noqa: E402

VARIANTS = {
    "as found": {},
    "again, as found": {},
    "ATEN_CPU_CAPABILITY=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "ATEN_CPU_CAPABILITY=default": {"ATEN_CPU_CAPABILITY": "default"},
    **{f"MKL_CBWR={b}": {"MKL_CBWR": b} for b in ("COMPATIBLE", "SSE4_2", "AVX", "AVX2", "AVX512")},
}


def child(env_id: str, steps: int) -> None:
    """Collect into a temporary dataset (``MINARI_DATASETS_PATH`` is set by ``one``) and print the CPU
    capability PyTorch chose, the episodes, their mean return and the fingerprint."""
    import torch

    from diffplan.collect.collect import collect
    from diffplan.data.episodes import load_minari

    name = "check/collection-v0"
    collect(env_id=env_id, behavior="sac", policy="medium", steps=steps, seed=0, dataset_id=name, progress=False)
    eps = load_minari(name)
    print(torch.backends.cpu.get_cpu_capability(), len(eps.episodes), float(eps.returns().mean()), eps.fingerprint())


def one(env_id: str, steps: int, extra: dict[str, str]) -> dict[str, object]:
    """Collect in a fresh process (this script with ``--child``) with ``extra`` environment variables;
    its fingerprint and statistics."""
    with tempfile.TemporaryDirectory() as tmp:
        env = os.environ | {"MINARI_DATASETS_PATH": tmp, "OMP_NUM_THREADS": "1"} | extra
        cmd = [sys.executable, str(Path(__file__).resolve()), env_id, "--steps", str(steps), "--child"]
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout.split()
    capability, episodes, mean_return, digest = out[-4:]
    return {"capability": capability, "episodes": int(episodes), "mean_return": float(mean_return), "sha256": digest}


def main() -> None:
    from diffplan.io import update_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env_id")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--variants", nargs="*", choices=list(VARIANTS), help="default: all")
    parser.add_argument("--match", help="a fingerprint to look for (e.g. of a dataset made on another machine)")
    parser.add_argument("--out", default=str(ROOT / "results" / "collection_kernels.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.env_id, args.steps)
        return
    rows = {}
    for name in args.variants or VARIANTS:
        rows[name] = row = one(args.env_id, args.steps, VARIANTS[name])
        same = "" if args.match is None else ("  = match" if row["sha256"].startswith(args.match) else "  differs")
        print(f"{name:30s} {row['capability']:8s} {row['episodes']:4d} episodes  mean return "
              f"{row['mean_return']:9.2f}  {row['sha256'][:16]}{same}", flush=True)  # fmt: skip
    entry = {"variants": rows, "match": args.match, "machine": machine(), "date": date.today().isoformat()}
    update_json(Path(args.out), [args.env_id, str(args.steps)], entry, merge=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
