"""``train(config) -> TrainResult``: the whole training loop, for Python, papermill and the CLI.

One step (after ``disc_warmup_steps`` the adversarial terms switch on):

    wav [B, 1, T] -> generator -> recon, commitment         (EMA codebooks update inside)
    L_G = w_rec * mel(wav, recon) + w_commit * commitment
          + w_adv * hinge_G(D(recon)) + w_feat * L1(D_feat(wav), D_feat(recon))
    Adam step on the generator (skipped, codebooks rolled back, if L_G or its gradient is NaN/Inf)
    L_D = hinge_D(D(wav), D(recon.detach()))  -> Adam step on the discriminators

Notebook: book/04_training.md
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from tinycodec.models.validate import first_line
from tinycodec.train import distributed as ddp
from tinycodec.train.augment import augment, step_generator
from tinycodec.train.checkpoint import (
    FORMAT,
    VERSION,
    CheckpointError,
    CheckpointManager,
    GoodCheckpoints,
    check_resumable,
    describe_mismatch,
    first_nonfinite,
    read_checkpoint,
    rng_state,
    set_rng_state,
)
from tinycodec.train.config import MODEL_DEFINING_FIELDS, TrainConfig, resolve_model_config
from tinycodec.train.data import (
    CropDataset,
    CropSampler,
    DeviceCrops,
    ensure_tensor_corpus,
    open_folders,
    validation_clips,
)
from tinycodec.train.discriminators import Discriminator, DiscriminatorConfig
from tinycodec.train.init import init_from, load_init_state
from tinycodec.train.logging import TrainLogger
from tinycodec.train.losses import (
    MultiScaleMelLoss,
    PitchLoss,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
    mel_distance,
)
from tinycodec.train.spectral_losses import CompressedComplexLoss, MultiResolutionSTFTLoss, PhaseLoss

__all__ = ["train", "TrainResult", "Trainer"]

log = logging.getLogger(__name__)
LOSS_KEYS = ("total_g", "reconstruction", "commitment", "stft", "complex", "phase", "f0", "adversarial", "feature",
             "discriminator")


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model (CodecModel): the trained generator (eval mode, on the training device).
        history (dict[str, list[float]]): ``step`` and the losses every ``log_interval`` steps;
            ``val_step`` and ``val_mel_distance`` at every validation (step 0 included).
        step (int): optimisation steps done (resumed ones included).
        checkpoint (str | None): last checkpoint written; ``best_checkpoint``: lowest validation.
        interrupted (bool): stopped by SIGINT/SIGTERM (a checkpoint was saved).
        signal (int | None): the signal that stopped it (``signal.SIGTERM``...), None otherwise.
        skipped_steps (int): steps skipped for a non-finite loss or gradient.
    """

    model: nn.Module
    history: dict[str, list[float]]
    step: int
    checkpoint: str | None = None
    best_checkpoint: str | None = None
    best_val: float = math.inf
    interrupted: bool = False
    signal: int | None = None
    skipped_steps: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


class GeneratorStep(nn.Module):
    """The codec's training forward with the quantizer outside autocast (its EMA statistics stay fp32).

    DDP wraps this module, so its single forward is the generator's whole pass.
    """

    def __init__(self, model: nn.Module, device: torch.device, amp: bool, freeze_encoder: bool = False,
                 frozen_levels: tuple[int, ...] = ()):
        super().__init__()
        self.model, self.device, self.amp, self.freeze_encoder = model, device, amp, freeze_encoder
        self.frozen_levels = tuple(frozen_levels)

    def forward(self, wav: Tensor) -> tuple[Tensor, Tensor]:
        """Args: wav (Tensor): [B, 1, T]. Returns: recon [B, 1, T] float32, commitment (scalar)."""
        m, length = self.model, wav.shape[-1]
        if self.freeze_encoder:
            # the deployed codes exactly: eval-mode encoder and search, no codebook update, no graph
            m.encoder.eval()
            m.quantizer.eval()
            with torch.no_grad():
                codes = m.quantizer.encode(m.encoder(m.pad_for_delay(wav)))
                if self.frozen_levels:  # the decoder learns each bitrate it will serve (global RNG: seeded)
                    n_q = self.frozen_levels[int(torch.randint(len(self.frozen_levels), (1,)))]
                    codes = codes[:, :n_q]
                quantized = m.quantizer.decode(codes)
            commitment = quantized.new_zeros(())
            m.quantizer.last_stats = None
        else:
            with ddp.autocast(self.device, self.amp):
                z = m.encoder(m.pad_for_delay(wav))
            quantized, _, commitment = m.quantizer(z.float())
        with ddp.autocast(self.device, self.amp):
            recon = m.synthesize(quantized)[..., :length]
        return recon.float(), commitment


