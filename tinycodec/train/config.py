"""``TrainConfig``: everything a training run needs, as one dataclass (and the ``tinycodec train`` flags).

Notebook: book/04_training.md
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tinycodec.train.discriminators import DiscriminatorConfig
from tinycodec.train.losses import LossWeights

__all__ = ["MODEL_DEFINING_FIELDS", "RESOURCE_LIMITS", "RESUME_SAFE", "RUN_PATHS", "TrainConfig", "model_families", "resolve_config_for_resume", "resolve_model_config"]

# the preset a bare `--model FAMILY` trains; a family is trainable once tinycodec.models registers it
DEFAULT_PRESET = {"tinystream": "ultra_tiny", "soundstream": "soundstream_tiny", "transformer": "transformer_tiny"}
MODEL_FIELDS = ("C", "D", "num_quantizers", "codebook_size", "sample_rate")  # the CLI's model overrides
# every field that defines the model (a resumed run's trainer compares them with the checkpoint's model)
MODEL_DEFINING_FIELDS = ("model", "preset", *MODEL_FIELDS, "model_overrides", "encoder")
# fields that may change when a run is resumed: how long it runs, where and how it logs and saves,
# the hardware; none of them changes the crops, the model or the optimiser (another device may
# change float rounding). Every other field given with --resume must equal the checkpoint's.
RESUME_SAFE = ("max_steps", "num_epochs", "resume", "device", "num_workers", "num_threads", "progress",
               "log_interval", "val_interval", "save_interval", "keep_last", "checkpoint_dir", "log_dir")
# where a run writes: from the command line, else beside the resumed checkpoint, never from a checkpoint's
# own config (a file must not choose the folders a run writes to)
RUN_PATHS = ("checkpoint_dir", "log_dir")
# caps on the fields that size a run's memory and time (a config from a checkpoint is a claim, like a
# model config: `batch_size=10**9` would try to allocate tens of GB before any error)
RESOURCE_LIMITS: dict[str, tuple[int, int]] = {  # field: (smallest, largest)
    "batch_size": (1, 4096), "val_clips": (1, 1024), "num_workers": (0, 64), "num_threads": (1, 256),
    "keep_last": (1, 10_000), "max_bad_steps": (1, 10_000),
    "log_interval": (1, 10**9), "val_interval": (1, 10**9), "save_interval": (1, 10**9),  # (0 would divide by zero)
}
MAX_CROP_SECONDS = 60.0  # audio_length, val_length
MAX_BATCH_SECONDS = 1024.0  # batch_size x audio_length, and val_clips x val_length (one forward pass)
# the discriminators' size-bearing fields (a checkpoint's DiscriminatorConfig is built on resume)
DISC_LIMITS: dict[str, tuple[int, int]] = {
    "wave_scales": (0, 8), "wave_channels": (1, 1024), "wave_max_channels": (1, 4096), "wave_downsample_layers": (0, 8),
    "stft_n_fft": (2, 1 << 14), "stft_hop_length": (1, 1 << 14), "stft_channels": (1, 1024),
    "period_channels": (1, 1024), "period_max_channels": (1, 4096),
}
DISC_LIST_LIMITS = {"stft_n_ffts": (8, 2, 1 << 14), "periods": (16, 1, 1024)}  # (entries, smallest, largest)


@dataclass
class TrainConfig:
    """A training run. ``None`` for ``model``/``preset`` means "from the checkpoint when resuming,
    else tinystream / ultra_tiny".

    ``batch_size`` is the global batch: under torchrun each of N processes takes ``batch_size / N``
    crops of the same draw, so a run means the same thing on 1 or N processes.
    """

    # model
    model: str | None = None  # family: "tinystream" | "soundstream" | "transformer"
    preset: str | None = None  # named preset (`--config`), e.g. "ultra_tiny", "tiny", "soundstream_tiny"
    C: int | None = None  # overrides of the preset's fields (None keeps the preset's value)
    D: int | None = None
    num_quantizers: int | None = None
    codebook_size: int | None = None
    sample_rate: int | None = None
    model_overrides: dict[str, Any] = field(default_factory=dict)  # any other config field, e.g. strides
    # start from a trained model (shipped name, .safetensors or checkpoint) instead of random weights
    init: str | None = None
    decoder: str | None = None  # "mirror" | "server": the decoder to train (None: the model's own)
    # "seanet" | "stft": the encoder to train (None: the model's own); another kind than --init's starts
    # from random weights with fresh codebooks (a new encoder release, not a decoder upgrade)
    encoder: str | None = None
    freeze_encoder: bool = False  # train the decoder only: encoder and codebooks fixed (their codes stay valid)
    # with freeze_encoder: each batch decodes a random number of levels from this list (empty: all),
    # so one decoder serves every bitrate it ships at
    frozen_levels: tuple[int, ...] = ()
    # data
    audio_dir: str = "data/demo"  # AudioFolder root; its "train" split trains, "val" validates
    audio_length: float = 0.5  # crop length in seconds
    batch_size: int = 16  # global batch (all processes together)
    num_workers: int = 0  # DataLoader workers reading crops (0: in the main process)
    # the GPU fast path: decode the train split once into one int16 tensor file (cached beside the
    # checkpoints), keep it on the training device and cut every batch there: no workers, no decoding
    corpus_on_device: bool = False
    val_clips: int = 8  # held-out clips for the validation mel distance
    val_length: float = 1.0  # seconds per validation clip
    # optimisation
    g_lr: float = 3e-4  # generator Adam learning rate
    d_lr: float = 3e-4  # discriminator Adam learning rate
    betas: tuple[float, float] = (0.5, 0.9)  # Adam betas (GAN practice: low beta1)
    lr_gamma: float = 1.0  # per-step exponential LR decay (1: constant)
    # steps of linear warm-up of the generator's rate (0: none). A run that continues trained weights
    # (--init) starts Adam's moment estimates from zero: its first full-size steps can undo some training
    warmup_steps: int = 0
    grad_clip: float | None = 10.0  # max gradient norm (None: no clipping, norm still logged)
    disc_warmup_steps: int = 0  # generator-only steps (reconstruction + commitment) before the GAN starts
    # seconds of each crop the discriminators see (a random window, the same for real and decoded audio,
    # GAN-TTS's random-window discriminators); 0: the whole crop. The 2-D STFT discriminators dominate
    # a CPU step, and their cost is proportional to the audio they see.
    disc_window: float = 0.0
    # chance of each effect (level, EQ, room, noise) per training clip, 0: none
    # (tinycodec.train.augment; the clip is both the input and the target)
    augment: float = 0.0
    weights: LossWeights = field(default_factory=LossWeights)
    disc: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    # schedule
    max_steps: int | None = 1000  # total optimisation steps (wins over num_epochs when both are set)
    num_epochs: int | None = None  # epochs of the train split (one epoch = its seconds of audio in crops)
    # bookkeeping
    checkpoint_dir: str = "checkpoints"
    log_dir: str | None = "runs"  # TensorBoard folder (None: no TensorBoard)
    save_interval: int = 1000  # steps between checkpoints (one more at the end)
    keep_last: int = 3  # step checkpoints kept besides best.pt
    log_interval: int = 10  # steps between TensorBoard scalars
    val_interval: int = 200  # steps between validations (and audio/spectrogram summaries)
    resume: str | None = None  # checkpoint to continue from
    # robustness
    max_bad_steps: int = 5  # consecutive NaN/Inf steps before aborting
    # hardware
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1"
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    compile: bool = False  # torch.compile generator and discriminator (the quantizer stays eager; a graph
    # the backend cannot compile falls back to eager with a warning)
    # torch CPU threads during the run (None: 1 on CPU, where more threads only oversubscribe a shared
    # 2-core machine (steps measured 3-5x slower under load); torch's own setting on CUDA)
    num_threads: int | None = None
    seed: int = 0
    progress: bool = True  # tqdm bar with the losses

    def __post_init__(self) -> None:
        if isinstance(self.weights, dict):
            self.weights = LossWeights(**self.weights)
        if isinstance(self.disc, dict):
            self.disc = DiscriminatorConfig(**self.disc)
        self.betas = tuple(self.betas)
        if len(self.frozen_levels) > 64:  # (checked before its entries are read)
            raise ValueError(f"frozen_levels has {len(self.frozen_levels)} entries, above its cap of 64")
        self.frozen_levels = tuple(int(n) for n in self.frozen_levels)
        if self.frozen_levels and (not self.freeze_encoder or min(self.frozen_levels) < 1):
            raise ValueError(f"frozen_levels {list(self.frozen_levels)} needs freeze_encoder and levels >= 1")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        self.check_resources()
        if not 0.0 <= self.augment <= 1.0:
            raise ValueError(f"augment is a probability in [0, 1], got {self.augment}")
        if not 0 <= self.disc_window <= self.audio_length:
            raise ValueError(f"disc_window must lie in 0..audio_length ({self.audio_length} s), got {self.disc_window}")
        if self.max_steps is None and self.num_epochs is None:
            raise ValueError("set max_steps or num_epochs")

    def check_resources(self) -> None:
        """Check the fields that size the run's memory and time against their caps (``RESOURCE_LIMITS``,
        ``MAX_CROP_SECONDS``, ``MAX_BATCH_SECONDS``, ``DISC_LIMITS``).

        Raises:
            ValueError: one line naming the field, its value and the cap.
        """
        from tinycodec.models.config import _shown, check_caps

        check_caps(vars(self), RESOURCE_LIMITS)
        for name in ("audio_length", "val_length"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= MAX_CROP_SECONDS:
                raise ValueError(f"{name}={_shown(value)} s must lie in (0, {MAX_CROP_SECONDS:g}] s")
        for clips, length, name in ((self.batch_size, self.audio_length, "batch_size x audio_length"),
                                    (self.val_clips, self.val_length, "val_clips x val_length")):
            if clips * length > MAX_BATCH_SECONDS:
                raise ValueError(f"{name} = {clips} x {length:g} s = {clips * length:g} s of audio per pass is above "
                                 f"its cap of {MAX_BATCH_SECONDS:g} s")
        check_caps(asdict(self.disc), DISC_LIMITS, DISC_LIST_LIMITS)

    def to_dict(self) -> dict:
        """Plain dict (ints, floats, strings, lists, dicts): safe for ``torch.load(weights_only=True)``."""
        d = asdict(self)
        d["betas"] = list(d["betas"])
        d["frozen_levels"] = list(d["frozen_levels"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def given_args(cls, args) -> dict[str, Any]:
        """The fields ``tinycodec train`` flags set explicitly (an argparse Namespace; unset flags are None)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in vars(args).items() if k in names and v is not None}
        if getattr(args, "config", None):
            kw["preset"] = args.config
        if "num_epochs" in kw and "max_steps" not in kw:
            kw["max_steps"] = None  # epochs given alone: they decide the length
        return kw

    @classmethod
    def from_args(cls, args) -> TrainConfig:
        """From ``tinycodec train`` flags (unset flags keep the defaults)."""
        return cls(**cls.given_args(args))


