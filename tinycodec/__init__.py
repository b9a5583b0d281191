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
    "active_excerpt": "tinycodec.audio.excerpt",
    # models and quantization (book/02_architecture.md, book/03_quantization.md)
    "SoundStream": "tinycodec.models",
    "TinyStream": "tinycodec.models",
    "CodecConfig": "tinycodec.models",
    "SoundStreamConfig": "tinycodec.models",
    "TinyStreamConfig": "tinycodec.models",
    "summary": "tinycodec.models.summary",
    "summary_table": "tinycodec.models.summary",
    # bitstream, entropy coding, metrics (book/05_bitrate.md)
    "evaluate": "tinycodec.eval.evaluate",
    "EvalResult": "tinycodec.eval.evaluate",
    "nominal_bitrate": "tinycodec.eval.bitrate",
    "bitrate_table": "tinycodec.eval.bitrate",
    "codebook_entropy": "tinycodec.eval.bitrate",
    "entropy_coded_size": "tinycodec.eval.bitrate",
    "quality_vs_bitrate": "tinycodec.eval.bitrate",
    "BitstreamError": "tinycodec.bitstream",
    "encode_bytes": "tinycodec.bitstream",
    "decode_bytes": "tinycodec.bitstream",
    "weights_hash": "tinycodec.bitstream",
    "EntropyTables": "tinycodec.bitstream.entropy",
    "fit_tables": "tinycodec.bitstream.entropy",
    "empirical_entropy": "tinycodec.bitstream.entropy",
    "si_sdr": "tinycodec.eval.metrics",
    "log_mel_distance": "tinycodec.eval.metrics",
    "multi_resolution_stft_distance": "tinycodec.eval.metrics",
    "pesq_wb": "tinycodec.eval.metrics",
    "stoi": "tinycodec.eval.metrics",
    "codebook_usage": "tinycodec.eval.metrics",
    "run_baseline": "tinycodec.eval.baselines",
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
    # training (book/04_training.md); ``tinycodec.train`` is the package, its function is
    # ``tinycodec.train.train`` (a package attribute cannot be a function as well)
    "TrainConfig": "tinycodec.train",
    "load_checkpoint": "tinycodec.pretrained",
    "export_weights": "tinycodec.train",
    # export (book/07_deployment.md)
    "EncoderExport": "tinycodec.export.encoder",
    "export_onnx": "tinycodec.export.onnx",
    "check_onnx": "tinycodec.export.onnx",
    "quantize_int8": "tinycodec.export.onnx_ptq",
    "export_espdl": "tinycodec.export.espdl",
}


# subpackages reachable as attributes before anything imported them
_SUBPACKAGES = ("train",)


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"tinycodec.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tinycodec' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: the next lookup skips __getattr__
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY) + list(_SUBPACKAGES))


__all__ = ["__version__", *_LAZY]
