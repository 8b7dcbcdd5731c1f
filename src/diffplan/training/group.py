"""Many runs in one process: the seeds (and datasets) of a grid trained together.

Each run is a :class:`~diffplan.training.trainer.Trainer` of its own — its own data, batches, noise,
optimizer state, EMA, run folder, checkpoints and writer lock — so its folder is exactly that of a
single run and can be resumed alone. What is shared is the arithmetic: in a *stacked* phase the
runs' networks of equal shapes become one batched network (``torch.func.stack_module_state``,
``functional_call`` and ``vmap``), so one forward and backward computes every run's loss and
gradients, and one fused Adam and one EMA update, both elementwise, move every run's weights as
their own Adam and EMA would. The runs' losses are summed; no gradient crosses runs.

Stacking pays where a step is bound by per-operation overhead rather than arithmetic: kernel
launches on a GPU, Python and dispatch on a CPU (measured, ``benchmarks/many_runs.py``). Phases
that read more than a network and a batch (the state value's TD target network) and runs whose
shapes differ are trained one after another, in the same process, with the same result as alone.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import torch

from diffplan.config import Preset
from diffplan.io import writer_lock
from diffplan.training.checkpoint import PhaseState, save_phase
from diffplan.training.trainer import PHASE, PHASES, Trainer, TrainResult


def run_name(dataset: str) -> str:
    """Folder name of a dataset in a group: a Minari id less its first namespace, slashes as dashes
    (``diffplan/hopper/medium-v0`` -> ``hopper-medium-v0``), or an HDF5 file's stem."""
    if dataset.endswith((".hdf5", ".h5")):
        return Path(dataset).stem
    parts = dataset.split("/")
    return "-".join(parts[1:] if len(parts) > 2 else parts)


def group_runs(*, datasets: Sequence[str], seeds: Sequence[int], out: str | Path) -> list[tuple[str, int, Path]]:
    """``(dataset, seed, run folder)`` of every run of a group: ``out/<run_name(dataset)>/seed<k>``.

    Raises:
        ValueError: no dataset or seed, a repeated one, two datasets of one folder name, or a
            negative seed.
    """
    if not datasets or not seeds:
        raise ValueError(f"expected at least one dataset and one seed, got {list(datasets)} and {list(seeds)}")
    names = [run_name(d) for d in datasets]
    if len(set(datasets)) != len(datasets) or len(set(seeds)) != len(seeds) or len(set(names)) != len(names):
        raise ValueError(f"expected distinct datasets and seeds, got {list(datasets)} and {list(seeds)}")
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad:
        raise ValueError(f"expected seed >= 0, got {bad[0]!r} (an integer)")
    return [(d, s, Path(out) / n / f"seed{s}") for d, n in zip(datasets, names) for s in seeds]


