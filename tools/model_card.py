"""A shipped model's card (``tinycodec/pretrained/NAME.md``), built from data by one tested function.

:func:`model_card` takes the model, its recorded runs (``runs.json`` entries, see
``train_reference.run_record``), its validation curves and its held-out table, and returns the
Markdown; ``train_reference.py ship`` gathers those and writes the file, ``cards`` refreshes the
held-out section of cards already shipped (:func:`quality_table`).
"""

from __future__ import annotations

import re
from pathlib import Path

BASELINE_ROWS = ("opus_6k", "opus_8k", "codec2_3200", "codec2_2400")  # the codecs a card compares against
SPLITS = ("train", "val", "test")
DATA_NOTE = ("- Real audio only (the `speech` and `nature` corpora from Debian packages, 16 kHz mono; manifests in "
             "`data/manifests/`). Held out by `data/manifests/reference_splits.json`: whole speakers for speech "
             "(test: the male Italian Asterisk voice and the Klettres de, en_GB, pt_BR and uk voices; validation: "
             "Klettres da, hu, nl), whole recordings for nature.")
LOSSES_NOTE = ("- Losses: multi-scale mel reconstruction + commitment; where a run says so, the adversarial phase "
               "(hinge loss + feature matching) from that step on.")


def encoder_kind(cfg) -> str:
    """The card's words for a config's encoder: its arithmetic and its frontend."""
    arithmetic = "int8-exact (the firmware arithmetic)" if cfg.encoder_int8 else "float"
    frontend = "FFT frontend (`encoder=\"stft\"`)" if getattr(cfg, "encoder", "seanet") == "stft" else "SEANet"
    return f"{arithmetic}, {frontend}"


def readable_command(command: str) -> str:
    """A recorded command as a reader can use it: a run's checkpoint path becomes ``{run NAME, step N}``
    (the folder exists only on the machine that trained) and job-control wrappers are dropped."""
    command = re.sub(r"\(under timeout -s TERM (\d+)m\)", r"(stopped after \1 min)", command)
    command = re.sub(r"timeout -s TERM (\d+)m\s+", "", command)
    command = re.sub(r"checkpoints/reference_(\w+)/step_0*(\d+)\.pt", r"{run \1, step \2}", command)
    return re.sub(r"checkpoints/reference_(\w+)/best\.pt", r"{run \1, best}", command)


def thin(values: list, n: int = 9) -> list:
    """At most ``n`` evenly spaced entries, the first and last included."""
    if len(values) <= n:
        return list(values)
    return [values[round(i * (len(values) - 1) / (n - 1))] for i in range(n)]


def quality_table(eval_json: Path, name: str) -> list[str]:
    """Markdown lines: this model's rows next to the baselines, per category (empty: no rows for it)."""
    from tinycodec.eval.evaluate import HIGHER_IS_BETTER, EvalResult

    result = EvalResult.from_json(eval_json)
    lines = []
    for cat, codecs in result.categories.items():
        rows = [c for c in codecs if c.startswith(f"{name}_nq")] + [c for c in BASELINE_ROWS if c in codecs]
        if not rows or not rows[0].startswith(name):
            continue
        metrics = [m for m in ("log_mel", "stoi", "pesq_wb", "si_sdr") if m in codecs[rows[0]]]
        head = ["codec", "kbit/s", *(m + (" ↑" if HIGHER_IS_BETTER[m] else " ↓") for m in metrics)]
        lines += [f"**{cat}** ({codecs[rows[0]]['n_clips']} clips of {result.clip_seconds:g} s)", "",
                  _row(head), "|" + "---|" * len(head)]
        for c in rows:
            e = codecs[c]
            lines.append(_row([c, f"{e['bitrate'] / 1000:.2f}", *(f"{e[m]:.3f}" if m in e else "" for m in metrics)]))
        lines.append("")
    return lines


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def run_line(run: dict) -> str:
    """One shipped run: its command, how far and long it went, on what, and its losses."""
    losses = ("mel reconstruction + commitment only" if run.get("gan_from_step") is None
              else f"adversarial + feature matching from step {run['gan_from_step']}")
    stopped = " (stopped before its step limit)" if run["interrupted"] else ""
    return (f"- `{readable_command(run['command'])}`: {run['steps_end']} steps reached, {run['hours']:.2f} h on "
            f"{run['hardware']}, {run['date']}{stopped}; Adam lr {run['g_lr']:g}, batch {run['batch']}; {losses}")


