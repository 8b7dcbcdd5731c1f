"""Diffusion: inpainting constraints, value guidance and the one guided sampling loop."""

from diffplan.diffusion.conditioning import Constraint, apply_constraints, start_state_constraint
from diffplan.diffusion.guidance import posterior_variances, value, value_and_grad
from diffplan.diffusion.sampling import Guidance, guided_sample

__all__ = [
    "Constraint",
    "Guidance",
    "apply_constraints",
    "guided_sample",
    "posterior_variances",
    "start_state_constraint",
    "value",
    "value_and_grad",
]
