"""tinycodec.streaming: hop buffering and the two-thread event pipeline."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tinycodec.pretrained import load_model
from tinycodec.streaming import HopBuffer, StreamTimeout, hop_chunks, stream, stream_to_tensor

ROOT = Path(__file__).resolve().parents[1]
DEMO_CLIP = ROOT / "data" / "demo" / "speech" / "onsen_welcome.wav"


@pytest.fixture(scope="module")
def model():
    return load_model("tiny_mirror")  # undelayed: the stream is the offline decode (delayed: the last test)


def _wav(seconds: float, extra: int = 0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(int(seconds * 16000) + extra, generator=g)


def _offline(model, wav: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.decode(model.encode(wav.view(1, 1, -1)), length=wav.numel())[0, 0]


def _ragged(wav: torch.Tensor, seed: int = 0):
    """Split ``wav`` into chunks of random sizes, like a sound card driver would."""
    rng = np.random.default_rng(seed)
    cuts = np.cumsum(rng.integers(1, 700, size=wav.numel()))
    cuts = cuts[cuts < wav.numel()]
    return list(torch.tensor_split(wav, torch.as_tensor(cuts)))


def _pipeline_threads():
    return [t for t in threading.enumerate() if t.name.startswith("tinycodec-")]


def test_hop_buffer_emits_whole_frames_and_keeps_every_sample():
    rng = np.random.default_rng(0)
    for hop, frames in [(256, 1), (320, 3), (7, 2)]:
        wav = torch.randn(int(rng.integers(1, 5000)))
        buf, out = HopBuffer(hop, frames), []
        for chunk in _ragged(wav, seed=hop):
            for c in buf.push(chunk):
                assert c.numel() == hop * frames
                out.append(c)
        tail, valid = buf.flush()
        assert tail is None or (tail.numel() % hop == 0 and 0 < valid <= tail.numel())
        got = torch.cat(out + ([tail[:valid]] if tail is not None else []))
        assert torch.equal(got, wav)


def test_hop_chunks_respects_max_samples():
    chunks = list(hop_chunks(torch.ones(1000), hop_length=100, sample_rate=16000, max_samples=250))
    assert sum(valid for _, valid in chunks) == 250
    assert all(c.numel() % 100 == 0 for c, _ in chunks)


@pytest.mark.parametrize("chunk_frames", [1, 3])
def test_stream_equals_offline_decode(model, chunk_frames):
    wav = _wav(0.5, extra=37)
    out, done = stream_to_tensor(model, _ragged(wav), chunk_frames=chunk_frames)
    ref = _offline(model, wav)
    assert out.shape == ref.shape == wav.shape
    assert (out - ref).abs().max().item() <= 1e-5
    assert done["chunks"] == math.ceil(math.ceil(wav.numel() / model.hop_length) / chunk_frames)


@pytest.mark.parametrize("spec", ["transformer_tiny", "soundstream_16k"])
def test_stream_equals_offline_for_other_families(spec):
    other = load_model(spec, seed=0)
    wav = _wav(0.25, extra=11)
    out, _ = stream_to_tensor(other, _ragged(wav, seed=1), chunk_frames=2)
    assert (out - _offline(other, wav)).abs().max().item() <= 1e-5


def test_stream_from_wav_path_matches_file_length(model):
    from tinycodec.audio import load

    wav = load(DEMO_CLIP, model.sample_rate)[0].reshape(-1)
    out, done = stream_to_tensor(model, DEMO_CLIP, chunk_frames=4)
    assert out.numel() == wav.numel()
    assert (out - _offline(model, wav)).abs().max().item() <= 1e-5


def test_events_are_in_order_and_report_time_to_first_audio(model):
    events = list(stream(model, _wav(0.3), chunk_frames=2, stats_every=3))
    types = [e["type"] for e in events]
    assert types[-2:] == ["stats", "complete"] and types.count("complete") == 1
    chunk_events = [e for e in events if e["type"] in ("codes", "audio_chunk")]
    for i in range(0, len(chunk_events), 2):  # codes k, then audio_chunk k
        codes, audio = chunk_events[i], chunk_events[i + 1]
        assert (codes["type"], audio["type"]) == ("codes", "audio_chunk")
        assert codes["chunk_num"] == audio["chunk_num"] == i // 2
        assert codes["codes"].shape[:2] == (1, model.num_quantizers) and codes["codes"].shape[2] <= 2
        assert audio["data"].numel() <= 2 * model.hop_length
    assert types.count("stats") >= 2  # periodic and final
    done = events[-1]
    assert 0 < done["time_to_first_audio"] <= done["total_time"]
    assert done["rtf"] == pytest.approx(done["total_time"] / done["audio_seconds"])


def test_bounded_queues_apply_backpressure_to_the_encoder(model):
    queue_size, pulled, ahead = 2, [0], []

    def source():  # counts how far the encoder has read
        for chunk in torch.split(_wav(0.4), model.hop_length):
            pulled[0] += 1
            yield chunk

    for event in stream(model, source(), queue_size=queue_size):
        if event["type"] == "audio_chunk":
            ahead.append(pulled[0] - event["chunk_num"])
            time.sleep(0.01)  # slow consumer (a sound card)
        if event["type"] == "complete":
            done = event
    assert max(done["max_queue_depth"].values()) <= queue_size
    # read-ahead = both queues + one chunk in each thread + the one being consumed
    assert max(ahead) <= 2 * queue_size + 3
    assert len(ahead) == 25


def test_early_close_stops_both_threads(model, caplog):
    gen = stream(model, (torch.zeros(model.hop_length) for _ in range(10_000)), queue_size=2)
    for event in gen:
        if event["type"] == "audio_chunk" and event["chunk_num"] == 2:
            break
    gen.close()  # joins both threads (each within the stream's timeout, or a warning says which did not)
    assert not _pipeline_threads()
    assert "did not stop" not in caplog.text


def test_decoder_exception_surfaces_in_consumer():
    model = load_model("tiny_mirror")
    decode, calls = model.decode, [0]

    def failing_decode(codes, length=None):
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("decoder blew up")
        return decode(codes, length)

    model.decode = failing_decode
    received = []
    with pytest.raises(RuntimeError, match="decoder blew up"):
        for event in stream(model, _wav(1.0), timeout=5.0):
            received.append(event["type"])
    assert received.count("audio_chunk") == 2
    assert not _pipeline_threads()


def test_source_exception_surfaces_in_consumer(model):
    def source():
        yield torch.zeros(model.hop_length * 2)
        raise OSError("microphone unplugged")

    with pytest.raises(OSError, match="microphone unplugged"):
        list(stream(model, source(), timeout=5.0))


def test_stalled_source_times_out_instead_of_hanging(model):
    release, returned = threading.Event(), threading.Event()

    def source():
        yield torch.zeros(model.hop_length)
        release.wait(30.0)  # stalled until the test lets it go: longer than any timeout by construction
        returned.set()
        yield torch.zeros(model.hop_length)

    with pytest.raises(StreamTimeout):
        list(stream(model, source(), timeout=0.3))
    assert not returned.is_set()  # the stream gave up while the source was still stalled
    release.set()  # the stuck source returns, then its thread exits
    for t in _pipeline_threads():
        t.join(timeout=30.0)  # a safety net: the thread ends as soon as its source returns
    assert returned.is_set() and not _pipeline_threads()


def test_max_duration_is_a_hard_limit(model):
    out, done = stream_to_tensor(model, _wav(1.0), max_duration=0.25)
    assert out.numel() == 4000 and done["truncated"]


def test_realtime_pacing_waits_for_the_audio(model):
    out, done = stream_to_tensor(model, _wav(0.25), realtime=True)
    assert done["total_time"] >= 0.25
    assert done["time_to_first_audio"] >= model.hop_length / model.sample_rate


def test_slow_consumer_is_not_a_timeout(model):
    back = threading.Event()

    def source():  # the second chunk comes only once the consumer is back from its long pause
        yield torch.zeros(model.hop_length)
        back.wait(30.0)
        yield torch.zeros(model.hop_length)

    chunks = 0
    for event in stream(model, source(), timeout=0.35):
        if event["type"] == "audio_chunk":
            chunks += 1
            if chunks == 1:
                time.sleep(0.5)  # longer than the timeout, but the pipeline was waiting on us
                back.set()
    assert chunks == 2


def test_a_delayed_decoder_streams_the_offline_audio_late():
    """``tiny`` (its server decoder) lags its codes by one hop: the stream is the offline decode, ``delay`` samples late."""
    server = load_model("tiny")
    d = server.delay
    wav = _wav(1.0, extra=77)
    out, _ = stream_to_tensor(server, wav, chunk_frames=3)
    ref = _offline(server, wav)
    assert out.shape == ref.shape and d == server.hop_length
    assert float((out[d:] - ref[:-d]).abs().max()) <= 1e-4
