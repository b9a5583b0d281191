"""Evaluation: how good a codec sounds and how many bits it spends, next to Opus and Codec 2.

``evaluate`` (a folder of clips, per clip and per category), ``results`` (what it returns: rows,
means, the JSON file, tables), ``metrics`` (log-mel, MR-STFT,
SI-SDR, PESQ-WB, STOI, codebook usage), ``baselines`` (Opus, Codec 2 through their command-line
tools), ``bitrate`` (nominal, entropy, entropy-coded size, quality against bitrate),
``plotting`` (the chapters' figures), ``information`` (envelope oracles and a linear probe: how much
of the spectrum the codes carry), ``int8_quality`` (a deployed model's int8 codes against its float
twin's, as heard), ``oracle`` (oracle decodes: where the quality goes), ``provenance`` (which weights
a results JSON measured) and ``clips`` (the clip loader every other module uses).
Submodules are imported on demand: ``import tinycodec.eval`` loads nothing heavy.

Notebook: book/05_bitrate.md
"""
