"""Training of the denoiser, then the value network, the inverse dynamics and the Q-function, on
accelerate (CPU, one GPU or many); then, for a coarse-to-fine preset, the fine level into ``fine/``.

Every random draw of step ``k`` (batch indices, diffusion steps, noise) comes from a generator on
the training device seeded by ``(seed, phase, k, process)``, so a run resumed from a checkpoint
takes exactly the same batches as an uninterrupted one (on the same kind of device).

The hot path stays on the device: the windows and value targets live there as one tensor and
batches are drawn there; Adam is ``fused``, the EMA ``foreach``; the loss is
read back to the host only every ``log_every`` steps. Optionally the networks are
``torch.compile``d (``compile=True``) and run under bf16 autocast (``mixed_precision="bf16"``),
both through accelerate, and on one GPU each optimizer step is replayed as one CUDA graph
(``cuda_graphs=True``, :mod:`diffplan.training.graphs`). cuDNN runs deterministically without
benchmarking, so a resumed run ends with the same weights on a GPU too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from diffplan.config import STEP_COUNTS, Preset
from diffplan.cudnn import cudnn_settings
from diffplan.data.episodes import EpisodeSet, load_episodes
from diffplan.data.windows import WindowDataset
from diffplan.devices import resolve_device
from diffplan.diffusion.conditioning import Constraint, apply_constraints
from diffplan.envs.specs import check_dims, reference_scores
from diffplan.io import atomic_write_json, check_unlocked, read_json, recover_dir, writer_lock
from diffplan.models import (
    InverseDynamics,
    QFunction,
    StateValue,
    build_denoiser,
    build_scheduler,
    build_value_function,
    check_horizon,
)
from diffplan.planning.runs import FINE, RunInfo
from diffplan.training.checkpoint import PhaseState, load_phase, save_phase
from diffplan.training.graphs import CapturedStep

PROGRESS = "training/progress.json"
Batch = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class TrainResult:
    """Summary of a finished training run.

    Attributes:
        run_dir: the run folder.
        steps: optimizer steps per phase.
        final_loss: last logged loss per phase.
        steps_per_second: optimizer steps per second per phase (this invocation).
    """

    run_dir: Path
    steps: dict[str, int]
    final_loss: dict[str, float]
    steps_per_second: dict[str, float]


def _step_seed(seed: int, phase: int, step: int, process: int) -> int:
    return int(np.random.SeedSequence([seed, phase, step, process]).generate_state(1, dtype=np.uint64)[0])


MIXED_PRECISION = ("no", "bf16")


def check_dataset_env(episodes: EpisodeSet, env_id: str | None) -> None:
    """The dataset's dimensions must be the environment's.

    Raises:
        ValueError: they differ.
    """
    if env_id is not None:
        check_dims(env_id, obs_dim=episodes.obs_dim, act_dim=episodes.act_dim, what=f"dataset {episodes.dataset_id}")


class Trainer:
    """Trains a run folder's denoiser, value network, inverse dynamics and Q-function (those with
    steps), then the fine level of a coarse-to-fine preset (``preset.fine``) in ``out/fine``.

    Args:
        dataset: Minari dataset id or D4RL-style HDF5 path.
        out: run folder.
        preset: model and training settings.
        env_id: environment (default: the one recorded in the dataset).
        device: ``"cpu"`` forces the CPU; ``"cuda"`` asks for a GPU (a ValueError when there is
            none); ``None`` lets accelerate choose (a GPU when there is one, one per process under
            ``accelerate launch``).
        resume: continue from ``out/training`` instead of refusing an existing run.
        progress: show progress bars.
        compile: ``torch.compile`` the networks (inductor, through accelerate's dynamo plugin); the
            first steps pay the compilation. (``mode="reduce-overhead"`` is not offered: its CUDA
            graphs failed with gradient accumulation; ``cuda_graphs`` captures the compiled step.)
        mixed_precision: ``"no"`` or ``"bf16"`` (autocast of the forward passes; for GPUs with bf16).
        cuda_graphs: capture each optimizer step (forward and backward of every micro-batch, Adam,
            EMA) as one CUDA graph and replay it (one CUDA device, one process, no
            ``mixed_precision``; with ``compile`` the compiled kernels are captured); batches and
            resumes are those of the eager loop.
    """

    def __init__(
        self,
        *,
        dataset: str,
        out: str | Path,
        preset: Preset,
        env_id: str | None = None,
        device: str | None = None,
        resume: bool = False,
        progress: bool = True,
        compile: bool = False,
        mixed_precision: str = "no",
        cuda_graphs: bool = False,
    ) -> None:
        if mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"expected mixed_precision in {MIXED_PRECISION}, got {mixed_precision!r}")
        on_cpu = device is not None and resolve_device(device).type == "cpu"  # ValueError for a missing GPU
        if Path(out).exists() and not Path(out).is_dir():
            raise ValueError(f"--out {out} is a file; expected a run folder (new, or an existing run to resume)")
        if int(os.environ.get("RANK", "0")) == 0:  # the writing process; again under the lock in train()
            check_unlocked(out)  # a second writer is refused before the data are loaded
        if cuda_graphs and mixed_precision != "no":
            raise ValueError("cuda_graphs captures the float32 step: use it without mixed_precision")
        self.cuda_graphs, self.compile, self.mixed_precision = cuda_graphs, compile, mixed_precision
        self.out = Path(out)
        self.preset = preset
        self.progress = progress
        self.episodes = load_episodes(dataset, env_id=env_id)
        self.env_id = env_id or self.episodes.env_id
        check_dataset_env(self.episodes, self.env_id)
        train = preset.train
        check_horizon(config=preset.unet, horizon=train.horizon)
        if train.value_steps > 0:
            check_horizon(config=preset.value_net, horizon=train.horizon, value_network=True)
        self.data = WindowDataset(
            episodes=self.episodes,
            horizon=train.horizon,
            stride=train.stride,
            discount=preset.value_targets.discount,
            termination_penalty=preset.value_targets.termination_penalty,
            normalizer_kind=preset.normalizer,
        )
        progress_record = self._check_progress(dataset, resume)  # read-only: every process checks
        from accelerate import Accelerator

        # accelerate keeps one state per process, fixed by its first Accelerator: every trainer asks
        # for the same one (float32, no compilation) and applies its own precision and compilation
        # itself (phase_functions, _run_phase), so that trainers of other settings can follow each other
        try:
            self.accelerator = Accelerator(
                cpu=on_cpu,
                gradient_accumulation_steps=train.gradient_accumulation_steps,
                log_with="tensorboard" if _has_tensorboard() else None,
                project_dir=str(self.out / "logs"),
                mixed_precision="no",
                dynamo_backend="no",
            )
        except ValueError as err:  # accelerate's "already initialized" (a GPU trainer, then device="cpu")
            raise ValueError(
                f"this process already trains on {Accelerator().device}; accelerate keeps one device per process: "
                f"train on device={device!r} in a new process ({err})"
            ) from err
        self.scheduler = build_scheduler(
            num_train_timesteps=preset.diffusion.num_train_timesteps,
            beta_schedule=preset.diffusion.beta_schedule,
            prediction_type=preset.diffusion.prediction_type,
        )
        if cuda_graphs and (self.accelerator.device.type != "cuda" or self.accelerator.num_processes > 1):
            raise ValueError(
                f"cuda_graphs needs one process on a CUDA device; this run has "
                f"{self.accelerator.num_processes} on {self.accelerator.device}"
            )
        self._progress_record = progress_record
        self._resume = resume
        dev = self.accelerator.device
        self.data.to(dev)
        alphas = self.scheduler.alphas_cumprod.double()
        self._signal = alphas.sqrt().float().to(dev)  # [T] sqrt(alphas_cumprod): x_t = signal * x0 + level * noise
        self._level = (1 - alphas).sqrt().float().to(dev)
        self._weights = self._loss_weights().to(self.accelerator.device)
        self._generator = torch.Generator(device=dev)
        self._target: Any = None  # the state value phase's EMA (its TD target network)
        self._trainer_args: dict[str, Any] = dict(
            dataset=dataset, env_id=env_id, device=device, progress=progress, compile=compile,
            mixed_precision=mixed_precision, cuda_graphs=cuda_graphs,
        )  # fmt: skip

    @property
    def planned_act(self) -> int:
        """Action channels of the diffused windows: ``act_dim``, or 0 when diffusing states only."""
        return 0 if self.preset.diffusion.states_only else self.data.act_dim

    @property
    def channels(self) -> int:
        """Channels of the diffused windows (what the denoiser and value network take)."""
        return self.planned_act + self.data.obs_dim

    def _windows(self, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of windows ``[B, H, channels]`` (actions dropped when diffusing states only) and
        their value targets ``[B]``."""
        x0, values = self.data.sample(self.preset.train.batch_size, generator=g)
        return x0[..., self.data.act_dim - self.planned_act :], values

    def _check_progress(self, dataset: str, resume: bool) -> dict:
        """Refuse to overwrite another run or to resume with other settings; returns the progress record."""
        path = self.out / PROGRESS
        record: dict[str, Any] = {"dataset": dataset, "env_id": self.env_id, "preset": self.preset.to_dict()}
        if path.exists():
            if not resume:
                raise ValueError(
                    f"{self.out} already holds a training run; pass --resume to continue it or "
                    "choose another --out (nothing was overwritten)"
                )
            old = read_json(path)
            if old["dataset"] != dataset or _without_step_counts(old["preset"]) != _without_step_counts(
                record["preset"]
            ):
                raise ValueError(
                    f"{self.out} was trained on {old['dataset']} with preset {old['preset']['name']} "
                    "and other settings; resume with the same dataset and preset"
                )
        elif self.out.exists() and any(p.name != "logs" and not p.name.startswith(".") for p in self.out.iterdir()):
            raise ValueError(f"{self.out} exists and is not a diffplan run; choose an empty or new --out")
        return record

    # ------------------------------------------------------------------ losses
    def _step_generator(self, phase: int, step: int, micro: int) -> torch.Generator:
        """The generator of one micro-batch, on the data's device, re-seeded from ``(seed, phase, step, process)``."""
        seed = _step_seed(self.preset.train.seed, phase, step * 1000 + micro, self.accelerator.process_index)
        return self._generator.manual_seed(seed)

    def _noised(self, x0: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Noised windows ``x_t`` with the clean start state inpainted, their steps ``t`` and the noise."""
        batch = x0.shape[0]
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (batch,), generator=g, device=x0.device)
        noise = torch.randn(x0.shape, generator=g, device=x0.device)
        xt = self._signal[t][:, None, None] * x0 + self._level[t][:, None, None] * noise
        cond = [Constraint(index=0, start=self.planned_act, values=x0[:, 0, self.planned_act :])]
        return apply_constraints(xt, cond), t, noise

    def _denoiser_batch(self, g: torch.Generator) -> Batch:
        """Noised windows ``[B, D, H]`` (channels first), their steps ``[B]`` and targets ``[B, H, D]``,
        and with ``DiffusionConfig.value_weight`` the windows' loss weights ``[B]``."""
        x0, values = self._windows(g)
        xt, t, noise = self._noised(x0, g)
        target = x0 if self.preset.diffusion.prediction_type == "sample" else noise
        factor = self.preset.diffusion.value_weight
        if factor > 0:
            return xt.permute(0, 2, 1), t, target, self.data.value_weights(values, factor=factor)
        return xt.permute(0, 2, 1), t, target

    def _denoiser_loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        xt, t, target = batch[:3]
        error = self._weights * (model(xt, t).sample.permute(0, 2, 1).float() - target) ** 2
        if len(batch) == 4:  # value-weighted regression: one weight per window
            return (error.mean(dim=(1, 2)) * batch[3]).mean()
        return error.mean()

    def _value_batch(self, g: torch.Generator) -> Batch:
        """Noised windows ``[B, D, H]``, their steps ``[B]`` and value targets ``[B]``."""
        x0, values = self._windows(g)
        xt, t, _ = self._noised(x0, g)
        return xt.permute(0, 2, 1), t, values

    def _value_loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        xt, t, values = batch
        return ((model(xt, t).sample.squeeze(-1).float() - values) ** 2).mean()

    def _inverse_batch(self, g: torch.Generator) -> Batch:
        """``(state, target, lookahead, action)`` of :meth:`WindowDataset.transitions`."""
        return self.data.transitions(self.preset.train.batch_size, generator=g)

    def _inverse_loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        state, target, lookahead, action = batch
        return ((model(state, target, lookahead).float() - action) ** 2).mean()

    def _critic_batch(self, g: torch.Generator) -> Batch:
        """``(state [B, S], action [B, A], discounted return [B])`` of random steps, normalized."""
        x0, values = self.data.sample(self.preset.train.batch_size, generator=g)
        act = self.data.act_dim
        return x0[:, 0, act:], x0[:, 0, :act], values

    def _critic_loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        state, action, values = batch
        return ((model(state, action).float() - values) ** 2).mean()

    def _state_value_batch(self, g: torch.Generator) -> Batch:
        """``(state [B, S], reward [B], next_state [B, S], terminal [B])`` of random steps (see
        :meth:`WindowDataset.td_transitions`)."""
        return self.data.td_transitions(self.preset.train.batch_size, generator=g)

    def _state_value_loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """Expectile TD loss of ``V(s)`` against ``r / scale + gamma * V'(s')``, ``V'`` the phase's EMA
        (the target network): the squared error weighted ``2 * |expectile - 1(u < 0)|``, so that expectile
        0.5 is the plain squared TD error."""
        state, reward, nxt, terminal = batch
        values = self.preset.value_targets
        assert self._target is not None, "the state value's target network is set by _run_phase"
        with torch.no_grad():
            names = [name for name, _ in model.named_parameters()]
            target_params = dict(zip(names, self._target.shadow_params))
            v_next = torch.func.functional_call(model, target_params, (nxt,)).float()
            target = reward / self.data.value_scale + values.discount * (~terminal) * v_next
        u = target - model(state).float()
        weight = torch.where(u > 0, values.expectile, 1 - values.expectile)
        return (2 * weight * u**2).mean()

    def phase_functions(
        self, phase: str
    ) -> tuple[Callable[[int, int], Batch], Callable[[torch.nn.Module, Batch], torch.Tensor]]:
        """``(batch(step, micro), loss(model, batch))`` of a phase: the batch drawn by the generator of
        ``(seed, phase, step, micro, process)`` and moved to the training device, the loss under bf16
        autocast with ``mixed_precision="bf16"``."""
        spec = PHASE[phase]
        index, dev = PHASES.index(spec), self.accelerator.device

        def batch(step: int, micro: int) -> Batch:
            drawn = spec.batch(self, self._step_generator(index, step, micro))
            return drawn if self.data.device == dev else tuple(t.to(dev) for t in drawn)

        def loss(model: torch.nn.Module, drawn: Batch) -> torch.Tensor:
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.mixed_precision == "bf16"):
                return spec.loss(self, model, drawn)

        return batch, loss

    def _loss_weights(self) -> torch.Tensor:
        """``[H, D]`` loss weights: first action weighted, inpainted start state excluded."""
        w = torch.ones(self.preset.train.horizon, self.channels)
        w[0, : self.planned_act] = self.preset.diffusion.action_weight
        w[0, self.planned_act :] = 0.0  # known exactly: inpainted at sampling time
        return w

    # ------------------------------------------------------------------ phases
    def _build(self, phase: str) -> torch.nn.Module:
        spec = PHASE[phase]
        torch.manual_seed(self.preset.train.seed + PHASES.index(spec))
        return spec.build(self)

    def _build_denoiser(self) -> torch.nn.Module:
        return build_denoiser(config=self.preset.unet, transition_dim=self.channels)

    def _build_value_function(self) -> torch.nn.Module:
        return build_value_function(config=self.preset.value_net, transition_dim=self.channels)

    def _build_inverse_dynamics(self) -> torch.nn.Module:
        return InverseDynamics(
            obs_dim=self.data.obs_dim, act_dim=self.data.act_dim, max_lookahead=self.preset.train.stride
        )

    def _build_critic(self) -> torch.nn.Module:
        return QFunction(obs_dim=self.data.obs_dim, act_dim=self.data.act_dim)

    def _build_state_value(self) -> torch.nn.Module:
        return StateValue(obs_dim=self.data.obs_dim, value_scale=self.data.value_scale)

    def _total_steps(self, phase: str) -> int:
        return getattr(self.preset.train, PHASE[phase].steps)

    @cudnn_settings(deterministic=True, benchmark=False)  # a resumed run picks the same algorithms
    def phase_objects(self, phase: str) -> tuple[torch.nn.Module, torch.optim.Optimizer, Any, PhaseState]:
        """A phase's network, Adam, EMA (diffusers ``EMAModel``) and progress, restored from its last
        checkpoint when there is one (what a kill during a checkpoint write left behind is cleared first)."""
        from diffusers.training_utils import EMAModel

        train = self.preset.train
        model = self._build(phase).to(self.accelerator.device)
        optimizer = torch.optim.Adam(
            model.parameters(), lr=train.learning_rate, fused=True, foreach=False, capturable=self.cuda_graphs
        )
        if PHASE[phase].target_network:  # the EMA is the TD target network, averaging from the first step
            decay, after = self.preset.value_targets.target_decay, 0
        else:
            decay, after = train.ema_decay, train.ema_start
        ema = EMAModel(model.parameters(), decay=decay, update_after_step=after, foreach=True)
        folder = self.phase_folder(phase)
        if self.accelerator.is_main_process:  # what a kill during a checkpoint write left behind
            recover_dir(folder)
            for stale in folder.parent.glob(f".{phase}-*"):
                shutil.rmtree(stale, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        state = PhaseState()
        if (folder / "state.json").exists():
            state = load_phase(folder=folder, model=model, ema=ema, optimizer=optimizer)
        ema.to(self.accelerator.device)
        return model, optimizer, ema, state

    def phase_folder(self, phase: str) -> Path:
        """``training/<phase>``: the phase's checkpoint."""
        return self.out / "training" / phase

    def phases(self) -> list[str]:
        """The phases this run trains, in order: the denoiser, then those with steps."""
        return [p.name for p in PHASES if p.always or self._total_steps(p.name) > 0]

    def _run_phase(self, phase: str) -> tuple[torch.nn.Module, PhaseState, float]:
        from tqdm.auto import tqdm

        train = self.preset.train
        total = self._total_steps(phase)
        model, optimizer, ema, state = self.phase_objects(phase)
        self._target = ema if PHASE[phase].target_network else None
        folder = self.phase_folder(phase)
        model, optimizer = self.accelerator.prepare(model, optimizer)
        raw = self.accelerator.unwrap_model(model)  # what checkpoints store
        if self.compile:  # inductor, as accelerate's dynamo plugin would (the parameters stay shared)
            model = cast("torch.nn.Module", torch.compile(model, backend="inductor"))
        batch_fn, loss_fn = self.phase_functions(phase)
        acc = self.accelerator
        bar = tqdm(
            total=total,
            initial=state.step,
            desc=f"train {phase}",
            unit="step",
            disable=not (self.progress and acc.is_main_process),
        )
        start_step, started = state.step, time.perf_counter()
        seconds_before = state.seconds
        params = list(raw.parameters())
        captured = None
        if self.cuda_graphs and state.step < total:
            for group in optimizer.optimizer.param_groups:
                group["capturable"] = True  # also after a resume from an eager checkpoint
            captured = CapturedStep(
                model=model,
                optimizer=optimizer.optimizer,
                ema=ema,
                batch_fn=batch_fn,
                loss_fn=loss_fn,
                step=state.step,
                accumulation=train.gradient_accumulation_steps,
            )
        try:
            while state.step < total:
                if captured is not None:
                    loss = captured(state.step)
                else:
                    for micro in range(train.gradient_accumulation_steps):
                        with acc.accumulate(model):
                            loss = loss_fn(model, batch_fn(state.step, micro))
                            acc.backward(loss)
                            optimizer.step()
                            optimizer.zero_grad()
                    ema.step(params)
                state.step += 1
                state.seconds = seconds_before + time.perf_counter() - started
                log = state.step % train.log_every == 0 or state.step == total
                if log:
                    loss_value = float(loss.detach())  # the one host synchronisation of the loop
                    bar.set_postfix(loss=f"{loss_value:.4f}")
                    state.losses.append([state.step, loss_value])
                    acc.log({f"{phase}/loss": loss_value}, step=state.step)
                if acc.is_main_process and (state.step % train.checkpoint_every == 0 or state.step == total):
                    save_phase(folder=folder, model=raw, ema=ema, optimizer=optimizer, state=state)
                bar.update(1)
        except KeyboardInterrupt:
            if acc.is_main_process:
                save_phase(folder=folder, model=raw, ema=ema, optimizer=optimizer, state=state)
                print(f"\ninterrupted: checkpoint at step {state.step} saved in {folder}; continue with --resume")
            raise
        finally:
            bar.close()
        rate = (state.step - start_step) / max(time.perf_counter() - started, 1e-9)
        final = self._build(phase)
        ema.copy_to(final.parameters())
        return final, state, rate

    def train(self) -> TrainResult:
        """Train the phases (skipping finished ones and those without steps) and write the run folder,
        holding the folder's writer lock (:func:`diffplan.io.writer_lock`) throughout.

        Returns:
            A summary with steps, final losses and steps per second.

        Raises:
            FolderLockedError: another process is writing the run folder.
            DiskFullError: a checkpoint or the run folder could not be written for lack of space
                (the last checkpoint is intact; ``--resume`` continues from it).
        """
        lock = writer_lock(self.out) if self.accelerator.is_main_process else contextlib.nullcontext()
        with lock:
            self.begin()
            models: dict[str, torch.nn.Module | None] = dict.fromkeys(p.name for p in PHASES if not p.always)
            states, rates = {}, {}
            for phase in self.phases():
                models[phase], states[phase], rates[phase] = self._run_phase(phase)
            return self.finish(models, states, rates)

    def begin(self) -> None:
        """The run's first write (its progress record), once every check has passed in every process,
        and again checked (the caller holds the writer lock: another writer may have started this run
        since the constructor looked)."""
        if self.accelerator.is_main_process:
            self._check_progress(self._progress_record["dataset"], self._resume)
            atomic_write_json(self.out / PROGRESS, self._progress_record)
            for stale in self.out.glob(".save-*"):  # a final write killed half-way (the run folder is intact)
                shutil.rmtree(stale, ignore_errors=True)
            self.accelerator.init_trackers("diffplan")
        self.accelerator.wait_for_everyone()

    def finish(
        self, models: dict[str, torch.nn.Module | None], states: dict[str, PhaseState], rates: dict[str, float]
    ) -> TrainResult:
        """Write the run folder of the trained phases, train the fine level (if any), and summarize."""
        if self.accelerator.is_main_process:
            self._write_run(models, states)
        if self.preset.fine is None:
            self.accelerator.end_training()  # (which also ends the process group of several processes)
        else:  # the fine level of a coarse-to-fine planner, a run of its own, in the same process group
            for tracker in self.accelerator.trackers:
                tracker.finish()
            self.accelerator.wait_for_everyone()
            fine = Trainer(out=self.out / FINE, preset=self.preset.fine, resume=True, **self._trainer_args).train()
        if not self.accelerator.is_main_process:
            return TrainResult(self.out, {}, {}, {})
        result = TrainResult(
            run_dir=self.out,
            steps={p: s.step for p, s in states.items()},
            final_loss={p: (s.losses[-1][1] if s.losses else float("nan")) for p, s in states.items()},
            steps_per_second=rates,
        )
        if self.preset.fine is not None:
            result.steps.update({f"fine/{p}": v for p, v in fine.steps.items()})
            result.final_loss.update({f"fine/{p}": v for p, v in fine.final_loss.items()})
            result.steps_per_second.update({f"fine/{p}": v for p, v in fine.steps_per_second.items()})
        return result

    def _write_run(self, models: dict[str, torch.nn.Module | None], states: dict[str, PhaseState]) -> None:
        """Write the run folder (networks, ``diffplan.json``, loss curves) of the trained phases."""
        from diffplan.planning.pipeline import ValueGuidedRLPipeline

        refs = reference_scores(self.env_id, ref_min=self.episodes.ref_min_score, ref_max=self.episodes.ref_max_score)
        info = RunInfo(
            normalizer=self.data.normalizer,
            plan=self.preset.plan,
            env_id=self.env_id,
            dataset_id=self.episodes.dataset_id,
            horizon=self.preset.train.horizon,
            stride=self.preset.train.stride,
            preset=self.preset.to_dict(),
            ref_min_score=refs.random if refs else None,
            ref_max_score=refs.expert if refs else None,
            extra={
                "train_steps": {p: s.step for p, s in states.items()},
                "final_loss": {p: s.losses[-1][1] if s.losses else None for p, s in states.items()},
                "train_seconds": {p: round(s.seconds, 3) for p, s in states.items()},
                "dataset_hash": self.episodes.fingerprint(),
            },
        )
        pipe = ValueGuidedRLPipeline(
            value_function=models["value_function"],
            unet=models["unet"],
            scheduler=self.scheduler,
            normalizer=self.data.normalizer,
            plan_config=self.preset.plan,
            info=info,
            inverse_dynamics=cast("InverseDynamics | None", models["inverse_dynamics"]),
            critic=cast("QFunction | None", models["critic"]),
            state_value=cast("StateValue | None", models["state_value"]),
        )
        pipe.save_pretrained(self.out)
        _plot_losses(self.out / "training" / "losses.png", states)


@dataclass(frozen=True)
class Phase:
    """One training phase: what it trains and from what.

    Attributes:
        name: the network's name (its pipeline component and ``training/<name>`` checkpoint).
        steps: the :class:`~diffplan.config.TrainConfig` field of its step count.
        build: the trainer's fresh network of the phase.
        batch: a batch drawn with the given generator (see :meth:`Trainer.phase_functions`).
        loss: the loss of a network on a batch.
        always: trained in every run (the denoiser); the others only with steps.
        target_network: the phase's EMA is its TD target network (``ValueConfig.target_decay`` from
            the first step), read by its loss.
        stackable: the loss reads only the network and the batch, so that the runs of a group can
            train it as one batched network (:mod:`diffplan.training.group`).
    """

    name: str
    steps: str
    build: Callable[[Trainer], torch.nn.Module]
    batch: Callable[[Trainer, torch.Generator], Batch]
    loss: Callable[[Trainer, torch.nn.Module, Batch], torch.Tensor]
    always: bool = False
    target_network: bool = False
    stackable: bool = True


# in training order; a phase's position seeds its network and its batches (do not reorder)
PHASES: tuple[Phase, ...] = (
    Phase("unet", "denoiser_steps", Trainer._build_denoiser, Trainer._denoiser_batch, Trainer._denoiser_loss,
          always=True),
    Phase("value_function", "value_steps", Trainer._build_value_function, Trainer._value_batch, Trainer._value_loss),
    Phase("inverse_dynamics", "inverse_steps", Trainer._build_inverse_dynamics, Trainer._inverse_batch,
          Trainer._inverse_loss),
    Phase("critic", "critic_steps", Trainer._build_critic, Trainer._critic_batch, Trainer._critic_loss),
    Phase("state_value", "state_value_steps", Trainer._build_state_value, Trainer._state_value_batch,
          Trainer._state_value_loss, target_network=True, stackable=False),
)  # fmt: skip
PHASE = {p.name: p for p in PHASES}


def stored_preset(out: str | Path) -> Preset | None:
    """The preset a run folder was trained with (``training/progress.json``), or ``None`` for a new folder."""
    path = Path(out) / PROGRESS
    return Preset.from_dict(read_json(path)["preset"]) if path.is_file() else None


def _without_step_counts(preset: dict) -> dict:
    """A preset record (JSON form) less what a resumed run may change: the step counts, which it
    may raise, and the planning defaults, which do not touch training. Read through
    :meth:`Preset.from_dict`, so that records of older versions compare by meaning."""
    preset = Preset.from_dict(preset).to_dict()
    preset.pop("plan", None)
    preset.pop("description", None)
    for key in STEP_COUNTS:
        preset["train"].pop(key, None)
    if preset.get("fine") is not None:
        preset["fine"] = _without_step_counts(preset["fine"])
    return preset


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _plot_losses(path: Path, states: dict[str, PhaseState]) -> None:
    """Loss curves of the trained phases as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffplan.plots import save_figure

    fig, axes = plt.subplots(1, len(states), figsize=(5 * len(states), 3.2))
    for ax, (phase, st) in zip(np.atleast_1d(axes), states.items()):
        if st.losses:
            steps, losses = zip(*st.losses)
            ax.plot(steps, losses)
        ax.set_yscale("log")
        ax.set_title(f"{phase} loss")
        ax.set_xlabel("optimizer step")
    save_figure(fig, path)


def train(
    *,
    dataset: str,
    out: str | Path,
    preset: Preset,
    env_id: str | None = None,
    device: str | None = None,
    resume: bool = False,
    progress: bool = True,
    compile: bool = False,
    mixed_precision: str = "no",
    cuda_graphs: bool = False,
) -> TrainResult:
    """Train a run folder (see :class:`Trainer`)."""
    return Trainer(
        dataset=dataset,
        out=out,
        preset=preset,
        env_id=env_id,
        device=device,
        resume=resume,
        progress=progress,
        compile=compile,
        mixed_precision=mixed_precision,
        cuda_graphs=cuda_graphs,
    ).train()