class Trainer:
    """Builds everything from a :class:`TrainConfig` and runs it; :func:`train` is the usual entry."""

    def __init__(self, config: TrainConfig):
        from tinycodec.models import build_model

        # a copy: resuming fills in fields (model, preset, disc) that the caller may have left unset
        self.config = cfg = TrainConfig.from_dict(config.to_dict())
        self.info, self.device = ddp.setup(cfg.device)
        ckpt = read_checkpoint(cfg.resume) if cfg.resume else None
        # the whole training state checked (train config, discriminator, history) before anything is built
        stored = check_resumable(ckpt, cfg.resume) if ckpt is not None else None
        if ckpt is not None and cfg.model is None and cfg.preset is None:
            family, model_config = ckpt["family"], dict(ckpt["model_config"])  # resume "as it was"
            cfg.model, cfg.preset = family, stored.preset
        else:
            mc = resolve_model_config(cfg)
            family, model_config = mc.family, asdict(mc)
            if ckpt is not None and (msg := describe_mismatch(ckpt, family, model_config, cfg.preset)):
                raise ValueError(f"cannot resume from {cfg.resume}: {msg}")
        if stored is not None:  # the discriminators must match the saved ones too
            cfg.disc = DiscriminatorConfig(**asdict(stored.disc))
        torch.manual_seed(cfg.seed)
        if ckpt is None and cfg.init:
            family, model_config, init_state = init_from(cfg)
        else:
            init_state = None
        self.model = build_model(family, model_config).to(self.device)
        if init_state is not None:
            load_init_state(self.model, init_state)
        if cfg.frozen_levels and max(cfg.frozen_levels) > self.model.quantizer.num_quantizers:
            raise ValueError(f"frozen_levels {list(cfg.frozen_levels)}: the model has only "
                             f"{self.model.quantizer.num_quantizers} codebook levels")
        if cfg.freeze_encoder:
            self.model.encoder.requires_grad_(False)
            self.model.quantizer.requires_grad_(False)
        self.disc = Discriminator(cfg.disc, self.model.sample_rate).to(self.device)
        sr = self.model.sample_rate
        self.train_folder, val_folder = open_folders(cfg.audio_dir, sr, cfg.audio_length, cfg.val_length)
        self.val_wav = validation_clips(val_folder, cfg.val_clips).to(self.device)
        if cfg.corpus_on_device:
            corpus = Path(cfg.checkpoint_dir) / f"train_corpus_{sr}hz.safetensors"
            if self.info.is_main:
                ensure_tensor_corpus(self.train_folder, corpus)
            ddp.barrier(self.info)
            self.sampler = DeviceCrops(corpus, cfg.audio_length, cfg.batch_size, self.device, cfg.seed,
                                       self.info.rank, self.info.world_size)
        else:
            self.sampler = CropSampler(self.train_folder, cfg.batch_size, cfg.seed, self.info.rank,
                                       self.info.world_size)
        seconds = sum(self.train_folder.durations)
        self.steps_per_epoch = max(1, math.ceil(seconds / (cfg.audio_length * cfg.batch_size)))
        self.total_steps = cfg.max_steps if cfg.max_steps is not None else cfg.num_epochs * self.steps_per_epoch
        self.mel_loss = MultiScaleMelLoss(sr).to(self.device)
        self.stft_loss = MultiResolutionSTFTLoss().to(self.device) if cfg.weights.stft > 0 else None
        self.phase_loss = PhaseLoss().to(self.device) if cfg.weights.phase > 0 else None
        self.complex_loss = CompressedComplexLoss().to(self.device) if cfg.weights.complex > 0 else None
        self.pitch_loss = self._pitch_loss() if cfg.weights.f0 > 0 else None
        self.opt_g = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], cfg.g_lr,
                                      betas=cfg.betas)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), cfg.d_lr, betas=cfg.betas)
        if cfg.warmup_steps:  # linear warm-up of the generator's rate, then the same exponential decay
            gamma, warm = cfg.lr_gamma, cfg.warmup_steps
            self.sched_g = torch.optim.lr_scheduler.LambdaLR(
                self.opt_g, lambda s: gamma**s * min(1.0, (s + 1) / warm))
        else:
            self.sched_g = torch.optim.lr_scheduler.ExponentialLR(self.opt_g, cfg.lr_gamma)
        self.sched_d = torch.optim.lr_scheduler.ExponentialLR(self.opt_d, cfg.lr_gamma)
        self.step, self.best_val, self.bad_in_row, self.skipped = 0, math.inf, 0, 0
        self.history: dict[str, list[float]] = {k: [] for k in ("step", *LOSS_KEYS, "val_step", "val_mel_distance")}
        if ckpt is not None:
            self._load(ckpt)
        self.gen = ddp.wrap(GeneratorStep(self.model, self.device, cfg.amp, cfg.freeze_encoder, cfg.frozen_levels), self.info,
                            self.device, cfg.compile)
        self.disc_train = ddp.wrap(self.disc, self.info, self.device, cfg.compile)
        self.manager = CheckpointManager(cfg.checkpoint_dir, cfg.keep_last)
        self.good = GoodCheckpoints(self.manager, cfg.resume)  # what to resume from after a divergence
        self.logger = TrainLogger(cfg.log_dir if self.info.is_main else None, sr)
        self._stop: int | None = None

    # -- state -----------------------------------------------------------------------
    def state(self) -> dict:
        """The checkpoint dict (tensors and plain containers only)."""
        return {
            "format": FORMAT, "version": VERSION, "family": self.model.family,
            "model_config": asdict(self.model.config), "train_config": self.config.to_dict(),
            "model": self.model.state_dict(), "discriminator": self.disc.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(), "sched_d": self.sched_d.state_dict(),
            "step": self.step, "best_val": self.best_val, "history": self.history,
            "rng": rng_state(self.sampler.state_for(self.step)),
        }

    def _load(self, ckpt: dict) -> None:
        try:  # check_resumable checked the types; what only loading can tell (optimiser groups, RNG) is one line too
            self.model.load_state_dict(ckpt["model"])
            self.disc.load_state_dict(ckpt["discriminator"])
            self.opt_g.load_state_dict(ckpt["opt_g"])
            self.opt_d.load_state_dict(ckpt["opt_d"])
            self.sched_g.load_state_dict(ckpt["sched_g"])
            self.sched_d.load_state_dict(ckpt["sched_d"])
            set_rng_state(ckpt["rng"])
            self.step, self.best_val = int(ckpt["step"]), float(ckpt["best_val"])
            self.sampler.load_state(ckpt["rng"]["sampler"], self.step)
        except Exception as exc:  # noqa: BLE001 - KeyError, TypeError, ValueError, RuntimeError from torch/numpy
            raise CheckpointError(f"{self.config.resume}: cannot resume: its training state does not load "
                                  f"({type(exc).__name__}: {first_line(exc)})") from None
        self.history = {k: list(v) for k, v in ckpt["history"].items()}
        for k in LOSS_KEYS:  # a checkpoint from before a loss term existed: NaN where it was not logged
            self.history.setdefault(k, [math.nan] * len(self.history["step"]))
        log.info("resumed from %s at step %d", self.config.resume, self.step)

    def save(self, best: bool = False, step_finite: bool = True) -> str | None:
        """Write a step checkpoint (and ``best.pt`` when ``best``); returns its path, or ``None`` when
        nothing was written: not the main process, or the step just run was skipped (``step_finite``
        False) or the state holds a non-finite value (a checkpoint must hold a model worth resuming)."""
        if not self.info.is_main:
            return None
        if not step_finite:
            log.warning("no checkpoint at step %d: the step was skipped (non-finite loss or gradient)", self.step)
            return None
        if (bad := self.nonfinite()) is not None:
            log.warning("no checkpoint at step %d: non-finite values in %s", self.step, bad)
            return None
        path = str(self.manager.save(self.state(), best=best))
        self.good.saved(path)
        return path

    def nonfinite(self) -> str | None:
        """The name of the first non-finite tensor of the training state (weights, buffers, Adam's
        moments), or ``None`` when all are finite."""
        return first_nonfinite({"model": self.model, "discriminator": self.disc},
                               {"opt_g": self.opt_g, "opt_d": self.opt_d})

    # -- steps -----------------------------------------------------------------------
    @property
    def one_disc_forward(self) -> bool:
        """Whether one discriminator forward on ``[real; fake]`` serves both players in :meth:`train_step`.

        It keeps the generator's graph for a second backward: not under DDP (the discriminator's reducer
        wants its own forward) nor torch.compile (donated buffers), which take two forwards instead. Both
        paths give the same losses and gradients (``tests/test_train_discriminators.py``).
        """
        return not self.info.enabled and not self.config.compile

    def train_step(self, wav: Tensor) -> dict[str, float] | None:
        """One generator (+ discriminator) update; ``None`` when the step was skipped (non-finite)."""
        cfg, w = self.config, self.config.weights
        adversarial = self.step >= cfg.disc_warmup_steps and (w.adversarial > 0 or w.feature > 0)
        snapshot = [b.clone() for b in self.model.quantizer.buffers()]  # to undo a poisoned EMA update
        recon, commitment = self.gen(wav)
        losses = {"reconstruction": self.mel_loss(wav, recon), "commitment": commitment}
        if self.stft_loss is not None:
            losses["stft"] = self.stft_loss(wav, recon)
        if self.phase_loss is not None:
            losses["phase"] = self.phase_loss(wav, recon)
        if self.complex_loss is not None:
            losses["complex"] = self.complex_loss(wav, recon)
        if self.pitch_loss is not None:  # the head's predictions for the frames just decoded
            head = self.model.decoder.head
            losses["f0"] = self.pitch_loss(wav, head.last_f0, head.last_voicing)
        if adversarial:  # what the discriminators see: a random window of both, or all of it
            wav, recon = self.disc_window(wav, recon)
        B, d_loss = wav.shape[0], None
        one_pass = adversarial and self.one_disc_forward
        if one_pass:
            # one discriminator forward on [real; fake] serves both players: the generator's
            # backward below reaches only generator weights, the discriminator's only its own
            with ddp.autocast(self.device, cfg.amp):
                logits, feats = self.disc(torch.cat([wav, recon]))
            logits = [x.float() for x in logits]
            losses["adversarial"] = generator_hinge_loss([x[B:] for x in logits])
            losses["feature"] = feature_matching_loss([[f[:B].detach() for f in fs] for fs in feats],
                                                      [[f[B:] for f in fs] for fs in feats])
            d_loss = discriminator_hinge_loss([x[:B] for x in logits], [x[B:] for x in logits])
        elif adversarial:
            d = self.disc.requires_grad_(False)  # plain module: D's DDP hooks belong to D's own step
            with ddp.autocast(self.device, cfg.amp):
                fake_logits, fake_feats = d(recon)
                with torch.no_grad():
                    _, real_feats = d(wav)
            d.requires_grad_(True)
            losses["adversarial"] = generator_hinge_loss([x.float() for x in fake_logits])
            losses["feature"] = feature_matching_loss(real_feats, fake_feats)
        total = sum(getattr(w, k) * v for k, v in losses.items())
        self.opt_g.zero_grad(set_to_none=True)
        gen_params = [p for p in self.model.parameters() if p.requires_grad]
        # also when non-finite: under DDP every rank must join the all-reduce
        total.backward(inputs=gen_params, retain_graph=one_pass)
        g_norm = torch.nn.utils.clip_grad_norm_(gen_params, cfg.grad_clip or math.inf)
        bad = not (math.isfinite(float(total.detach())) and math.isfinite(float(g_norm)))
        if ddp.all_reduce_flag(bad, self.device, self.info):
            self._skip(snapshot, {k: float(v.detach()) for k, v in losses.items()})
            return None
        self.bad_in_row = 0
        self.opt_g.step()
        self.sched_g.step()
        out = {k: float(v.detach()) for k, v in losses.items()} | {"total_g": float(total.detach()), "grad_norm/generator": float(g_norm)}
        if adversarial:
            if d_loss is None:
                with ddp.autocast(self.device, cfg.amp):
                    logits, _ = self.disc_train(torch.cat([wav, recon.detach()]))  # one DDP forward, one backward
                logits = [x.float() for x in logits]
                d_loss = discriminator_hinge_loss([x[:B] for x in logits], [x[B:] for x in logits])
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward(inputs=list(self.disc.parameters()))
            d_norm = torch.nn.utils.clip_grad_norm_(self.disc.parameters(), cfg.grad_clip or math.inf)
            if not ddp.all_reduce_flag(not math.isfinite(float(d_norm)), self.device, self.info):
                self.opt_d.step()
                self.sched_d.step()
            out |= {"discriminator": float(d_loss.detach()), "grad_norm/discriminator": float(d_norm)}
        return out

    def _pitch_loss(self) -> PitchLoss:
        """The pitch loss of the model's harmonic-plus-noise decoder head, aligned with its frames.

        Raises:
            ValueError: the model's decoder has no such head."""
        decoder = self.model.decoder
        if getattr(decoder, "head_kind", None) != "hn":
            raise ValueError("the f0 loss trains a harmonic-plus-noise decoder head: set decoder_head='hn' "
                             "(train_reference.py --decoder-head hn)")
        return PitchLoss(self.model.sample_rate, self.model.hop_length, decoder.head.n_fft // 2 - decoder.delay)

    def disc_window(self, wav: Tensor, recon: Tensor) -> tuple[Tensor, Tensor]:
        """The same random ``config.disc_window`` seconds of ``wav`` and ``recon`` [B, 1, T] (all when 0)."""
        n = round(self.config.disc_window * self.model.sample_rate)
        T = min(wav.shape[-1], recon.shape[-1])
        if n <= 0 or n >= T:
            return wav, recon
        start = int(torch.randint(0, T - n + 1, (1,)))  # the global RNG: seeded, and saved in checkpoints
        return wav[..., start:start + n], recon[..., start:start + n]

    def _skip(self, snapshot: list[Tensor], losses: dict[str, float]) -> None:
        self.opt_g.zero_grad(set_to_none=True)
        with torch.no_grad():
            for b, saved in zip(self.model.quantizer.buffers(), snapshot):
                b.copy_(saved)
        self.bad_in_row += 1
        self.skipped += 1
        self.good.confirm(False)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in losses.items())
        log.warning("step %d: non-finite loss or gradient (%s); step skipped (%d/%d in a row)",
                    self.step, shown, self.bad_in_row, self.config.max_bad_steps)
        if self.bad_in_row >= self.config.max_bad_steps:
            raise RuntimeError(
                f"training diverged: {self.bad_in_row} non-finite steps in a row at step {self.step} ({shown}); "
                + self.good.advice())

    @torch.no_grad()
    def validate(self) -> float:
        """Mean log-mel distance between the validation clips and their reconstructions (all quantizers)."""
        was = self.model.training
        self.model.eval()
        recon = self.model(self.val_wav).reconstruction
        self.model.train(was)
        dist = mel_distance(self.val_wav, recon, self.model.sample_rate)
        self.history["val_step"].append(self.step)
        self.history["val_mel_distance"].append(dist)
        self.logger.scalars({"val/mel_distance": dist}, self.step)
        self.logger.audio(self.val_wav, recon, self.step)
        return dist

    # -- the loop ----------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        log.warning("received signal %d: saving a checkpoint after this step", signum)
        self._stop = signum

    def run(self) -> TrainResult:
        cfg, t0 = self.config, time.time()
        old_threads = torch.get_num_threads()
        threads = cfg.num_threads or (1 if self.device.type == "cpu" else None)
        if threads:
            torch.set_num_threads(threads)
        old_handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                old_handlers[sig] = signal.signal(sig, self._on_signal)
        if cfg.corpus_on_device:
            batches = iter(self.sampler)  # crops cut on the device
        else:
            loader = torch.utils.data.DataLoader(CropDataset(self.train_folder), batch_sampler=self.sampler,
                                                 num_workers=cfg.num_workers,
                                                 # its own generator: creating an iterator must not draw from
                                                 # the global RNG, or a resumed run would diverge from a straight one
                                                 generator=torch.Generator().manual_seed(cfg.seed))
            batches = iter(loader)
        result = TrainResult(self.model, self.history, self.step)
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not (cfg.progress and self.info.is_main),
                   desc="train", unit="step", dynamic_ncols=True)
        log.info("training %s (%s) on %s: steps %d -> %d, %d process(es)", self.model.family,
                 cfg.preset or "custom", self.device, self.step, self.total_steps, self.info.world_size)
        try:
            self.model.train()
            if self.info.is_main and not self.history["val_step"]:
                self.validate()  # step 0: the untrained model's distance, the baseline of the run
            while self.step < self.total_steps:
                wav = next(batches).to(self.device, non_blocking=True)
                if cfg.augment:  # a function of the seed and the step: a resumed run augments the same
                    wav = augment(wav, cfg.augment, step_generator(cfg.seed, self.step), self.model.sample_rate)
                out = self.train_step(wav)
                self.step += 1
                if out is not None:
                    self.good.confirm(True)
                bar.update(1)
                if out is not None and (self.step % cfg.log_interval == 0 or self.step == self.total_steps):
                    self._log(ddp.mean_over_ranks(out, self.device, self.info), bar)
                stop = ddp.all_reduce_flag(self._stop is not None, self.device, self.info)
                if self.info.is_main and (self.step % cfg.val_interval == 0 or self.step == self.total_steps):
                    dist = self.validate()
                    if dist < self.best_val and out is not None and self.nonfinite() is None:
                        self.best_val = dist
                        result.best_checkpoint = str(self.manager.save_best(self.state()))
                if stop:
                    result.interrupted, result.signal = True, self._stop
                    result.checkpoint = self.save(step_finite=out is not None) or result.checkpoint
                    log.warning("interrupted at step %d; checkpoint %s (continue with --resume)", self.step,
                                result.checkpoint)
                    break
                if self.step % cfg.save_interval == 0 or self.step == self.total_steps:
                    result.checkpoint = self.save(step_finite=out is not None) or result.checkpoint
        finally:
            bar.close()
            self.logger.close()
            torch.set_num_threads(old_threads)
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            ddp.cleanup(self.info)
        result.step, result.best_val, result.skipped_steps = self.step, self.best_val, self.skipped
        result.seconds = time.time() - t0
        self.model.eval()
        return result

    def _log(self, out: dict[str, float], bar) -> None:
        self.history["step"].append(self.step)
        for k in LOSS_KEYS:
            self.history[k].append(out.get(k, math.nan))
        postfix = {k: f"{out[k]:.3g}" for k in ("reconstruction", "adversarial", "discriminator") if k in out}
        stats = self.model.quantizer.last_stats
        if stats is not None:  # per level: perplexity and codes re-seeded this step
            postfix["ppl"] = "/".join(f"{p:.0f}" for p in stats.perplexity.tolist())
            if stats.replaced is not None:
                postfix["reseeded"] = "/".join(str(int(r)) for r in stats.replaced.tolist())
        bar.set_postfix(postfix)
        scalars = {f"loss/{k}": v for k, v in out.items() if not k.startswith("grad_norm")}
        scalars |= {k: v for k, v in out.items() if k.startswith("grad_norm")}
        scalars |= {"lr/generator": self.opt_g.param_groups[0]["lr"], "lr/discriminator": self.opt_d.param_groups[0]["lr"]}
        self.logger.scalars(scalars, self.step)
        self.logger.quantizer(self.model.quantizer.last_stats, self.step)