class _Stacked:
    """The runs' networks of one phase as one batched network, with one Adam and one EMA."""

    def __init__(self, trainers: Sequence[Trainer], phase: str) -> None:
        from diffusers.training_utils import EMAModel
        from torch.func import stack_module_state

        self.trainers, self.phase = list(trainers), phase
        solo = [tr.phase_objects(phase) for tr in self.trainers]
        models = [m for m, _, _, _ in solo]
        self.states: list[PhaseState] = [st for _, _, _, st in solo]
        self.batch_fns = [tr.phase_functions(phase)[0] for tr in self.trainers]
        params, self.buffers = stack_module_state(models)
        self.names = list(params)
        self.params = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
        train = self.trainers[0].preset.train
        self.optimizer = torch.optim.Adam(list(self.params.values()), lr=train.learning_rate, fused=True)
        first_opt, first_ema = solo[0][1], solo[0][2]
        if first_opt.state:  # resumed: stack each run's Adam moments (the step count is the runs' common one)
            per_run = [list(m.parameters()) for m in models]
            for i, p in enumerate(self.params.values()):
                runs = [opt.state[weights[i]] for weights, (_, opt, _, _) in zip(per_run, solo)]
                self.optimizer.state[p] = {
                    k: (v.clone() if k == "step" else torch.stack([r[k] for r in runs])) for k, v in runs[0].items()
                }
        self.ema = EMAModel(list(self.params.values()), decay=first_ema.decay,
                            update_after_step=first_ema.update_after_step, foreach=True)  # fmt: skip
        record = first_ema.state_dict()
        record["shadow_params"] = [torch.stack(s) for s in zip(*(ema.shadow_params for _, _, ema, _ in solo))]
        self.ema.load_state_dict(record)
        self.solo = solo
        base = copy.deepcopy(models[0]).to("meta")
        loss_fn = self.trainers[0].phase_functions(phase)[1]

        def one_run(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], *batch: torch.Tensor) -> torch.Tensor:
            def net(*args: Any) -> Any:
                return torch.func.functional_call(base, (p, b), args)

            return loss_fn(cast("torch.nn.Module", net), batch)  # the losses only call their model

        self.losses: Callable[..., torch.Tensor] = torch.func.vmap(one_run)

    def step(self, step: int) -> torch.Tensor:
        """One optimizer step of every run; returns the runs' losses ``[N]`` (mean over micro-batches)."""
        accumulation = self.trainers[0].preset.train.gradient_accumulation_steps
        total = torch.zeros(())
        for micro in range(accumulation):
            batches = [batch_fn(step, micro) for batch_fn in self.batch_fns]
            stacked = [torch.stack(parts) for parts in zip(*batches)]
            losses = self.losses(self.params, self.buffers, *stacked) / accumulation
            losses.sum().backward()
            total = total.to(losses.device) + losses.detach()
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.ema.step(list(self.params.values()))
        return total

    def save(self, k: int) -> None:
        """Write run ``k``'s checkpoint as its own trainer would (its slice of the weights, Adam, EMA)."""
        model, optimizer, ema, state = self.solo[k]
        with torch.no_grad():
            for p, name in zip(model.parameters(), self.names):
                p.copy_(self.params[name][k])
            for p, name in zip(model.parameters(), self.names):
                group = self.optimizer.state.get(self.params[name], {})
                optimizer.state[p] = {key: (v.clone() if key == "step" else v[k].clone()) for key, v in group.items()}
        ema.shadow_params = [s[k].clone() for s in self.ema.shadow_params]
        ema.optimization_step, ema.cur_decay_value = self.ema.optimization_step, self.ema.cur_decay_value
        save_phase(folder=self.trainers[k].phase_folder(self.phase), model=model, ema=ema, optimizer=optimizer,
                   state=state)  # fmt: skip

    def final(self, k: int) -> torch.nn.Module:
        """Run ``k``'s network with its EMA weights (what its run folder stores)."""
        net = self.trainers[k]._build(self.phase)
        with torch.no_grad():
            for p, shadow in zip(net.parameters(), self.ema.shadow_params):
                p.copy_(shadow[k])
        return net


def _stackable(trainers: Sequence[Trainer], phase: str) -> bool:
    """Whether the runs of a phase can share one batched network: a stackable phase, equal shapes, one
    process on one device, float32 without compilation or CUDA graphs (equal progress is checked once
    their checkpoints are read)."""
    first = trainers[0]
    same = all(
        tr.channels == first.channels and (tr.data.obs_dim, tr.data.act_dim) == (first.data.obs_dim, first.data.act_dim)
        for tr in trainers
    )
    single = all(tr.accelerator.num_processes == 1 and not tr.cuda_graphs for tr in trainers)
    plain = all(tr.mixed_precision == "no" and not tr.compile for tr in trainers)
    return PHASE[phase].stackable and len(trainers) > 1 and same and single and plain


