"""Training: the denoiser and value network on accelerate, with resumable checkpoints."""

from diffplan.training.trainer import Trainer, TrainResult, train

__all__ = ["TrainResult", "Trainer", "train"]
