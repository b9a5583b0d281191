"""tinycodec.eval.int8_quality: a deployed model's int8 codes against its float twin's, as heard."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tinycodec.eval.int8_quality import path_quality
from tinycodec.eval.metrics import log_mel_distance
from tinycodec.pretrained import load_pretrained


def test_path_quality_scores_the_device_codes_and_the_float_codes():
    model = load_pretrained("ultra_tiny")  # int8-exact SEANet encoder
    wav = 0.1 * torch.randn(1, 1, 32 * 256, generator=torch.Generator().manual_seed(0))  # whole frames
    q = path_quality(model, [SimpleNamespace(wav=wav, category="nature")])
    with torch.no_grad():
        mcu = model.decode(model.encode(wav), length=wav.shape[-1])[0, 0]
        float_codes = model.quantizer.encode(model.encoder.float_encoder(wav))
    assert q["mcu"]["nature"] == {"log_mel": pytest.approx(log_mel_distance(wav[0, 0], mcu, 16000), abs=1e-4),
                                  "n_clips": 1}
    agreement = (model.encode(wav) == float_codes).double().mean(-1)[0]
    assert q["code_agreement_float_vs_mcu"] == pytest.approx(agreement.tolist(), abs=1e-4)
    assert len(q["code_agreement_float_vs_mcu"]) == model.num_quantizers and set(q) == {"mcu", "float",
                                                                                         "code_agreement_float_vs_mcu"}
