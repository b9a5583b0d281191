"""tinycodec: tiny neural audio codecs, encoder on a microcontroller, decoder on a server.

The top-level names are imported lazily so that ``import tinycodec`` stays light
(no matplotlib, no jupyter, and no model code until a model is asked for).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it; add a line here for every public entry point
_LAZY = {
    # audio I/O and data (book/01_data.md)
    "AudioError": "tinycodec.audio",
    "resample": "tinycodec.audio",
    "mel_spectrogram": "tinycodec.audio",
    "log_mel": "tinycodec.audio",
    "AudioFolder": "tinycodec.data.folder",
    "TensorCorpus": "tinycodec.data.tensorcorpus",
    "synth_nature": "tinycodec.data.synth",
    "active_excerpt": "tinycodec.excerpt",
    # models and quantization (book/02_architecture.md, book/03_quantization.md)
    "SoundStream": "tinycodec.models",
    "TinyStream": "tinycodec.models",
    "CodecConfig": "tinycodec.models",
    "SoundStreamConfig": "tinycodec.models",
    "TinyStreamConfig": "tinycodec.models",
    "summary": "tinycodec.summary",
    "summary_table": "tinycodec.summary",
    # bitstream, entropy coding, metrics (book/05_bitrate.md)
    "evaluate": "tinycodec.evaluate",
    "EvalResult": "tinycodec.evaluate",
    "nominal_bitrate": "tinycodec.bitrate",
    "bitrate_table": "tinycodec.bitrate",
    "codebook_entropy": "tinycodec.bitrate",
    "entropy_coded_size": "tinycodec.bitrate",
    "quality_vs_bitrate": "tinycodec.bitrate",
    "BitstreamError": "tinycodec.bitstream",
    "encode_bytes": "tinycodec.bitstream",
    "decode_bytes": "tinycodec.bitstream",
    "weights_hash": "tinycodec.bitstream",
    "EntropyTables": "tinycodec.entropy",
    "fit_tables": "tinycodec.entropy",
    "empirical_entropy": "tinycodec.entropy",
    "si_sdr": "tinycodec.metrics",
    "log_mel_distance": "tinycodec.metrics",
    "multi_resolution_stft_distance": "tinycodec.metrics",
    "pesq_wb": "tinycodec.metrics",
    "stoi": "tinycodec.metrics",
    "codebook_usage": "tinycodec.metrics",
    "run_baseline": "tinycodec.baselines",
    # shipped models and model specs (tinycodec/pretrained)
    "load_pretrained": "tinycodec.pretrained",
    "list_pretrained": "tinycodec.pretrained",
    "load_model": "tinycodec.pretrained",
    # streaming pipeline (book/06_streaming.md)
    "stream": "tinycodec.streaming",
    "stream_to_tensor": "tinycodec.streaming",
    # streaming codec API (book/06_streaming.md)
    "TinyCodec": "tinycodec.codec",
    "TinyTransformerCodec": "tinycodec.models",
    # training (book/04_training.md)
    "train": "tinycodec.train",
    "TrainConfig": "tinycodec.train",
    "load_checkpoint": "tinycodec.train",
    "export_weights": "tinycodec.train",
    # export (book/07_deployment.md)
    "EncoderExport": "tinycodec.export.encoder",
    "export_onnx": "tinycodec.export.onnx",
    "check_onnx": "tinycodec.export.onnx",
    "quantize_int8": "tinycodec.export.ptq",
    "export_espdl": "tinycodec.export.espdl",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tinycodec' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: the next lookup skips __getattr__
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = ["__version__", *_LAZY]
