"""The spectral encoder's frontend in integers: int16 PCM -> int8 log power spectrum.

The int8 reference (:mod:`tinycodec.export.int8`, numpy: :func:`log_spectrum`), the int8-exact
model (:mod:`tinycodec.modules.int8_exact`, torch: :func:`log_spectrum_torch`) and the C firmware (``tc_log_spectrum`` and ``tc_fft_int`` in
``firmware/components/tinycodec_encoder/src/tc_spectrum.c``) all compute these integers. Per frame:
a Q15 Hann window, a radix-2 FFT in int32 with Q30 twiddles (one rounding per butterfly product, no
scaling: the values grow by at most ``n_fft``), the power in int64 and ``log2`` by the leading bit
plus a 256-entry table, mapped affinely to int8. Only integer operations, so every platform agrees
bit for bit; the tables are computed here once (:func:`spectrum_tables`) and exported, never
recomputed on the device.

Notebook: book/07_deployment.md
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

INT32_MAX = 2**31 - 1


def check_int32(acc: np.ndarray, what: str) -> None:
    """Raise OverflowError when an accumulator of the int8 arithmetic leaves int32."""
    if acc.size and (acc.max() > INT32_MAX or acc.min() < -INT32_MAX - 1):
        raise OverflowError(f"{what}: int32 accumulator overflow (max |acc| = {np.abs(acc).max()})")


HANN_BITS = 15  # window: int16, w * 2**15 (1.0 clamped to 32767)
TWIDDLE_BITS = 30  # FFT twiddles: int32, e**(-2 pi i k / N) * 2**30
LOG_BITS = 16  # log2 in Q16: floor(log2 v) * 2**16 + LUT[next LOG_LUT_BITS bits of v]
LOG_LUT_BITS = 8
AFFINE_BITS = 30  # the log -> int8 map: q = (A * L + B) >> 30, A and B int64


@lru_cache(maxsize=8)
def spectrum_tables(n_fft: int) -> dict[str, np.ndarray]:
    """The fixed tables of :func:`log_spectrum` for an ``n_fft``-point frame (a power of two):
    ``hann`` int16 [N] (periodic), ``tw_re`` / ``tw_im`` int32 [N / 2] and ``log_lut`` int32
    [2**LOG_LUT_BITS] = ``log2(1 + (i + 0.5) / 256)`` in Q16 (the middle of each mantissa bin).
    The C export writes exactly these arrays, so both sides read the same integers."""
    if n_fft < 4 or n_fft & (n_fft - 1):
        raise ValueError(f"the int8 spectral frontend needs a power-of-two FFT size, got {n_fft}")
    n = np.arange(n_fft, dtype=np.float64)
    hann = np.minimum(np.round((0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)) * 2.0**HANN_BITS), 2**HANN_BITS - 1)
    k = np.arange(n_fft // 2, dtype=np.float64)
    lut = np.log2(1.0 + (np.arange(2**LOG_LUT_BITS) + 0.5) / 2**LOG_LUT_BITS)
    tables = {"hann": hann.astype(np.int16),
              "tw_re": np.round(np.cos(2 * np.pi * k / n_fft) * 2.0**TWIDDLE_BITS).astype(np.int32),
              "tw_im": np.round(-np.sin(2 * np.pi * k / n_fft) * 2.0**TWIDDLE_BITS).astype(np.int32),
              "log_lut": np.round(lut * 2.0**LOG_BITS).astype(np.int32)}
    for t in tables.values():
        t.flags.writeable = False
    return tables


def spectrum_affine(n_fft: int, e_y: int, log_floor: float, log_shift: float, log_scale: float) -> tuple[int, int, int]:
    """Integer constants ``(F, A, B)`` of :func:`log_spectrum` for the float feature
    ``(ln(p + log_floor) + log_shift) / log_scale`` at output exponent ``e_y``.

    The integer spectrum is ``X_int = 2**(15 + log2(N) - 1) X`` (int16 PCM, a Q15 window whose
    sum is ``N / 2``), so ``p_int = 2**c p`` with ``c = 2 (14 + log2 N)``; ``F = round(log_floor
    2**c)`` is the floor in those units and ``q = (A L + B) >> AFFINE_BITS`` with ``L`` the Q16
    ``log2(p_int + F)``: ``A = ln2 2**(e_y + AFFINE_BITS - LOG_BITS) / log_scale``, ``B`` the rest
    plus the rounding half."""
    c = 2 * (14 + int(np.log2(n_fft)))
    scale = 2.0**e_y / log_scale
    floor_int = int(round(log_floor * 2.0**c))
    a = int(round(np.log(2.0) * scale * 2.0 ** (AFFINE_BITS - LOG_BITS)))
    b = int(round((log_shift - c * np.log(2.0)) * scale * 2.0**AFFINE_BITS)) + (1 << (AFFINE_BITS - 1))
    if floor_int < 2**LOG_LUT_BITS:
        raise ValueError(f"log floor {log_floor} is below the integer spectrum's resolution")
    return floor_int, a, b


def fft_int(re: np.ndarray, im: np.ndarray, tw_re: np.ndarray, tw_im: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """In-order complex FFT of rows [F, N] (int64 holding int32) by radix-2 decimation in time:
    bit-reversed load, then ``log2 N`` stages of butterflies ``a +- (b w)`` where ``b w`` is
    rounded once per component: ``(br wr - bi wi + 2**29) >> 30``. No scaling between stages:
    int16 input grows by at most ``N`` (24 bits for N = 512), so int32 holds every value."""
    n = re.shape[-1]
    rev = np.zeros(n, dtype=np.int64)
    bits = n.bit_length() - 1
    for b in range(bits):
        rev |= ((np.arange(n) >> b) & 1) << (bits - 1 - b)
    re, im = re[:, rev], im[:, rev]
    half, rnd = 1, 1 << (TWIDDLE_BITS - 1)
    while half < n:
        wr = tw_re[:: n // (2 * half)][:half].astype(np.int64)
        wi = tw_im[:: n // (2 * half)][:half].astype(np.int64)
        r = re.reshape(-1, n // (2 * half), 2, half)
        i = im.reshape(-1, n // (2 * half), 2, half)
        tr = (r[:, :, 1] * wr - i[:, :, 1] * wi + rnd) >> TWIDDLE_BITS
        ti = (r[:, :, 1] * wi + i[:, :, 1] * wr + rnd) >> TWIDDLE_BITS
        re = np.stack([r[:, :, 0] + tr, r[:, :, 0] - tr], axis=2).reshape(-1, n)
        im = np.stack([i[:, :, 0] + ti, i[:, :, 0] - ti], axis=2).reshape(-1, n)
        half *= 2
    return re, im


def log_spectrum(x: np.ndarray, n_fft: int, hop: int, affine: tuple[int, int, int]) -> np.ndarray:
    """The spectral encoder's frontend in integers: int16 PCM -> int8 log power spectrum.

    Frame ``f`` reads ``x[f hop : f hop + n_fft]``; per frame: window ``(x h + 2**14) >> 15``,
    :func:`fft_int`, power ``re**2 + im**2`` (int64) for bins ``0 .. N / 2``, ``v = p + F``,
    ``L = (m << 16) + log_lut[(v >> (m - 8)) - 256]`` with ``m = floor(log2 v)``, then
    ``sat8((A L + B) >> 30)`` (constants from :func:`spectrum_affine`).

    Args:
        x (ndarray): [..., 1, P + T] int16 values, ``P = n_fft - hop`` history samples first.
        n_fft (int), hop (int): frame and hop sizes.
        affine (tuple): ``(F, A, B)``.

    Returns:
        ndarray: [..., n_fft // 2 + 1, T // hop] int8 values.
    """
    tab = spectrum_tables(n_fft)
    lead, length = x.shape[:-2], x.shape[-1]
    n_out = (length - n_fft) // hop + 1
    idx = np.arange(n_out)[:, None] * hop + np.arange(n_fft)[None, :]
    frames = np.asarray(x, dtype=np.int64).reshape(-1, length)[:, idx].reshape(-1, n_fft)  # [B F, N]
    windowed = (frames * tab["hann"].astype(np.int64) + (1 << (HANN_BITS - 1))) >> HANN_BITS
    re, im = fft_int(windowed, np.zeros_like(windowed), tab["tw_re"], tab["tw_im"])
    check_int32(re, "log_spectrum fft")
    check_int32(im, "log_spectrum fft")
    bins = n_fft // 2 + 1
    floor_int, a, b = affine
    v = re[:, :bins] ** 2 + im[:, :bins] ** 2 + floor_int
    m = np.floor(np.log2(v.astype(np.float64))).astype(np.int64)
    m -= (np.int64(1) << m) > v  # float64 may round v up to the next power of two
    log2_q = (m << LOG_BITS) + tab["log_lut"][(v >> (m - LOG_LUT_BITS)) - (1 << LOG_LUT_BITS)]
    q = np.clip((a * log2_q + b) >> AFFINE_BITS, -128, 127)
    return q.reshape(*lead, n_out, bins).swapaxes(-1, -2)


# -- the same integers in torch (the int8-exact model's inference path) -------------------------
@lru_cache(maxsize=16)
def _torch_tables(n_fft: int, device: str = "cpu") -> dict:
    """:func:`spectrum_tables` as int64 tensors on ``device``; per FFT stage (sub-transforms of
    length ``h`` merged into ``2 h``) the twiddles ``w_k = tw[k N / 2h]``, ``k < h``, as the two
    [2, 1, 1, h] factors of a complex product: ``[w_re, w_re]`` and ``[-w_im, w_im]``."""
    import torch

    tab = spectrum_tables(n_fft)
    stages, half = [], 1
    while half < n_fft:
        wr = torch.from_numpy(tab["tw_re"][:: n_fft // (2 * half)][:half].astype(np.int64))
        wi = torch.from_numpy(tab["tw_im"][:: n_fft // (2 * half)][:half].astype(np.int64))
        identity = bool((wr == 1 << TWIDDLE_BITS).all() and (wi == 0).all())  # (b 2**30 + 2**29) >> 30 == b
        stages.append((torch.stack([wr, wr]).view(2, 1, 1, half).to(device),
                       torch.stack([-wi, wi]).view(2, 1, 1, half).to(device), identity))
        half *= 2
    return {"hann": torch.from_numpy(tab["hann"].astype(np.int64)).to(device), "stages": stages,
            "rnd": torch.tensor([1 << (TWIDDLE_BITS - 1)], device=device),
            "log_lut": torch.from_numpy(tab["log_lut"].astype(np.int64)).to(device)}


def fft_int_torch(re, im, n_fft: int):
    """:func:`fft_int` in torch on rows ``re``, ``im`` [M, N] int64: the same butterflies, the same
    roundings (``(br wr - bi wi + 2**29) >> 30``, ...), hence the same integers.

    The radix-2 decimation in time in Stockham order: after the stage of length ``h`` the rows hold
    the ``N / h`` sub-transforms of length ``h`` of the decimated sequences ``x[r::N/h]`` as
    [2, M, N / h, h]; the next stage merges sub-transform ``r`` (even part) with ``r + N / 2h``
    (odd part): ``E + w O`` and ``E - w O``. No bit reversal and contiguous halves, so every op
    is a plain elementwise one (the same arithmetic as the in-place order of :func:`fft_int`).

    Returns:
        tuple: ``re``, ``im`` [M, N] int64.
    """
    import torch

    tab = _torch_tables(n_fft, str(re.device))
    m = re.shape[0]
    z = torch.stack([re, im]).view(2, m, n_fft, 1)
    for w_same, w_swap, identity in tab["stages"]:
        even, odd = z.chunk(2, dim=2)
        if not identity:  # (o_re w_re - o_im w_im + rnd) >> 30, (o_im w_re + o_re w_im + rnd) >> 30
            odd = torch.addcmul(tab["rnd"], odd, w_same).addcmul_(odd.flip(0), w_swap).bitwise_right_shift_(
                TWIDDLE_BITS)
        z = torch.cat([even + odd, even - odd], dim=-1)
    return z.view(2, m, n_fft).unbind(0)


def log_spectrum_torch(x, n_fft: int, hop: int, affine: tuple[int, int, int]):
    """:func:`log_spectrum` in torch, time-major: ``x`` [B, P + T] int64 PCM (history first) ->
    [B, T // hop, n_fft // 2 + 1] int64 values in [-128, 127], equal to the numpy reference's."""
    import torch

    tab = _torch_tables(n_fft, str(x.device))
    b_size = x.shape[0]
    frames = x.unfold(-1, n_fft, hop)  # [B, F, N]
    n_frames = frames.shape[1]
    windowed = (frames * tab["hann"]).add_(1 << (HANN_BITS - 1)).bitwise_right_shift_(HANN_BITS)
    bins = n_fft // 2 + 1
    re, im = fft_int_torch(windowed.view(-1, n_fft), torch.zeros_like(windowed).view(-1, n_fft), n_fft)
    floor_int, a, b = affine
    re, im = re.narrow(1, 0, bins), im.narrow(1, 0, bins)
    v = (re * re).addcmul_(im, im).add_(floor_int)  # [B F, bins] int64
    m = torch.log2(v.double()).floor_().long()
    m -= ((torch.ones_like(m) << m) > v).long()  # float64 may round v up to the next power of two
    lut = tab["log_lut"][(v >> (m - LOG_LUT_BITS)) - (1 << LOG_LUT_BITS)]
    q = (((m << LOG_BITS) + lut) * a + b).bitwise_right_shift_(AFFINE_BITS).clamp_(-128, 127)
    return q.view(b_size, n_frames, bins)