def resolve_config_for_resume(stored: TrainConfig, given: dict[str, Any], resume: str) -> TrainConfig:
    """The run a checkpoint continues: its stored config, with the given fields of ``RESUME_SAFE``.

    The folders the run writes to (``RUN_PATHS``) never come from the checkpoint: they are the given
    ones, else beside the checkpoint (``checkpoint_dir`` its folder, ``log_dir`` a ``runs`` folder in it;
    none when the run logged no TensorBoard).

    Args:
        stored: the checkpoint's whole ``TrainConfig``.
        given: fields set explicitly with ``--resume`` (``TrainConfig.given_args``).
        resume: the checkpoint path.

    Raises:
        ValueError: a given field outside ``RESUME_SAFE`` differs from the run's (all are named).
    """
    def norm(x):  # a field as given (dict, list) or as stored (dataclass, tuple): one form to compare
        return dataclasses.asdict(x) if dataclasses.is_dataclass(x) else list(x) if isinstance(x, tuple) else x

    def same(a, b) -> bool:
        return norm(a) == norm(b)

    changed = [f"--{'config' if k == 'preset' else k} {v!r} (the run has {getattr(stored, k)!r})"
               for k, v in given.items() if k not in RESUME_SAFE and not same(v, getattr(stored, k))]
    if changed:
        raise ValueError(f"--resume {resume} continues that run; these flags would change it: {', '.join(changed)}. "
                         f"Only {', '.join('--' + k for k in RESUME_SAFE if k != 'resume')} may change on resume; "
                         "start a new run to change the others")
    beside = Path(resume).parent
    paths = {"checkpoint_dir": str(beside), "log_dir": None if stored.log_dir is None else str(beside / "runs")}
    return TrainConfig.from_dict(stored.to_dict() | paths | given | {"resume": resume})


