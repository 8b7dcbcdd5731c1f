"""The benchmark scripts: run as ``python -m benchmarks.NAME`` from the repository root, or as
``python benchmarks/NAME.py``; what they share is in :mod:`benchmarks.common`."""