def train(config: TrainConfig | None = None, **overrides) -> TrainResult:
    """Train a codec.

    Args:
        config (TrainConfig | None): the run (defaults: ultra_tiny on data/demo for 1000 steps).
        **overrides: TrainConfig fields, e.g. ``train(preset="tiny", max_steps=200)``.

    Resuming continues the run the checkpoint names, as ``tinycodec train --resume`` does:
    ``train(resume=CKPT)`` takes the checkpoint's whole configuration, and the fields given with
    it may only be those of ``RESUME_SAFE`` (e.g. ``max_steps``); a ``TrainConfig`` passed with
    ``resume`` set must match the stored run outside those fields.

    Returns:
        TrainResult: the model, the loss and validation history, checkpoints.

    Raises:
        ValueError: bad configuration, unavailable family, or a resume checkpoint of another model.
        RuntimeError: too many non-finite steps in a row, or an unsafe checkpoint.
    """
    resume = overrides.get("resume") or (config.resume if config is not None else None)
    if resume:
        from tinycodec.train.checkpoint import resume_config

        given = (config.to_dict() if config is not None else {}) | overrides
        # the model's own fields go on to the trainer, whose check names the mismatch (e.g. "C 2 -> 4")
        model_given = {k: given.pop(k) for k in MODEL_DEFINING_FIELDS if k in given}
        config = TrainConfig.from_dict(resume_config(given, resume).to_dict() | model_given)
    elif config is None:
        config = TrainConfig(**overrides)
    elif overrides:
        config = TrainConfig.from_dict(config.to_dict() | overrides)
    return Trainer(config).run()
