import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from diffplan.config import UNetConfig
from diffplan.diffusion import (
    Constraint,
    Guidance,
    guided_sample,
    posterior_variances,
    value,
)
from diffplan.models import build_denoiser, build_scheduler, build_value_function

CFG = UNetConfig(block_out_channels=(16, 32))


def _nets() -> tuple:
    torch.manual_seed(0)
    return build_denoiser(config=CFG, transition_dim=5), build_value_function(config=CFG, transition_dim=5)


def test_posterior_variance_matches_ddpm_scheduler() -> None:
    sched = build_scheduler(num_train_timesteps=20, beta_schedule="squaredcos_cap_v2", prediction_type="sample")
    sched.set_timesteps(20)
    steps = [int(t) for t in sched.timesteps]
    ours = posterior_variances(sched.alphas_cumprod, steps)
    for t, v in zip(steps[:-1], ours[:-1]):
        assert v == pytest.approx(float(sched._get_variance(t)), rel=1e-4)
    assert ours[-1] == ours[-2] > 0  # last step clipped as in the original Diffuser
    # respaced schedule (5 of 20 steps) uses the variance between consecutive sampled steps
    sched.set_timesteps(5)
    steps5 = [int(t) for t in sched.timesteps]
    ours5 = posterior_variances(sched.alphas_cumprod, steps5)
    for t, v in zip(steps5[:-1], ours5[:-1]):
        assert v == pytest.approx(float(sched._get_variance(t)), rel=1e-4)


@pytest.mark.parametrize("scheduler_cls", [DDPMScheduler, DDIMScheduler])
def test_constraints_are_exact_after_sampling(scheduler_cls: type) -> None:
    unet, vf = _nets()
    sched = scheduler_cls(
        num_train_timesteps=20, beta_schedule="squaredcos_cap_v2", prediction_type="sample", clip_sample=False
    )
    sched.set_timesteps(20 if scheduler_cls is DDPMScheduler else 5)
    start = torch.randn(4, 3)
    goal = torch.randn(4, 2)
    cons = [
        Constraint(index=0, start=2, values=start),
        Constraint(index=-1, start=2, values=goal),
        Constraint(index=3, start=0, values=torch.zeros(4, 1)),
    ]
    x = guided_sample(
        unet=unet,
        scheduler=sched,
        x=torch.randn(4, 8, 5),
        constraints=cons,
        guidance=Guidance(value_function=vf, scale=1.0, t_stopgrad=0),
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(x[:, 0, 2:], start)
    assert torch.equal(x[:, -1, 2:4], goal)
    assert torch.equal(x[:, 3, 0], torch.zeros(4))
    assert torch.isfinite(x).all()


def test_value_guidance_raises_the_value_on_the_same_noise() -> None:
    unet, vf = _nets()
    sched = build_scheduler(num_train_timesteps=20, beta_schedule="squaredcos_cap_v2", prediction_type="sample")
    sched.set_timesteps(20)
    noise = torch.randn(16, 8, 5, generator=torch.Generator().manual_seed(1))
    cons = [Constraint(index=0, start=2, values=torch.zeros(16, 3))]

    def run(scale: float) -> torch.Tensor:
        g = torch.Generator().manual_seed(2)
        guide = Guidance(value_function=vf, n_guide_steps=2, scale=scale, t_stopgrad=0)
        x = guided_sample(unet=unet, scheduler=sched, x=noise, constraints=cons, guidance=guide, generator=g)
        with torch.no_grad():
            return value(vf, x)

    unguided, guided = run(0.0), run(50.0)
    assert guided.mean() > unguided.mean()
    assert guided.max() > unguided.max()


def test_callback_sees_every_step() -> None:
    unet, _ = _nets()
    sched = build_scheduler(num_train_timesteps=20, beta_schedule="squaredcos_cap_v2", prediction_type="sample")
    sched.set_timesteps(20)
    seen: list[int] = []
    guided_sample(
        unet=unet, scheduler=sched, x=torch.randn(2, 8, 5), constraints=[], callback=lambda i, t, x: seen.append(t)
    )
    assert seen == list(range(19, -1, -1))


@pytest.mark.parametrize("prediction_type", ["sample", "epsilon"])
@pytest.mark.parametrize(
    "scheduler_cls,steps", [(DDPMScheduler, 20), (DDPMScheduler, 5), (DDIMScheduler, 5), (DDIMScheduler, 20)]
)
def test_affine_schedule_is_the_schedulers_step(scheduler_cls: type, steps: int, prediction_type: str) -> None:
    """The precomputed step equals diffusers' scheduler.step on the same inputs and the same noise."""
    from diffplan.diffusion.sampling import denoising_schedule, draw_step_noise

    sched = scheduler_cls(
        num_train_timesteps=20, beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type, clip_sample=False
    )
    sched.set_timesteps(steps)
    schedule = denoising_schedule(sched)
    assert schedule.affine and schedule.timesteps == tuple(int(t) for t in sched.timesteps)
    shape = (3, 8, 5)
    noise = draw_step_noise(
        schedule, shape=shape, generator=torch.Generator().manual_seed(4), device=torch.device("cpu")
    )
    assert noise.shape[0] == sum(s > 0 for s in schedule.noise_std)
    g = torch.Generator().manual_seed(4)
    rng = torch.Generator().manual_seed(9)
    drawn = 0
    for i, t in enumerate(schedule.timesteps):
        out, x = torch.randn(shape, generator=rng), torch.randn(shape, generator=rng)
        theirs = sched.step(out, t, x, generator=g).prev_sample
        ours = schedule.sample_coef[i] * x + schedule.model_coef[i] * out
        if schedule.noise_std[i] > 0:
            ours = ours + schedule.noise_std[i] * noise[drawn]
            drawn += 1
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_non_affine_schedulers_step_through_diffusers() -> None:
    from diffusers import DPMSolverMultistepScheduler

    from diffplan.diffusion.sampling import denoising_schedule

    clipped = DDPMScheduler(num_train_timesteps=20, clip_sample=True)
    clipped.set_timesteps(20)
    dpm = DPMSolverMultistepScheduler(num_train_timesteps=20)
    dpm.set_timesteps(5)
    assert not denoising_schedule(clipped).affine and not denoising_schedule(dpm).affine
    unet, _ = _nets()
    x = guided_sample(
        unet=unet, scheduler=dpm, x=torch.randn(2, 8, 5), constraints=[], generator=torch.Generator().manual_seed(0)
    )
    assert torch.isfinite(x).all()
