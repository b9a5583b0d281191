"""Deployment: encoder-only export, ONNX, int8 post-training quantization, ESP-DL and C.

Submodules are imported on demand (onnx, onnxruntime and esp-ppq are optional extras):
``tinycodec.export.encoder`` (:class:`EncoderExport`), ``tinycodec.export.onnx``
(``export_onnx``, ``check_onnx``), ``tinycodec.export.ptq`` (int8 static PTQ),
``tinycodec.export.espdl`` (``export_espdl`` via esp-ppq), ``tinycodec.cli.export``.

Notebook: book/07_deployment.md
"""