def _run_stacked(trainers: Sequence[Trainer], phase: str, *, progress: bool) -> list[tuple[Any, PhaseState, float]]:
    """Train one phase of every run together (see :class:`_Stacked`)."""
    from tqdm.auto import tqdm

    group = _Stacked(trainers, phase)
    steps = {st.step for st in group.states}
    if len(steps) > 1:  # runs left at different steps (one resumed alone): each finishes alone
        return [tr._run_phase(phase) for tr in trainers]
    train = trainers[0].preset.train
    total, start = trainers[0]._total_steps(phase), steps.pop()
    bar = tqdm(total=total, initial=start, desc=f"train {phase} ({len(trainers)} runs)", unit="step",
               disable=not progress)  # fmt: skip
    started = time.perf_counter()
    before = [st.seconds for st in group.states]
    step = start
    while step < total:
        losses = group.step(step)
        step += 1
        log = step % train.log_every == 0 or step == total
        for k, (tr, st) in enumerate(zip(trainers, group.states)):
            st.step = step
            # a run's share of the wall time (what its compute cost; the group's runs progress together)
            st.seconds = before[k] + (time.perf_counter() - started) / len(trainers)
            if log:
                st.losses.append([step, float(losses[k])])
                tr.accelerator.log({f"{phase}/loss": float(losses[k])}, step=step)
            if step % train.checkpoint_every == 0 or step == total:
                group.save(k)
        if log:
            bar.set_postfix(loss=f"{float(losses.mean()):.4f}")
        bar.update(1)
    bar.close()
    rate = (step - start) / max(time.perf_counter() - started, 1e-9)  # steps/s of each run (all together)
    return [(group.final(k), st, rate) for k, st in enumerate(group.states)]


def train_group(trainers: Sequence[Trainer], *, stacked: bool = True, progress: bool = True) -> list[TrainResult]:
    """Train several runs in this process, each into its own run folder, holding every folder's
    writer lock throughout.

    Args:
        trainers: one per run (e.g. from :func:`make_trainers`), one process each on one device.
        stacked: train each stackable phase of runs of equal shapes as one batched network; ``False``:
            one run after another.
        progress: show progress bars.

    Returns:
        Each run's summary, in the order of ``trainers``.

    Raises:
        FolderLockedError: another process writes one of the run folders (none is changed).
    """
    with contextlib.ExitStack() as locks:
        for tr in trainers:
            locks.enter_context(writer_lock(tr.out))
        for tr in trainers:
            tr.begin()
        models: list[dict[str, Any]] = [dict.fromkeys(p.name for p in PHASES if not p.always) for _ in trainers]
        states: list[dict[str, PhaseState]] = [{} for _ in trainers]
        rates: list[dict[str, float]] = [{} for _ in trainers]
        for phase in (p.name for p in PHASES):
            runs = [k for k, tr in enumerate(trainers) if phase in tr.phases()]
            if not runs:
                continue
            chosen = [trainers[k] for k in runs]
            if stacked and _stackable(chosen, phase):
                done = _run_stacked(chosen, phase, progress=progress)
            else:
                done = [tr._run_phase(phase) for tr in chosen]
            for k, (model, state, rate) in zip(runs, done):
                models[k][phase], states[k][phase], rates[k][phase] = model, state, rate
        return [tr.finish(m, s, r) for tr, m, s, r in zip(trainers, models, states, rates)]


def make_trainers(
    *,
    datasets: Sequence[str],
    seeds: Sequence[int],
    out: str | Path,
    preset: Preset,
    resume: bool = False,
    device: str | None = "cpu",
    progress: bool = True,
    env_id: str | None = None,
) -> list[Trainer]:
    """One :class:`Trainer` per (dataset, seed), into ``out/<dataset name>/seed<k>`` (see :func:`group_runs`),
    each with ``preset`` at its own seed. Every run is checked (and its data loaded) before any is trained.

    Raises:
        ValueError, FileNotFoundError: as a single trainer's, for any run; bad dataset or seed lists.
    """
    from dataclasses import replace

    return [
        Trainer(
            dataset=dataset,
            out=folder,
            preset=replace(preset, train=replace(preset.train, seed=seed)),
            env_id=env_id,
            device=device,
            resume=resume,
            progress=progress,
        )  # fmt: skip
        for dataset, seed, folder in group_runs(datasets=datasets, seeds=seeds, out=out)
    ]
