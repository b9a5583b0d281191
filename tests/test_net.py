"""tinycodec.streaming.net: loopback TCP packets, loss concealment and model checks."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from tinycodec.audio import load
from tinycodec.pretrained import load_model
from tinycodec.streaming import StreamServer, loopback, send_file
from tinycodec.streaming.net import Concealer, check_loopback

ROOT = Path(__file__).resolve().parents[1]
DEMO_CLIP = ROOT / "data" / "demo" / "speech" / "onsen_thank_you.wav"


@pytest.fixture(scope="module")
def models():
    # device and server are different machines: each holds its own copy of the same weights
    return load_model("tiny", seed=0), load_model("tiny", seed=0)  # shipped weights, or seeded random ones


def _run(server_model, client_model, source=DEMO_CLIP, **client_kwargs):
    """Serve one client in a thread; returns (server result or exception, client stats)."""
    result = {}
    with StreamServer(server_model, "127.0.0.1", 0, timeout=10.0) as server:
        def handle():
            try:
                result["server"] = server.handle_one()
            except Exception as exc:  # noqa: BLE001 - inspected by the test
                result["server"] = exc

        thread = threading.Thread(target=handle, daemon=True)
        thread.start()
        try:
            sent = send_file(source, "127.0.0.1", server.port, client_model, **client_kwargs)
        except OSError as exc:  # the server may hang up first when it refuses the client
            sent = exc
        thread.join(timeout=20.0)
        assert not thread.is_alive()
    return result["server"], sent


def test_lossless_stream_equals_offline_decode(models):
    device, server = models
    wav = load(DEMO_CLIP, device.sample_rate)[0].reshape(-1)
    result, sent = _run(server, device, frames_per_packet=2)
    with torch.no_grad():
        ref = device.decode(device.encode(wav.view(1, 1, -1)), length=wav.numel())[0, 0]
    assert result["wav"].shape == ref.shape
    assert (result["wav"] - ref).abs().max().item() <= 1e-5
    assert result["lost_packets"] == result["concealed_frames"] == 0
    assert result["packets"] == sent["packets"] and result["time_to_first_audio"] > 0


def test_ten_percent_packet_loss_is_concealed(models):
    device, server = models
    wav = load(DEMO_CLIP, device.sample_rate)[0].reshape(-1)
    result, sent = _run(server, device, loss_rate=0.1, seed=0)
    assert sent["dropped"] > 0  # the seeded simulation did drop packets
    assert result["wav"].numel() == wav.numel()
    assert torch.isfinite(result["wav"]).all()
    assert result["lost_packets"] == sent["dropped"]
    assert result["concealed_frames"] == sent["dropped"]  # one frame per packet
    assert sum(n for _, n in result["concealed_spans"]) == sent["dropped"]
    assert result["packets"] + result["lost_packets"] == sent["frames"]


def test_corrupted_packets_fail_crc_and_are_concealed(models):
    device, server = models
    result, sent = _run(server, device, source=torch.zeros(8000), corrupt_rate=0.2, frames_per_packet=3, seed=1)
    assert sent["corrupted"] > 0
    assert result["crc_errors"] == sent["corrupted"]
    assert result["wav"].numel() == 8000


def test_server_refuses_a_client_with_other_weights(models):
    _, server = models
    stranger = load_model("tiny", seed=0)
    with torch.no_grad():  # the same architecture with one weight changed: the weights hash differs
        next(stranger.parameters()).add_(1e-3)
    result, _ = _run(server, stranger, source=torch.zeros(1600))
    assert isinstance(result, ValueError) and "does not match" in str(result)


def test_concealment_decays_to_silence(models):
    model = models[0]
    hop = model.hop_length
    with torch.no_grad(), model.streaming(1):
        cc = Concealer(model, model.num_quantizers, decay=0.5, max_frames=3)
        assert torch.equal(cc.conceal(2), torch.zeros(2 * hop))  # nothing heard yet: silence
        cc.good(torch.randint(0, model.config.codebook_size, (1, model.num_quantizers, 4)))
        wav = cc.conceal(5).view(5, hop)
    assert torch.equal(wav[3:], torch.zeros(2, hop))  # beyond max_frames
    assert cc.concealed == 7


@pytest.mark.parametrize("host", ["0.0.0.0", "8.8.8.8", "example.com"])
def test_only_loopback_addresses(host):
    with pytest.raises(ValueError, match="loopback"):
        check_loopback(host)


def test_loopback_helper_round_trip(models):
    device, server = models
    result, sent = loopback(torch.zeros(3200), server, device, loss_rate=0.3, seed=2)
    assert result["wav"].numel() == 3200 and result["lost_packets"] == sent["dropped"] > 0