def tried_line(run: dict) -> str:
    """One run that was tried and not shipped, with its outcome where one was written down."""
    outcome = f"; {run['outcome']}" if run.get("outcome") else ""
    return (f"- tried, not shipped: `{readable_command(run['command'])}`: {run['steps_end']} steps, {run['hours']:.2f} h "
            f"on {run['hardware']}, {run['date']}; best validation mel {run['best_val_mel_distance']:.3f}{outcome}")


def model_card(name: str, model, *, file_bytes: int, runs: list[dict], history: dict,
               split_hours: dict[str, dict[str, float]], tried: list[dict] = (), speech_curve: dict | None = None,
               quality: list[str] = (), eval_json: str | None = None, encoder_from: str | None = None,
               notes: str = "") -> str:
    """The Markdown card of shipped model ``name``.

    Args:
        model (CodecModel): the shipped model (``checkpoint_step`` read when set).
        file_bytes (int): size of its ``.safetensors`` (float16, without the EMA statistics).
        runs (list[dict]): the runs that made it, oldest first (``runs.json`` entries).
        history (dict): the training history (``val_step``, ``val_mel_distance``).
        split_hours (dict): hours of audio per category and split.
        tried (list[dict]): runs tried and not shipped (with an ``outcome`` where known).
        speech_curve (dict | None): step -> validation speech scores (``train_reference.py follow``).
        quality (list[str]): the held-out table (:func:`quality_table`), from ``eval_json``.
        encoder_from (str | None): the shipped model whose file holds this one's encoder and codebooks.
        notes (str): Markdown for the notes section.

    Returns:
        str: the card, ending in one newline.
    """
    from tinycodec.models.summary import summary

    cfg, s = model.config, summary(model)
    params = s.params_encoder + s.params_codebooks + s.params_decoder
    file_note = "float16"
    if cfg.encoder_int8:
        file_note += (" except the int8-exact encoder's biases (float32: they hold its integer grid exactly; "
                      "its int8-grid weights are exact in float16)")
    file_note += ", without the codebooks' EMA statistics"
    if encoder_from:
        file_note += f"; its encoder and codebooks are read from `{encoder_from}.safetensors`, checked by encoder hash"
    card = [
        f"# `{name}`: {model.family} reference model", "", "| field | value |", "|---|---|",
        _row(["family / config", f"{model.family}, C={cfg.C}, D={cfg.D}, strides {'-'.join(map(str, cfg.strides))}, "
              f"{model.num_quantizers} x {cfg.codebook_size} codes"]),
        _row(["bitrate", f"{model.bitrate():.0f} bit/s at {model.sample_rate} Hz ({model.frame_rate:g} frames/s)"]),
        _row(["parameters", f"{params:,} ({s.params_encoder:,} encoder, {s.params_codebooks:,} codebooks, "
              f"{s.params_decoder:,} decoder)"]),
        _row(["training steps", f"{getattr(model, 'checkpoint_step', '?')} (checkpoint with the best validation)"]),
        _row(["file", f"`tinycodec/pretrained/{name}.safetensors` ({file_bytes:,} bytes, {file_note})"]),
        _row(["encoder / decoder", f"{encoder_kind(cfg)} / {cfg.decoder}"]),
        "", "## Data", "",
    ]
    card += [f"- {cat}: " + ", ".join(f"{split} {per.get(split, 0):.2f} h" for split in SPLITS)
             for cat, per in split_hours.items()]
    card += [DATA_NOTE, "", "## Training", "", *map(run_line, runs), *map(tried_line, tried), LOSSES_NOTE, ""]
    steps = thin(history["val_step"])
    card += ["Validation mel distance (16 clips of held-out speakers and recordings):", "",
             _row(["step", *(int(x) for x in steps)]), "|---|" + "---|" * len(steps),
             _row(["mel distance", *(f"{x:.3f}" for x in thin(history["val_mel_distance"]))]), ""]
    if speech_curve:
        steps = thin(list(speech_curve))
        card += ["Validation speech (10 clips of 4 s, held-out speakers; `train_reference.py follow`):", "",
                 _row(["step", *steps]), "|---|" + "---|" * len(steps)]
        card += [_row([metric, *(f"{speech_curve[k][metric]:.3f}" for k in steps)])
                 for metric in ("log_mel", "pesq_wb", "stoi")]
        card.append("")
    if quality:
        card += ["## Held-out evaluation", "", f"`tinycodec eval` on the test split (full numbers in `{eval_json}`):",
                 "", *quality]
    if notes.strip():
        card += ["## Notes", "", notes.strip(), ""]
    return "\n".join(card).rstrip() + "\n"
