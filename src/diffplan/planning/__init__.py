"""Planning: the diffusers-compatible pipeline and run folders."""

from diffplan.planning.pipeline import Plan, ValueGuidedRLPipeline
from diffplan.planning.runs import RunInfo, list_runs, resolve_run

__all__ = ["Plan", "RunInfo", "ValueGuidedRLPipeline", "list_runs", "resolve_run"]
