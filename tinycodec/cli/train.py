"""``tinycodec train``: the training entry point (also under ``torchrun --nproc_per_node N``).

    tinycodec train --config ultra_tiny --audio_dir data/demo --max_steps 2000
    tinycodec train --resume checkpoints/step_00002000.pt --max_steps 4000
    tinycodec train --init tiny --audio_dir MY_SOUNDS --freeze-encoder --max_steps 2000   # adapt the decoder

``--resume CKPT`` continues the run the checkpoint holds: its whole ``TrainConfig`` comes from the
checkpoint, and only flags of ``RESUME_SAFE`` (length, logging, saving, hardware) may change it;
any other flag that differs is refused with a message naming it. The folders it writes to never
come from the file: ``--checkpoint_dir``/``--log_dir``, else beside the checkpoint.
    torchrun --nproc_per_node 2 -m tinycodec train --config tiny --device cuda

Notebook: book/04_training.md
"""

from __future__ import annotations

import argparse
import logging

__all__ = ["register"]


def register(subparsers) -> None:
    from tinycodec.models import CONFIG_CLASSES  # not tinycodec.train: every other command would import it

    p = subparsers.add_parser("train", help="train a codec (losses, discriminators, checkpoints, TensorBoard)",
                              description="Train a codec on a folder of audio. Unset flags keep the preset's "
                                          "values; --resume alone continues a run as it was. Ctrl-C or SIGTERM saves a "
                                          "checkpoint and exits with 128 + the signal (130, 143).")
    p.add_argument("--model", choices=sorted(CONFIG_CLASSES), help="model family (default: the preset's, else tinystream)")
    p.add_argument("--config", metavar="PRESET", help="named preset, e.g. ultra_tiny, tiny, small, soundstream_tiny")
    p.add_argument("--audio_dir", help="folder of audio files (train/val split by path hash; default data/demo)")
    p.add_argument("--batch_size", type=int, help="global batch size, all processes together (default 16)")
    p.add_argument("--audio_length", type=float, help="crop length in seconds (default 0.5)")
    p.add_argument("--C", type=int, help="base channels (overrides the preset)")
    p.add_argument("--D", type=int, help="embedding dimension (overrides the preset)")
    p.add_argument("--num_quantizers", type=int,
                   help="residual quantizers (overrides the preset); with --init, more than its own adds fresh "
                        "levels after its trained ones (a higher bitrate)")
    p.add_argument("--codebook_size", type=int, help="codes per quantizer, a power of two (overrides the preset)")
    p.add_argument("--sample_rate", type=int, help="Hz (overrides the preset)")
    p.add_argument("--g_lr", type=float, help="generator learning rate (default 3e-4)")
    p.add_argument("--d_lr", type=float, help="discriminator learning rate (default 3e-4)")
    p.add_argument("--disc_warmup_steps", type=int, help="generator-only steps before the GAN losses (default 0)")
    p.add_argument("--disc_window", type=float,
                   help="seconds of each crop the discriminators see, a random window (default 0: all of it)")
    p.add_argument("--augment", type=float, metavar="P",
                   help="chance of each augmentation (level, EQ, room, noise) per training clip (default 0: none)")
    p.add_argument("--save_interval", type=int, help="steps between checkpoints (default 1000)")
    p.add_argument("--num_workers", type=int, help="DataLoader workers (default 0)")
    p.add_argument("--corpus_on_device", action="store_true", default=None,
                   help="decode the train split once into one tensor kept on the device (the GPU fast path)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--num_epochs", type=int, help="epochs (one epoch = the train split's seconds in crops)")
    length.add_argument("--max_steps", type=int, help="optimisation steps (default 1000)")
    p.add_argument("--checkpoint_dir", help="checkpoint folder (default checkpoints)")
    p.add_argument("--log_dir", help="TensorBoard folder (default runs)")
    p.add_argument("--resume", metavar="CKPT",
                   help="continue the run in this checkpoint, exactly (its config comes from it; only "
                        "--max_steps/--num_epochs, logging, saving and hardware flags may change); it writes "
                        "beside the checkpoint unless --checkpoint_dir/--log_dir say where")
    p.add_argument("--init", metavar="MODEL",
                   help="start from a trained model: a shipped name (e.g. tiny), a .safetensors or a checkpoint; "
                        "adapts it to --audio_dir (the most common use: your own sounds)")
    p.add_argument("--decoder", choices=["mirror", "server"],
                   help="decoder to train (default: the model's); a new kind starts from random weights")
    p.add_argument("--encoder", choices=["seanet", "stft"],
                   help="encoder to train (default: the model's); another kind than --init's starts from random "
                        "weights and fresh codebooks (a new encoder: new firmware, new codes)")
    p.add_argument("--freeze-encoder", dest="freeze_encoder", action="store_true", default=None,
                   help="train the decoder only: encoder and codebooks stay fixed, so the firmware and every "
                        ".tcz written with them stay valid")
    p.add_argument("--num_threads", type=int, help="torch CPU threads (default 1 on CPU)")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--seed", type=int, help="seed of weights, crops and codebooks (default 0)")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    """The run's ``TrainConfig``: from the flags, or from ``--resume CKPT`` (checked, see the module docstring)."""
    from tinycodec.train.checkpoint import resume_config
    from tinycodec.train.config import TrainConfig

    given = TrainConfig.given_args(args)
    return resume_config(given, args.resume) if args.resume else TrainConfig(**given)


def run(args: argparse.Namespace) -> int:
    from tinycodec.train import train

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = train(config_from_args(args))
    if result.interrupted and result.checkpoint is None:  # nothing saved: non-finite steps or weights (logged)
        logging.getLogger(__name__).warning("stopped at step %d; no checkpoint was saved", result.step)
    elif result.interrupted:
        logging.getLogger(__name__).warning("stopped at step %d; resume with --resume %s",
                                            result.step, result.checkpoint)
    dist, at = result.history["val_mel_distance"], result.history["val_step"]
    if dist:  # the last validation may be older than the last step (a run stopped between validations)
        logging.getLogger(__name__).info("after step %d: validation mel distance %.4f (measured at step %d; at step %d: %.4f); "
                                         "checkpoint %s", result.step, dist[-1], at[-1], at[0], dist[0], result.checkpoint)
    # stopped by a signal: the checkpoint is saved, and the exit code says the run did not finish
    # (128 + the signal number, as a shell reports a process killed by it: 130 for Ctrl-C, 143 for SIGTERM)
    return 128 + result.signal if result.interrupted and result.signal else 0