def model_families() -> list[str]:
    """Families the trainer accepts on the command line: the registered ones plus the planned ones."""
    from tinycodec.models import CONFIG_CLASSES

    return sorted(CONFIG_CLASSES)


def resolve_model_config(config: TrainConfig):
    """The codec config of a run: the preset (or the family's default preset) with the overrides.

    Raises:
        ValueError: unknown family, or a preset of another family.
    """
    from tinycodec.models import CONFIG_CLASSES, get_preset, list_presets

    family = config.model
    if family is None:
        family = get_preset(config.preset).family if config.preset else "tinystream"
    if family not in CONFIG_CLASSES:
        raise ValueError(f"unknown model family {family!r}; choose from {model_families()}")
    preset = config.preset or DEFAULT_PRESET.get(family)
    if preset is not None:
        cfg = get_preset(preset)
        if cfg.family != family:
            raise ValueError(f"preset {preset!r} is a {cfg.family} preset, not {family}; "
                             f"{family} presets: {list_presets(family)}")
        values = asdict(cfg)
    else:
        values = asdict(CONFIG_CLASSES[family]())
    values.update({k: getattr(config, k) for k in MODEL_FIELDS if getattr(config, k) is not None})
    values.update(config.model_overrides)
    for part in ("encoder", "decoder"):
        if getattr(config, part, None) is not None:
            values[part] = getattr(config, part)
    return CONFIG_CLASSES[family](**values)
