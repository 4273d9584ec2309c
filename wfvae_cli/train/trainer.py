"""One trainer for every stage of WF-VAE training (the paper's stages differ only in their recipes).

Step ``s`` (0-based) is a **discriminator** step when the GAN is on, ``s ≥ loss.disc_start`` and ``s`` is
odd; otherwise it is a **generator** step (the official ``train_ddp.py`` alternation). Each step
accumulates gradients over ``batch_size / (micro_batch_size · world_size)`` micro-batches, then one
optimizer step; the EMA follows every generator step; the learning rate follows the step (warm-up, then
constant or cosine).

Determinism (what makes ``--resume`` exact): the clips of a step are a pure function of ``(seed, slot)``
(:mod:`wfvae_cli.train.data`); before each micro-batch the torch RNG (discriminator dropout) is reseeded
and the posterior noise generator seeded from ``(seed, slot of its first clip)``. A resumed run therefore
replays exactly what an uninterrupted one would compute, and N devices compute what one device
accumulating N micro-batches computes. The checkpoint still stores the global RNG states for anything
else that draws from them.

Devices: one process per device. Under torchrun or Ray the VAE is wrapped in DDP (gradient sync
overlapped with the backward); the discriminator's gradients are averaged by one flat all-reduce.
Mixed precision is autocast (bf16 by default on CUDA, fp16 with a GradScaler on request); CPU runs fp32.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from wfvae_cli.dtypes import torch_dtype
from wfvae_cli.errors import WfvaeError
from wfvae_cli.model import WFVAE, WFVAEConfig, load_model
from wfvae_cli.train import checkpoint as ckpt_io
from wfvae_cli.train import distributed as dist_utils
from wfvae_cli.train.data import SlotPlan, SyntheticClips, VideoClips, make_loader
from wfvae_cli.train.ema import EMA
from wfvae_cli.train.evaluate import Evaluator
from wfvae_cli.train.losses import NLayerDiscriminator3D, discriminator_loss, generator_loss
from wfvae_cli.train.recipe import Recipe, dump_recipe, recipe_from_dict, recipe_to_dict

log = logging.getLogger(__name__)

__all__ = ["TrainResult", "Trainer", "lr_factor", "train"]


def _seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (SeedSequence: neighbouring steps get unrelated streams)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def lr_factor(step: int, warmup: int, total: int, decay: str, min_ratio: float) -> float:
    """Multiplier of the base lr at ``step``: linear warm-up to 1, then 1 (constant) or a cosine to min_ratio."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if decay == "cosine":
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns: where things went and the last numbers."""

    step: int
    output_dir: Path
    checkpoint: Path | None
    last_train: dict[str, float] = field(default_factory=dict)
    last_eval: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainProgress:
    """One progress report of a training run (rank 0 only), for a progress bar or a dashboard.

    ``event`` is ``start`` (before the first step), ``step`` (after every optimizer step; ``stats`` are that
    step's losses), ``eval`` (``stats`` are the evaluation metrics) or ``end``. The trainer renders nothing
    itself: the CLI draws a Rich bar from these, a notebook or a job runner can do what it likes.
    """

    event: Literal["start", "step", "eval", "end"]
    step: int
    total: int
    stats: dict[str, float] = field(default_factory=dict)
    clips_per_s: float = 0.0


TrainProgressFn = Callable[[TrainProgress], None]


class _Sinks:
    """metrics.jsonl (always, rank 0), plus TensorBoard / W&B when the recipe asks and they are installed."""

    def __init__(self, recipe: Recipe, out: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.jsonl = None
        self.tb = None
        self.wandb = None
        if not enabled:
            return
        self.jsonl = (out / "metrics.jsonl").open("a", buffering=1)
        if recipe.log.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise recipe.error(
                    "log.tensorboard", "tensorboard is not installed; pip install tensorboard, or set it to false"
                ) from None
            self.tb = SummaryWriter(str(out / "tensorboard"))
        if recipe.log.wandb:
            try:
                import wandb
            except ImportError:
                raise recipe.error(
                    "log.wandb", "wandb is not installed; pip install wandb, or set it to false"
                ) from None
            self.wandb = wandb.init(
                project=recipe.log.wandb_project, name=recipe.name or None, config=recipe_to_dict(recipe), dir=str(out)
            )

    def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        assert self.jsonl is not None
        self.jsonl.write(json.dumps({"kind": kind, "step": step, "time": round(time.time(), 3), **values}) + "\n")
        numeric = {
            f"{kind}/{k}": v for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
        if self.tb is not None:
            for k, v in numeric.items():
                self.tb.add_scalar(k, v, step)
        if self.wandb is not None:
            self.wandb.log(numeric, step=step)

    def close(self) -> None:
        if self.jsonl is not None:
            self.jsonl.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


class Trainer:
    """Builds everything a recipe describes and runs it; ``fit()`` trains to ``schedule.steps``.

    ``perceptual`` injects the LPIPS network (tests pass ``LPIPSMetric.random_trunk().net``); by default it
    is LPIPS-Alex with its trunk from ``loss.lpips_weights`` / the torch hub cache. ``resume`` is a
    checkpoint path, or ``True`` for the newest one in ``output_dir/checkpoints``.
    """

    def __init__(
        self,
        recipe: Recipe,
        *,
        ctx: dist_utils.DistContext | None = None,
        perceptual: nn.Module | None = None,
        resume: str | Path | bool | None = None,
        progress: TrainProgressFn | None = None,
    ) -> None:
        self.recipe = recipe
        self.ctx = ctx or dist_utils.setup(recipe.device)
        self.device = self.ctx.device
        self.progress = progress if self.ctx.is_main else None
        self.out = Path(recipe.output_dir)
        self.ckpt_dir = self.out / "checkpoints"
        self.step = 0
        self.last_train: dict[str, float] = {}
        self.resumed_from: Path | None = None
        self._baseline_logged = False
        self.amp_dtype = self._resolve_precision()

        # ---- networks (identical initial weights on every rank: same seed, then a broadcast)
        self.vae = self._build_vae().to(self.device)
        self.disc: NLayerDiscriminator3D | None = None
        if recipe.gan:
            d = recipe.loss.discriminator
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_seed(recipe.seed, 1))
                self.disc = NLayerDiscriminator3D(3, d.ndf, d.n_layers)
            if recipe.model.init_discriminator:
                self._load_init_discriminator()
            self.disc.to(self.device).train()
        if self.ctx.distributed:
            dist_utils.broadcast_state(self.vae)
            if self.disc is not None:
                dist_utils.broadcast_state(self.disc)
        self.perceptual = self._build_perceptual(perceptual)

        # ---- optimisation
        o = recipe.optim
        self.gen_params = [p for p in self.vae.parameters() if p.requires_grad]
        self.gen_opt = torch.optim.AdamW(
            self.gen_params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay
        )
        self.disc_opt = None
        if self.disc is not None:
            d_lr = recipe.loss.discriminator.lr or o.lr
            self.disc_opt = torch.optim.AdamW(
                self.disc.parameters(), lr=d_lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay
            )

        def factor(step: int) -> float:
            return lr_factor(step, o.warmup_steps, recipe.schedule.steps, o.decay, o.min_lr_ratio)

        self.gen_sched = torch.optim.lr_scheduler.LambdaLR(self.gen_opt, factor)
        self.disc_sched = torch.optim.lr_scheduler.LambdaLR(self.disc_opt, factor) if self.disc_opt else None
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.ema = EMA(self.vae, recipe.ema.decay) if recipe.ema.enabled else None

        self.gen: nn.Module = self.vae
        if self.ctx.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # no buffer sync per forward: the VAE's only buffers are the fixed Haar filters
            self.gen = DistributedDataParallel(self.vae, device_ids=ids, forward_sync_buffers=False)

        # ---- data
        d = recipe.data
        self.plan = SlotPlan(d.batch_size, d.micro_batch_size, self.ctx.world_size, self.ctx.rank)
        self.dataset = self._train_dataset()
        self.evaluator: Evaluator | None = None
        self.eval_model: WFVAE | None = None
        if self.ctx.is_main:
            self.evaluator = self._build_evaluator()

        if resume:
            self._resume(resume)
        if self.ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "recipe.toml").write_text(dump_recipe(recipe))
        dist_utils.barrier()
        self.sinks = _Sinks(recipe, self.out, enabled=self.ctx.is_main)

    # ================================================================================ construction
    def _resolve_precision(self) -> torch.dtype | None:
        """None = fp32 (no autocast). ``auto`` → bf16 on CUDA (fp16 if bf16 is unsupported), fp32 on CPU."""
        p = self.recipe.precision
        cuda = self.device.type == "cuda"
        if p == "auto":
            if not cuda:
                return None
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if p == "fp32":
            return None
        if not cuda:
            raise self.recipe.error(
                "precision", f'"{p}" autocast is for CUDA devices; this run is on the CPU: use "auto" or "fp32"'
            )
        return torch_dtype(p, "precision")

    def _build_vae(self) -> WFVAE:
        m, r = self.recipe.model, self.recipe
        wanted: WFVAEConfig | None = None
        if m.preset is not None:
            from wfvae_cli.model.config import preset_config

            wanted = preset_config(m.preset)
        elif m.config is not None:
            wanted = WFVAEConfig.from_json(m.config)
        if m.init is not None:
            vae = load_model(m.init, ema=m.init_ema)
            if wanted is not None and vae.config != wanted:
                diff = [
                    k for k, v in wanted.__dict__.items() if getattr(vae.config, k) != v and k not in ("scale", "shift")
                ]
                if diff:
                    key = "model.preset" if m.preset is not None else "model.config"
                    raise r.error(
                        key,
                        f"the architecture differs from model.init {m.init} in {', '.join(diff)}; drop {key} or fix it",
                    )
        else:
            assert wanted is not None
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(r.seed)
                vae = WFVAE(wanted)
            vae.source = f"random init (seed {r.seed})"
        factor = vae.config.temporal_factor
        for key, frames in (("data.frames", r.data.frames), ("data.eval_frames", r.data.eval_frames)):
            if frames is not None and frames % factor != 1:
                raise r.error(key, f"{frames} is not {factor}k+1, which this {factor}x-temporal model needs")
        vae.train()
        if m.freeze_encoder:
            vae.encoder.requires_grad_(False)
        return vae

    def _load_init_discriminator(self) -> None:
        assert self.disc is not None and self.recipe.model.init is not None
        path = Path(self.recipe.model.init)
        if path.is_dir():
            path = ckpt_io.latest_checkpoint(path) or path
        state = ckpt_io.load_checkpoint(path).get("state_dict", {}).get("dics_model") or {}
        if not state:
            raise self.recipe.error("model.init_discriminator", f"{path} holds no discriminator; set it to false")
        try:
            self.disc.load_state_dict(state)
        except RuntimeError as exc:
            raise self.recipe.error(
                "model.init_discriminator",
                f"{path}: discriminator does not match loss.discriminator ({str(exc)[:120]})",
            ) from exc

    def _build_perceptual(self, injected: nn.Module | None) -> nn.Module | None:
        lo = self.recipe.loss
        if lo.perceptual_weight <= 0:
            return None
        if injected is not None:
            net = injected
        else:
            from wfvae_cli.metrics import LPIPSMetric, MetricUnavailable

            try:
                net = LPIPSMetric(lo.lpips_weights, device=self.device).net
            except MetricUnavailable as exc:
                raise self.recipe.error(
                    "loss.perceptual_weight",
                    f"LPIPS needs its AlexNet trunk, which is not here ({exc}); set loss.lpips_weights to the file, "
                    "or loss.perceptual_weight = 0 to train without it",
                ) from None
        # per-frame scalar as in the official LPIPS loss (spatially averaged per layer, not a spatial map)
        if hasattr(net, "spatial"):
            net.spatial = False
        return net.to(self.device).eval().requires_grad_(False)

    def _train_dataset(self):
        d, r = self.recipe.data, self.recipe
        if d.synthetic is not None:
            return SyntheticClips.from_section(d.synthetic, d.frames, d.size, r.seed)
        return VideoClips(
            d.inputs, d.frames, d.size, r.seed, sample_rate=d.sample_rate, dynamic_sample=d.dynamic_sample,
            decode_timeout=d.decode_timeout,
        )

    def _build_evaluator(self) -> Evaluator | None:
        d, r, ev = self.recipe.data, self.recipe, self.recipe.eval
        frames = d.eval_frames or d.frames
        if d.eval_clips == 0:
            return None
        if d.synthetic is not None and d.synthetic.eval_photos:
            dataset = SyntheticClips.from_section(d.synthetic, frames, d.size, r.seed, train=False, clips=d.eval_clips)
        elif d.eval_inputs:
            dataset = VideoClips(
                d.eval_inputs, frames, d.size, r.seed, sample_rate=d.sample_rate, train=False, clips=d.eval_clips,
                decode_timeout=d.decode_timeout, what="data.eval_inputs",
            )
        else:
            return None
        lpips = None
        if ev.lpips != "off":
            from wfvae_cli.metrics import LPIPSMetric, MetricUnavailable

            try:
                lpips = LPIPSMetric(ev.lpips_weights or r.loss.lpips_weights, device=self.device)
            except MetricUnavailable as exc:
                if ev.lpips == "on":
                    raise r.error("eval.lpips", f"{exc}; or set eval.lpips = \"auto\"") from None
                log.info("eval: LPIPS skipped (%s)", exc)
        self.eval_model = copy.deepcopy(self.vae).eval().requires_grad_(False)
        return Evaluator(
            dataset, batch_size=ev.batch_size, lpips=lpips, save_videos=ev.save_videos, out_dir=self.out / "eval"
        )

    # ================================================================================ steps
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _noise(self, micro: int) -> torch.Generator:
        """Seed this micro-batch's randomness from its first clip slot (not from rank or micro index).

        Why: the posterior noise and the discriminator's dropout then depend only on which clips are
        processed, so 2 devices x 1 clip compute exactly what 1 device x 2 accumulated clips computes, and a
        resumed step replays the interrupted one.
        """
        slot = self.plan.slots(self.step, micro)[0]
        torch.manual_seed(_seed(self.recipe.seed, 3, slot))  # global RNG: discriminator dropout
        g = torch.Generator(device=self.device)
        g.manual_seed(_seed(self.recipe.seed, 2, slot))
        return g

    def _is_disc_step(self, step: int) -> bool:
        return self.disc is not None and step >= self.recipe.loss.disc_start and step % 2 == 1

    def _clip(self, params: list[torch.Tensor], opt: torch.optim.Optimizer) -> float | None:
        if self.recipe.optim.grad_clip <= 0:
            return None
        self.scaler.unscale_(opt)
        return float(torch.nn.utils.clip_grad_norm_(params, self.recipe.optim.grad_clip))

    def _generator_step(self, batches) -> dict[str, float]:
        lo = self.recipe.loss
        self.gen_opt.zero_grad(set_to_none=True)
        gan_on = self.disc is not None and self.step >= lo.disc_start
        if self.disc is not None:
            self.disc.requires_grad_(False)  # D only provides the adversarial gradient here
        totals: dict[str, float] = {}
        z_std = 0.0
        for micro, video in enumerate(batches):
            video = video.to(self.device, non_blocking=True)
            last = micro == self.plan.accum - 1
            plain = last or not isinstance(self.gen, DistributedDataParallel)
            sync = contextlib.nullcontext() if plain else self.gen.no_sync()
            with sync, self._autocast():
                recon, posterior, coeffs = self.gen(video, sample_posterior=True, generator=self._noise(micro))
                terms = generator_loss(
                    video, recon, posterior, coeffs,
                    reconstruction=lo.reconstruction,
                    perceptual=self.perceptual, perceptual_weight=lo.perceptual_weight,
                    kl_weight=lo.kl_weight, wavelet_weight=lo.wavelet_weight,
                    discriminator=self.disc if gan_on else None, disc_weight=lo.disc_weight,
                    last_layer=self.vae.get_last_layer(),
                )
                self.scaler.scale(terms.total / self.plan.accum).backward()
            for k, v in terms.scalars().items():
                totals[k] = totals.get(k, 0.0) + v / self.plan.accum
            z_std = float(posterior.std.detach().float().mean())
        norm = self._clip(self.gen_params, self.gen_opt)
        self.scaler.step(self.gen_opt)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.vae)
        if self.disc is not None:
            self.disc.requires_grad_(True)
        totals["z_std"] = z_std
        if norm is not None:
            totals["grad_norm"] = norm
        return totals

    def _discriminator_step(self, batches) -> dict[str, float]:
        assert self.disc is not None and self.disc_opt is not None
        lo = self.recipe.loss
        self.disc_opt.zero_grad(set_to_none=True)
        totals = {"d_loss": 0.0, "logits_real": 0.0, "logits_fake": 0.0}
        for micro, video in enumerate(batches):
            video = video.to(self.device, non_blocking=True)
            with torch.no_grad(), self._autocast():
                recon, _, _ = self.vae(video, sample_posterior=True, generator=self._noise(micro))
            with self._autocast():
                real = self.disc(video).float()
                fake = self.disc(recon.detach()).float()
                loss = discriminator_loss(real, fake, lo.disc_loss)
            self.scaler.scale(loss / self.plan.accum).backward()
            totals["d_loss"] += float(loss.detach()) / self.plan.accum
            totals["logits_real"] += float(real.detach().mean()) / self.plan.accum
            totals["logits_fake"] += float(fake.detach().mean()) / self.plan.accum
        dist_utils.average_gradients(self.disc, self.ctx.world_size)
        norm = self._clip(list(self.disc.parameters()), self.disc_opt)
        self.scaler.step(self.disc_opt)
        self.scaler.update()
        if norm is not None:
            totals["d_grad_norm"] = norm
        return totals

    # ================================================================================ loop
    def fit(self) -> TrainResult:
        """Train from the current step to ``schedule.steps``; log, evaluate and checkpoint on the way."""
        r, s = self.recipe, self.recipe.schedule
        loader = make_loader(self.dataset, self.plan, self.step, s.steps, r.data.workers, self.device.type == "cuda")
        batches = iter(loader)
        last_ckpt: Path | None = None
        last_eval: dict[str, float] = {}
        window: dict[str, list[float]] = {}
        steps_done, window_start, paused = 0, time.perf_counter(), 0.0  # paused: eval/checkpoint time
        progress = self.progress
        if progress is not None:
            progress(TrainProgress("start", self.step, s.steps))
        if self.ctx.is_main:
            self.sinks.write("start", self.step, self._run_facts())
        if s.eval_at_start and self.step == 0:
            last_eval = self._evaluate()
        try:
            while self.step < s.steps:
                micro_batches = (next(batches) for _ in range(self.plan.accum))
                if self._is_disc_step(self.step):
                    stats = self._discriminator_step(micro_batches)
                else:
                    stats = self._generator_step(micro_batches)
                lr = self.gen_opt.param_groups[0]["lr"]
                with warnings.catch_warnings():
                    # both schedules follow the global step, so one of the two optimizers has not stepped yet
                    warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler")
                    self.gen_sched.step()
                    if self.disc_sched is not None:
                        self.disc_sched.step()
                self.step += 1
                steps_done += 1
                for k, v in stats.items():
                    window.setdefault(k, []).append(v)
                if progress is not None:
                    rate = steps_done * r.data.batch_size / max(1e-9, time.perf_counter() - window_start - paused)
                    progress(TrainProgress("step", self.step, s.steps, stats, rate))
                if self.step % s.log_every == 0 or self.step == s.steps:
                    elapsed = time.perf_counter() - window_start - paused
                    row = {k: float(np.mean(v)) for k, v in window.items()}
                    clips = steps_done * r.data.batch_size
                    row.update(lr=lr, s_per_step=elapsed / steps_done, clips_per_s=clips / elapsed,
                               frames_per_s=clips * r.data.frames / elapsed)
                    if self.ctx.is_main:
                        self.sinks.write("train", self.step, row)
                        if progress is None:
                            log.info("step %d %s", self.step, self._short(row))
                    self.last_train = row
                    window, steps_done, window_start, paused = {}, 0, time.perf_counter(), 0.0
                t0 = time.perf_counter()
                if self.step % s.eval_every == 0 or self.step == s.steps:
                    last_eval = self._evaluate() or last_eval
                    if progress is not None and last_eval:
                        progress(TrainProgress("eval", self.step, s.steps, last_eval))
                if self.step % s.checkpoint_every == 0 or self.step == s.steps:
                    last_ckpt = self.save_checkpoint() or last_ckpt
                paused += time.perf_counter() - t0
        finally:
            if progress is not None:
                progress(TrainProgress("end", self.step, s.steps, self.last_train))
            self.sinks.close()
        return TrainResult(self.step, self.out, last_ckpt, self.last_train, last_eval)

    def _run_facts(self) -> dict[str, Any]:
        counts = self.vae.num_params()
        return {
            "recipe": self.recipe.path, "world_size": self.ctx.world_size, "device": str(self.device),
            "precision": str(self.amp_dtype or torch.float32).removeprefix("torch."),
            "accum": self.plan.accum, "vae_params": counts["total"],
            "disc_params": sum(p.numel() for p in self.disc.parameters()) if self.disc is not None else 0,
            "perceptual": "off" if self.perceptual is None else type(self.perceptual).__name__,
        }

    @staticmethod
    def _short(stats: dict[str, float]) -> str:
        return short_stats(stats)

    # ================================================================================ eval / ckpt
    def _evaluate(self) -> dict[str, float]:
        """Rank 0 evaluates (others wait); EMA weights as ``ema/*``, raw as plain keys, baseline once."""
        out: dict[str, float] = {}
        if self.ctx.is_main and self.evaluator is not None and self.eval_model is not None:
            ev = self.recipe.eval
            if ev.baseline and not self._baseline_logged:
                base = self.evaluator.baseline(self.vae.config.temporal_factor)
                self.sinks.write("baseline", self.step, base)
                self._baseline_logged = True
            if ev.raw or self.ema is None:
                self.eval_model.load_state_dict(self.vae.state_dict())
                out.update(self.evaluator.run(self.eval_model, self.device, self.amp_dtype, tag="raw", step=self.step))
            if self.ema is not None:
                self.ema.copy_to(self.eval_model)
                res = self.evaluator.run(self.eval_model, self.device, self.amp_dtype, tag="ema", step=self.step)
                out.update({f"ema/{k}": v for k, v in res.items()})
            self.sinks.write("eval", self.step, out)
        dist_utils.barrier()
        return out

    def state(self) -> dict[str, Any]:
        """The checkpoint payload (see :mod:`wfvae_cli.train.checkpoint` for the layout)."""
        vae_state = {k: v.detach().cpu() for k, v in self.vae.state_dict().items()}
        return {
            "current_step": self.step,
            "state_dict": {
                "gen_model": vae_state,
                "dics_model": {k: v.detach().cpu() for k, v in self.disc.state_dict().items()} if self.disc else {},
            },
            "ema_state_dict": self.ema.full_state_dict(self.vae) if self.ema is not None else {},
            "ema_shadow": {k: v.cpu() for k, v in self.ema.state_dict().items()} if self.ema is not None else {},
            "optimizer_state": {
                "gen_optimizer": self.gen_opt.state_dict(),
                "disc_optimizer": self.disc_opt.state_dict() if self.disc_opt else {},
            },
            "scheduler_state": {
                "gen": self.gen_sched.state_dict(),
                "disc": self.disc_sched.state_dict() if self.disc_sched else {},
            },
            "scaler_state": self.scaler.state_dict(),
            "rng_state": ckpt_io.capture_rng(),
            "sampler_state": {
                "next_step": self.step, "seed": self.recipe.seed, "batch_size": self.recipe.data.batch_size
            },
            "recipe": recipe_to_dict(self.recipe),
            "config": self.vae.config.to_dict(),
            "world_size": self.ctx.world_size,
            "last_metrics": self.last_train,
        }

    def save_checkpoint(self) -> Path | None:
        """Rank 0 writes ``checkpoints/step_XXXXXXX.pt`` (+ ``config.json`` for ``load_model``) and prunes."""
        if self.disc is not None and self.ctx.distributed:
            dist_utils.broadcast_state(self.disc)  # BatchNorm statistics drift per rank; keep rank 0's
        path = None
        if self.ctx.is_main:
            path = ckpt_io.save_checkpoint(self.ckpt_dir / ckpt_io.checkpoint_name(self.step), self.state())
            self.vae.config.to_json(self.ckpt_dir / "config.json")
            ckpt_io.prune_checkpoints(self.ckpt_dir, self.recipe.schedule.keep_checkpoints)
            self.sinks.write("checkpoint", self.step, {"path": str(path)})
        dist_utils.barrier()
        return path

    def _resume(self, resume: str | Path | bool) -> None:
        path = ckpt_io.latest_checkpoint(self.ckpt_dir) if resume is True else Path(resume)
        if path is None:
            raise WfvaeError(
                f"--resume: no checkpoint in {self.ckpt_dir}; start without --resume (or pass --resume-from PATH)"
            )
        ckpt = ckpt_io.load_checkpoint(path)
        stored = recipe_from_dict(ckpt["recipe"], path=f"{path}:recipe")
        changed = _recipe_diff(stored, self.recipe)
        if changed:
            log.warning("resuming %s with a changed recipe: %s", path, ", ".join(changed))
        if ckpt.get("world_size", 1) != self.ctx.world_size:
            log.warning(
                "resuming on %d devices, checkpoint written on %d", self.ctx.world_size, ckpt.get("world_size", 1)
            )
        if self.vae.config.to_dict() != ckpt["config"]:
            raise WfvaeError(
                f"{path}: the checkpoint's model config differs from the recipe's model; resume with the same recipe"
            )
        self.vae.load_state_dict(ckpt["state_dict"]["gen_model"])
        if self.disc is not None:
            if not ckpt["state_dict"]["dics_model"]:
                raise WfvaeError(f"{path}: no discriminator in the checkpoint but the recipe has loss.disc_weight > 0")
            self.disc.load_state_dict(ckpt["state_dict"]["dics_model"])
            if ckpt["optimizer_state"]["disc_optimizer"]:
                self.disc_opt.load_state_dict(ckpt["optimizer_state"]["disc_optimizer"])  # type: ignore[union-attr]
                self.disc_sched.load_state_dict(ckpt["scheduler_state"]["disc"])  # type: ignore[union-attr]
        self.gen_opt.load_state_dict(ckpt["optimizer_state"]["gen_optimizer"])
        self.gen_sched.load_state_dict(ckpt["scheduler_state"]["gen"])
        if ckpt.get("scaler_state"):
            self.scaler.load_state_dict(ckpt["scaler_state"])
        if self.ema is not None:
            if ckpt.get("ema_shadow"):
                self.ema.load_state_dict(ckpt["ema_shadow"])
            else:
                log.warning("%s has no EMA; the EMA restarts from the current weights", path)
        ckpt_io.restore_rng(ckpt["rng_state"])
        self.step = int(ckpt["sampler_state"]["next_step"])
        self.resumed_from = path


def short_stats(stats: dict[str, float]) -> str:
    """The headline numbers of a train or eval row, for one log line (``loss=0.12 psnr=31.2 ...``)."""
    keys = ("loss", "rec", "kl", "wl", "g_adv", "d_loss", "psnr", "ema/psnr", "clips_per_s")
    return " ".join(f"{k}={stats[k]:.4g}" for k in keys if k in stats)


def _recipe_diff(a: Recipe, b: Recipe) -> list[str]:
    da, db = _flat(recipe_to_dict(a)), _flat(recipe_to_dict(b))
    return sorted(k for k in set(da) | set(db) if da.get(k) != db.get(k))


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(_flat(v, key))
        else:
            out[key] = v
    return out


def train(
    recipe: Recipe,
    *,
    resume: str | Path | bool | None = None,
    perceptual: nn.Module | None = None,
    progress: TrainProgressFn | None = None,
    ctx: dist_utils.DistContext | None = None,
) -> TrainResult:
    """Build a :class:`Trainer` and run it (the library entry point behind ``wfvae train``).

    With ``resume`` the checkpoint's weights replace whatever ``model.init`` loaded (init only shapes the
    first run of a stage). ``progress`` receives :class:`TrainProgress` reports on rank 0; without it the
    trainer logs a line every ``schedule.log_every`` steps (``logging``, logger ``wfvae_cli.train``).
    """
    return Trainer(recipe, ctx=ctx, perceptual=perceptual, resume=resume, progress=progress).fit()
