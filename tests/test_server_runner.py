"""The server decoder's inference path (ServerRunner) equals its modules: offline, streamed in random
chunks, batched across streams, and after its weights change."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import torch

from tinycodec.modules.server_decoder import ServerDecoder
from tinycodec.modules.server_runner import ServerRunner
from tinycodec.pretrained import load_model
from tinycodec.streaming.batch import BatchDecoder

TOL = 1e-5


@pytest.fixture(scope="module")
def flagship():
    return load_model("tinycodec").eval()


@pytest.fixture(scope="module")
def speech_codes(flagship):
    """Codes [1, n_q, 125] of 2 s of loud real speech (7-9 s of the demo clip), from the deployed encoder."""
    from tinycodec.audio import load

    wav, _ = load(Path(__file__).resolve().parents[1] / "data" / "demo" / "speech" / "pyannote_sample.wav", 16000)
    with torch.no_grad():
        return flagship.encode(wav[:, 7 * 16000: 9 * 16000].reshape(1, 1, -1))


def modules_decode(decoder: ServerDecoder, *args, **kw) -> torch.Tensor:
    """The decoder's forward through its modules (the runner switched off)."""
    decoder.use_runner = False
    try:
        return decoder(*args, **kw)
    finally:
        decoder.use_runner = True


def stream(decoder: ServerDecoder, q: torch.Tensor, seed: int, modules: bool = False) -> torch.Tensor:
    """``q`` [B, D, F] decoded in a stream of random chunks of 1-8 frames, then flushed: [B, 1, F hop + delay]."""
    rng, parts, i = random.Random(seed), [], 0
    with decoder.streaming(q.shape[0]):
        while i < q.shape[-1]:
            n = rng.randint(1, 8)
            parts.append(modules_decode(decoder, q[..., i:i + n]) if modules else decoder(q[..., i:i + n]))
            i += n
        parts.append(decoder.flush())
    return torch.cat(parts, -1)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return float((a - b).abs().max())


@torch.no_grad()
def test_flagship_runner_equals_the_modules_on_speech(flagship, speech_codes):
    decoder = flagship.decoder
    q = flagship.quantizer.decode(speech_codes)
    offline = decoder(q, tail=True)
    assert isinstance(decoder.runner(), ServerRunner)
    reference = modules_decode(decoder, q, tail=True)
    assert max_diff(offline, reference) <= TOL
    assert float(reference.abs().max()) > 0.05  # real audio, not silence
    n = q.shape[-1] * flagship.hop_length + flagship.delay
    for seed in range(3):
        assert max_diff(stream(decoder, q, seed), reference[..., :n]) <= TOL
    # the model's own decode (delay removed offline) goes through the runner too
    assert max_diff(flagship.decode(speech_codes), reference[..., flagship.delay: n]) <= TOL


