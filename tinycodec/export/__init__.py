"""Deployment: the encoder as a graph (ONNX, ESP-DL) or as the int8 firmware (C), and the decoder as ONNX.

Submodules are imported on demand (onnx, onnxruntime and esp-ppq are optional extras):

- The project's own int8 encoder, exact on the device: ``int8_quantize`` (calibrates power-of-two
  exponents and quantizes a float encoder: :func:`~tinycodec.export.int8_quantize.quantize_encoder`),
  ``int8`` (the numpy int8 reference the C firmware mirrors: ``Int8Encoder``), ``int8_prepare``
  (an int8-exact model for quantization-aware fine-tuning, and its snap onto the integer grids),
  ``c_export`` (``tinycodec_model.h`` for the firmware), ``budget`` (flash, SRAM and MACs on a device).
- Graph exports: ``encoder`` (``EncoderExport``: waveform -> codes as one traceable module),
  ``onnx`` (``export_onnx``, ``check_onnx``), ``onnx_int8`` (a deployed int8 encoder as an ONNX graph
  of integer arithmetic: the device's codes), ``onnx_ptq`` (onnxruntime's static int8 quantization
  of the float ONNX graph, measured in codes and sound), ``onnx_decoder`` (the server decoder as ONNX,
  for a browser), ``espdl`` (``export_espdl`` through esp-ppq), ``espdl_sim`` (ESP-DL's integer
  arithmetic simulated), ``espdl_compare`` (esp-ppq's quantization next to ours, layer by layer).
- ``calibration``: the calibration audio, and the recipe that makes an untrained model exportable.

The command line: ``tinycodec.cli.export``. Notebook: book/07_deployment.md
"""
