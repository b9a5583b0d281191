"""Stream a WAV file through TinyCodec by overlap-save and write both sides.

The device side encodes a 480-sample window (30 ms) every 240 samples (15 ms) and sends the
integer tokens; the server side decodes the window and keeps its last 240 samples (the first
240 are warm-up): ``tinycodec.streaming.OverlapSave``'s ``encode`` and ``decode``, one hop at a
time. Writes ``original_stream.wav`` and ``reconstructed_stream.wav`` to --out_dir.

    python examples/streaming_example.py
    python examples/streaming_example.py --input my.wav --model runs/ckpt/last.pt --out_dir out/

``--model`` takes what ``TinyCodec(model_path=...)`` takes: a checkpoint, a .safetensors file,
a shipped model name (default: the shipped, trained ``transformer_tiny``), or a preset name
(random weights). See book/06_streaming.md for the streaming state (``run_streaming``), which
equals offline decoding at half the compute.

Notebook: book/06_streaming.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = ROOT / "data" / "demo" / "speech" / "pyannote_sample.wav"
WINDOW, HOP = 480, 240  # 30 ms window, 15 ms hop at 16 kHz


def main(argv: list[str] | None = None) -> int:
    from tinycodec import TinyCodec
    from tinycodec.audio import load
    from tinycodec.streaming import OverlapSave

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", default=str(DEFAULT_INPUT), help="WAV file to stream (resampled to the model's rate)")
    p.add_argument("--model", default=None,
                   help="model spec (default: 'transformer_tiny', the shipped trained model)")
    p.add_argument("--out_dir", default=".", help="where to write original_stream.wav and reconstructed_stream.wav")
    p.add_argument("--seconds", type=float, default=None, help="stream only the first SECONDS of the file")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (one 30 ms window is too small to split)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    codec = TinyCodec(model_path=args.model or "transformer_tiny", device="cpu")
    if WINDOW % codec.hop_length or HOP % codec.hop_length:
        window, hop = 2 * codec.hop_length, codec.hop_length  # keep the windows whole frames
    else:
        window, hop = WINDOW, HOP
    wav, sr = load(args.input, codec.sample_rate)  # [1, T]
    audio = wav[0]
    if args.seconds is not None:
        audio = audio[: int(args.seconds * sr)]
    print(f"{codec}; streaming {audio.numel() / sr:.2f} s with window {window}, hop {hop}")

    streamer = OverlapSave(codec, window, hop)  # past context: zeros before the first sample
    out, n_tokens, t0 = [], 0, time.perf_counter()
    padded = torch.nn.functional.pad(audio, (0, (-audio.numel()) % hop))
    for chunk in padded.split(hop):
        codes = streamer.encode(chunk.reshape(1, 1, hop))  # device side: [1, n_q, F], sent over the wire
        n_tokens += codes.numel()
        out.append(streamer.decode(codes)[0, 0])  # server side: the new hop, the warm-up dropped
    elapsed = time.perf_counter() - t0
    recon = torch.cat(out)[: audio.numel()]

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sf.write(out_dir / "original_stream.wav", audio.numpy(), sr, subtype="PCM_16")
    sf.write(out_dir / "reconstructed_stream.wav", recon.clamp(-1, 1).numpy(), sr, subtype="PCM_16")
    seconds = audio.numel() / sr
    print(f"{len(out)} windows, {n_tokens} tokens sent, RTF {elapsed / seconds:.3f}; "
          f"wrote {out_dir / 'original_stream.wav'} and {out_dir / 'reconstructed_stream.wav'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