@torch.no_grad()
def test_a_stream_can_switch_paths_at_any_call(flagship, speech_codes):
    """The runner keeps the modules' states (same layout, same fields): a stream started on one path
    goes on on the other, and get/set_streaming_state resumes it exactly."""
    decoder = flagship.decoder
    q = flagship.quantizer.decode(speech_codes[..., :40])
    reference = modules_decode(decoder, q)
    parts = []
    with decoder.streaming(1):
        for i in range(0, 40, 4):
            chunk = q[..., i:i + 4]
            parts.append(modules_decode(decoder, chunk) if (i // 4) % 2 else decoder(chunk))
            if i == 20:
                # the live states, copied: both paths replace a state's tensors, never write into them
                saved = {name: copy.copy(state) for name, state in decoder.get_streaming_state().items()}
                replay = decoder(q[..., 24:28])  # advance, then go back
                decoder.set_streaming_state(saved)
    assert max_diff(torch.cat(parts, -1), reference) <= TOL
    assert max_diff(replay, parts[6]) <= TOL


@pytest.mark.parametrize("n_fft_hops, delay", [(2, 1), (4, 0), (1, 0)])
@torch.no_grad()
def test_small_random_decoder_offline_and_chunked(n_fft_hops, delay):
    torch.manual_seed(0)
    decoder = ServerDecoder(D=12, hop_length=32, dim=24, num_layers=3, n_fft=n_fft_hops * 32, delay=delay).eval()
    for p in decoder.parameters():  # away from the initialisation (gamma, biases at their defaults)
        p.add_(0.1 * torch.randn_like(p))
    q = torch.randn(3, 12, 29)
    reference = modules_decode(decoder, q, tail=True)
    assert max_diff(decoder(q, tail=True), reference) <= TOL
    assert max_diff(decoder(q), modules_decode(decoder, q)) <= TOL
    n = 29 * 32 + decoder.delay
    for seed in range(3):
        assert max_diff(stream(decoder, q, seed), reference[..., :n]) <= TOL
    assert decoder(q[..., :0], tail=True).shape == (3, 1, (n_fft_hops - 1) * 32)


@torch.no_grad()
def test_batched_server_decoder_equals_each_stream_on_the_modules(flagship, speech_codes):
    """BatchDecoder stacks the streams' states and decodes them through the runner; each stream's
    audio equals that stream decoded alone through the modules, with joins and a paused stream."""
    model, hop = flagship, flagship.hop_length
    k, n_q = model.config.codebook_size, model.num_quantizers
    g = torch.Generator().manual_seed(3)
    codes = [speech_codes[0, :, :40]] + [torch.randint(0, k, (n_q, 40), generator=g) for _ in range(2)]
    refs = [modules_decode(model.decoder, model.quantizer.decode(c[None]))[0, 0] for c in codes]
    batch = BatchDecoder(model)
    sids, outs, pos, start = [None] * 3, [[], [], []], [0, 0, 0], [0, 3, 7]
    tick = 0
    while any(p < 40 for p in pos):
        jobs, who = [], []
        for i in range(3):
            if tick >= start[i] and pos[i] < 40 and not (i == 1 and 15 <= tick < 18):
                sids[i] = batch.open() if sids[i] is None else sids[i]
                f = min(1 + (tick + i) % 4, 40 - pos[i])
                jobs.append((sids[i], codes[i][:, pos[i]:pos[i] + f]))
                who.append(i)
        for i, wav in zip(who, batch.decode(jobs)):
            outs[i].append(wav)
            pos[i] += wav.numel() // hop
        tick += 1
    for out, ref in zip(outs, refs):
        assert max_diff(torch.cat(out), ref) <= TOL
    assert model.decoder._runner is not None  # the batched calls took the runner


@torch.no_grad()
def test_runner_follows_weight_changes():
    """In-place updates, a load_state_dict (copy or assign) and a dtype move each rebuild the runner."""
    torch.manual_seed(1)
    decoder = ServerDecoder(D=8, hop_length=16, dim=16, num_layers=2).eval()
    q = torch.randn(1, 8, 10)
    before = decoder(q)
    first = decoder.runner()
    assert decoder.runner() is first  # unchanged weights: the same runner
    decoder.blocks[1].pw2.weight.mul_(3.0)  # in place (version bump)
    after = decoder(q)
    assert decoder.runner() is not first
    assert max_diff(before, after) > 1e-3  # the change shows ...
    assert max_diff(after, modules_decode(decoder, q)) <= TOL  # ... and matches the modules
    other = ServerDecoder(D=8, hop_length=16, dim=16, num_layers=2).eval()
    for assign in (False, True):
        state = {k: v + 0.05 * torch.randn_like(v) for k, v in other.state_dict().items()}
        decoder.load_state_dict(state, assign=assign)
        assert max_diff(decoder(q), modules_decode(decoder, q)) <= TOL
    decoder.double()
    out, reference = decoder(q.double()), modules_decode(decoder, q.double())
    assert out.dtype == reference.dtype == torch.float64
    assert max_diff(out, reference) <= TOL
    decoder.embed.conv.bias = torch.nn.Parameter(torch.ones(16, dtype=torch.float64))  # a new Parameter
    assert max_diff(decoder(q.double()), modules_decode(decoder, q.double())) <= TOL


def test_training_and_gradients_take_the_modules():
    torch.manual_seed(2)
    decoder = ServerDecoder(D=8, hop_length=16, dim=16, num_layers=1)
    q = torch.randn(1, 8, 5)
    assert decoder.train()(q).requires_grad  # training: the modules, with gradients
    assert decoder.eval()(q).requires_grad  # eval with gradients on: the modules
    assert decoder._runner is None
    with torch.no_grad():
        out = decoder(q)
        assert not out.requires_grad and not out.is_inference()
        out.mul_(2.0)  # an ordinary tensor: the caller may write into it
    assert decoder._runner is not None


def test_a_decoder_built_in_inference_mode_runs():
    """Inference tensors keep no version counter: the runner's key reads their storage only."""
    torch.manual_seed(3)
    with torch.inference_mode():
        decoder = ServerDecoder(D=8, hop_length=16, dim=16, num_layers=2).eval()
        q = torch.randn(2, 8, 6)
        assert max_diff(decoder(q), modules_decode(decoder, q)) <= TOL
        assert decoder.runner() is decoder.runner()
