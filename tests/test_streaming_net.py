"""tinycodec.streaming.net: loopback TCP packets, loss concealment and model checks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tinycodec.audio import load
from tinycodec.pretrained import load_model
from tinycodec.streaming import StreamServer, loopback, send_file
from tinycodec.streaming.net import ProtocolError, check_loopback

ROOT = Path(__file__).resolve().parents[1]
DEMO_CLIP = ROOT / "data" / "demo" / "speech" / "onsen_thank_you.wav"


@pytest.fixture(scope="module")
def models():
    # device and server are different machines: each holds its own copy of the same weights; the mirror
    # decoder streams with no delay, so a lossless stream is the offline decode sample for sample (the
    # delayed server decoder of plain ``tiny`` has its own test below)
    return load_model("tiny_mirror"), load_model("tiny_mirror")


def _run(server_model, client_model, source=DEMO_CLIP, **client_kwargs):
    """Serve one client; returns (server result, client stats)."""
    with StreamServer(server_model, "127.0.0.1", 0, timeout=10.0) as server:
        sent = send_file(source, "127.0.0.1", server.port, client_model, **client_kwargs)
        result = server.next_result(idle_timeout=10.0)
    assert result["error"] is None, result["error"]
    return result, sent


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


def test_a_delayed_decoder_serves_audio_aligned_with_the_input(models):
    """``tiny`` (the server decoder on the device's encoder) lags its codes by one hop; the server
    drops the lag, so what it received lines up with the offline decode up to the held-back end."""
    device, _ = models
    server = load_model("tiny")
    delay = server.delay
    assert delay == server.hop_length
    wav = load(DEMO_CLIP, device.sample_rate)[0].reshape(-1)
    result, _ = _run(server, device, frames_per_packet=2)
    with torch.no_grad():
        ref = server.decode(device.encode(wav.view(1, 1, -1)), length=wav.numel())[0, 0]
    assert result["wav"].shape == ref.shape
    assert (result["wav"][:-delay] - ref[:-delay]).abs().max().item() <= 1e-4


@pytest.mark.parametrize("via", ["server", "loopback_helper"])
def test_ten_percent_packet_loss_is_concealed(models, via):
    """Through a StreamServer and ``send_file``, and through ``loopback``, the helper that wraps them."""
    device, server = models
    wav = load(DEMO_CLIP, device.sample_rate)[0].reshape(-1)
    if via == "server":
        result, sent = _run(server, device, loss_rate=0.1, seed=0)
    else:
        result, sent = loopback(wav, server, device, loss_rate=0.1, seed=0)
    assert result["error"] is None
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


def test_server_refuses_a_client_with_another_encoder(models):
    _, server = models
    stranger = load_model("tiny", seed=0)
    with torch.no_grad():  # the same architecture with one encoder weight changed: the encoder hash differs
        next(stranger.encoder.parameters()).add_(1e-3)
    with pytest.raises(ProtocolError, match="does not match"):
        loopback(torch.zeros(1600), server, stranger)


def test_a_new_decoder_serves_clients_of_the_same_encoder(models):
    device, server = models
    upgraded = load_model("tiny", seed=0)
    with torch.no_grad():  # another decoder, same encoder + codebooks: the hello's encoder hash still matches
        for p in upgraded.decoder.parameters():
            p.mul_(0.5)
    result, _ = loopback(torch.zeros(1600), upgraded, device)
    assert result["wav"].numel() == 1600 and result["error"] is None


def test_concealment_decays_to_silence(models):
    device, server = models
    hop = device.hop_length
    wav = 0.1 * torch.randn(8 * hop, generator=torch.Generator().manual_seed(0))
    # frames 0-1 arrive, 2-6 are lost (packets of 1 frame), 7 arrives
    with StreamServer(server, "127.0.0.1", 0, decay=0.5, max_conceal_frames=3) as srv:
        import socket

        from tinycodec.streaming.protocol import Hello, pack_wire, read_reply, send_frame

        with torch.no_grad():
            codes = device.encode(wav.view(1, 1, -1))[0].numpy()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            send_frame(sock, Hello.for_model(device, device.num_quantizers, 1, wav.numel()).pack())
            read_reply(sock)
            for seq in (0, 1, 7):
                sock.sendall(pack_wire(seq, codes[:, seq:seq + 1], 9, last=seq == 7))
        result = srv.next_result(idle_timeout=5)
    out = result["wav"].view(8, hop)
    assert result["concealed_frames"] == 5 and result["concealed_spans"] == [(2, 5)]
    assert torch.equal(out[5:7], torch.zeros(2, hop))  # beyond max_conceal_frames: silence
    assert out[2:5].abs().amax(1).gt(0).all()  # the first 3 concealed frames repeat the last codes
    assert out[2].abs().max() > out[4].abs().max()  # with a decaying gain


@pytest.mark.parametrize("host", ["0.0.0.0", "8.8.8.8", "example.com"])
def test_only_loopback_addresses(host):
    with pytest.raises(ValueError, match="loopback"):
        check_loopback(host)


def test_idle_server_returns_without_a_traceback(models, capsys):
    from tinycodec.cli import main

    assert main(["serve", "--model", "tiny", "--port", "0", "--timeout", "0.3"]) == 1
    assert "no client within 0.3 s" in capsys.readouterr().out


def test_wire_packets_round_trip_with_five_bytes_of_overhead():
    from tinycodec.bitstream import BitstreamError
    from tinycodec.streaming.protocol import pack_wire, unpack_wire, wire_head, wire_size

    rng = np.random.default_rng(0)
    for frames, n_q in ((1, 4), (3, 5), (128, 1)):
        codes = rng.integers(0, 512, (n_q, frames))
        body = pack_wire(70000 + frames, codes, 9, last=frames == 3)
        assert len(body) == wire_size(frames, n_q, 9) == 5 + math.ceil(frames * n_q * 9 / 8)
        assert wire_head(body[:3]) == ((70000 + frames) % 65536, frames, frames == 3)
        assert np.array_equal(unpack_wire(body[:3], body[3:], n_q, 9), codes)
        damaged = bytearray(body)
        damaged[4] ^= 0x10
        with pytest.raises(BitstreamError, match="CRC"):
            unpack_wire(bytes(damaged[:3]), bytes(damaged[3:]), n_q, 9)
    with pytest.raises(ValueError, match="1..128 frames"):
        pack_wire(0, np.zeros((1, 129), np.int64), 9)


def test_sixteen_bit_sequence_numbers_wrap_and_late_packets_are_dropped():
    from tinycodec.streaming.protocol import Hello, Limits, pack_wire
    from tinycodec.streaming.session import Session

    hello = Hello(16000, 256, 2, 9, 1, 0, bytes(8))
    s = Session(hello, 10**6, Limits(), 256, 16000, 512, sid=0)
    s.expected = 65534  # as if 65534 packets had arrived
    codes = np.zeros((2, 1), np.int64)
    for seq in (65534, 65535, 0, 2):  # wraps; packet 65537 (seq 1) is lost
        body = pack_wire(seq, codes, 9)
        s.receive_wire(body[:3], body[3:])
    late = pack_wire(65535, codes, 9)  # arrives after its frame was concealed
    s.receive_wire(late[:3], late[3:])
    assert s.expected == 65539 and s.stats["lost_packets"] == 1 and s.stats["late"] == 1
    assert s.frames_received == 4 and s.frames_planned == 5


@pytest.mark.parametrize("fpp", [1, 2, 4, 8])
def test_each_frames_per_packet_choice_streams_the_offline_decode(models, fpp):
    from tinycodec.streaming.protocol import wire_size

    device, server = models
    wav = 0.1 * torch.randn(16000 + 100, generator=torch.Generator().manual_seed(fpp))  # 63 frames, a short tail
    result, sent = _run(server, device, source=wav, frames_per_packet=fpp)
    with torch.no_grad():
        ref = device.decode(device.encode(wav.view(1, 1, -1)), length=wav.numel())[0, 0]
    frames = math.ceil(wav.numel() / device.hop_length)
    sizes = [min(fpp, frames - s) for s in range(0, frames, fpp)]
    assert result["packets"] == sent["packets"] == len(sizes) and result["frames_per_packet"] == fpp
    assert sent["bytes"] == sum(wire_size(f, device.num_quantizers, 9) for f in sizes)
    assert (result["wav"] - ref).abs().max().item() <= 1e-5


def test_the_pipeline_counts_what_its_chunks_cost_as_wire_packets(models):
    from tinycodec.streaming import stream_to_tensor
    from tinycodec.streaming.protocol import wire_size

    device, _ = models
    wav = 0.1 * torch.randn(8000, generator=torch.Generator().manual_seed(3))  # 31.25 frames -> 32
    for fpp in (1, 4):
        _, done = stream_to_tensor(device, wav, chunk_frames=fpp)
        sizes = [min(fpp, 32 - s) for s in range(0, 32, fpp)]
        assert done["wire_bytes"] == sum(wire_size(f, device.num_quantizers, 9) for f in sizes)
        assert done["wire_kbps"] == pytest.approx(8e-3 * done["wire_bytes"] / 0.5)


def test_a_backlog_is_decoded_in_power_of_two_chunks_with_the_concealment_gains():
    from tinycodec.streaming.protocol import Hello, Limits, pack_wire
    from tinycodec.streaming.session import Session

    s = Session(Hello(16000, 256, 2, 9, 1, 0, bytes(8)), 1000, Limits(), 256, 16000, 512, sid=0, decay=0.5)
    for seq in (0, 1, 2, 5, 6):  # packets 3 and 4 lost: two concealed frames at gains 0.5, 0.25
        body = pack_wire(seq, np.full((2, 1), seq, np.int64), 9)
        s.receive_wire(body[:3], body[3:])
    codes, gains = s.next_job(16)  # 7 frames queued: the largest power of two is 4
    assert codes.tolist() == [[0, 1, 2, 2]] * 2 and gains.tolist() == [1, 1, 1, 0.5]
    codes, gains = s.next_job(16)
    assert codes.tolist() == [[2, 5]] * 2 and gains.tolist() == [0.25, 1]
    codes, gains = s.next_job(16)
    assert codes.tolist() == [[6]] * 2 and gains is None and s.next_job(16) is None
