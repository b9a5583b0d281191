/* The spectral encoder's frontend: int16 PCM -> int8 log power spectrum, per frame a windowed
 * fixed-point FFT and a table log2. Twins of fft_int / log_spectrum in tinycodec/modules/int8_spectrum.py:
 * the same integers, every table and constant from the generated model header (tc_spectrum_t).
 *
 * Per frame of n = n_fft samples:
 *   window    w_i = (x_i hann_i + 2^14) >> 15                         (int32)
 *   FFT       radix-2 decimation in time on the bit-reversed w (imaginary part 0): log2 n stages
 *             of butterflies a +- b w_k, b w_k rounded once per component,
 *             (br wr - bi wi + 2^29) >> 30, (br wi + bi wr + 2^29) >> 30 (int64 products, Q30
 *             twiddles), no scaling between stages (int16 input grows to at most 2^15 n: int32)
 *   power     p = re^2 + im^2 (int64) for bins 0 .. n / 2, v = p + F
 *   log       L = (m << 16) + log_lut[(v >> (m - 8)) - 256], m = floor(log2 v)   (v >= F >= 256)
 *   output    q = sat8((A L + B) >> 30)                               (int64, arithmetic shift)
 *
 * Shortcuts that keep every integer: a twiddle (2^30, 0) gives b w = b exactly and (0, -2^30)
 * gives (bi, -br) exactly (the rounding half is below one unit), so when the tables hold those
 * values at k = 0 and k = n / 4 (spectrum_tables always does; checked per call;
 * -DTC_FFT_NO_SHORTCUTS turns this off for the tests) those butterflies skip their multiplies,
 * and the first two stages on the real input become one add/sub pass fused with the windowed
 * bit-reversed load. Plain C99 with int64 sums; on Arm DSP cores the other butterflies are an
 * SMLAL assembly loop (the same integers; the FFT stages of tiny_stft take 21% fewer instructions).
 * `>>` on a negative int64 must be arithmetic, like everywhere in this library.
 */
#include "tc_internal.h"

#define TC_TW_ONE ((int32_t)1 << 30) /* 1.0 in the Q30 twiddles */
#define TC_TW_HALF ((int64_t)1 << 29)

/* 1 when the butterflies at k = 0 and k = n / 4 may skip their multiplies (see the top) */
static int fft_trivial_twiddles(int n, const int32_t *tw_re, const int32_t *tw_im)
{
#ifdef TC_FFT_NO_SHORTCUTS /* tests: every butterfly multiplies */
    (void)n;
    (void)tw_re;
    (void)tw_im;
    return 0;
#else
    return tw_re[0] == TC_TW_ONE && tw_im[0] == 0 && tw_re[n / 4] == 0 && tw_im[n / 4] == -TC_TW_ONE;
#endif
}

/* the butterflies (k, k + half), (k + span, k + span + half), ... of one stage with twiddle (wr, wi):
 * b w = ((br wr - bi wi + 2^29) >> 30, (br wi + bi wr + 2^29) >> 30), int64 sums */
static void fft_butterflies(int32_t *restrict re, int32_t *restrict im, int n, int half, int k, int32_t wr,
                            int32_t wi)
{
    const int span = 2 * half;
#if TC_USE_DSP
    /* 29 instructions a butterfly, no spills: each product sum is two SMLAL on a 2^29 start, the
     * >> 30 of the 64-bit sum is (lo >> 30) | (hi << 2); x is loaded into the registers of b */
    int32_t *pr = re + k, *pi = im + k, br, bi, lo, hi, t;
    const int32_t *end = re + n;
    __asm volatile("1:\n\t"
                   "ldr %[br], [%[pr], %[h4]]\n\t"
                   "ldr %[bi], [%[pi], %[h4]]\n\t"
                   "mov %[lo], #0x20000000\n\t"
                   "mov %[hi], #0\n\t"
                   "smlal %[lo], %[hi], %[br], %[wr]\n\t"
                   "rsb %[t], %[bi], #0\n\t"
                   "smlal %[lo], %[hi], %[t], %[wi]\n\t"
                   "lsr %[lo], %[lo], #30\n\t"
                   "orr %[t], %[lo], %[hi], lsl #2\n\t" /* t = tr */
                   "mov %[lo], #0x20000000\n\t"
                   "mov %[hi], #0\n\t"
                   "smlal %[lo], %[hi], %[br], %[wi]\n\t"
                   "smlal %[lo], %[hi], %[bi], %[wr]\n\t"
                   "lsr %[lo], %[lo], #30\n\t"
                   "orr %[lo], %[lo], %[hi], lsl #2\n\t" /* lo = ti */
                   "ldr %[br], [%[pr]]\n\t"              /* xr */
                   "ldr %[bi], [%[pi]]\n\t"              /* xi */
                   "add %[hi], %[br], %[t]\n\t"
                   "sub %[br], %[br], %[t]\n\t"
                   "str %[br], [%[pr], %[h4]]\n\t"
                   "str %[hi], [%[pr]]\n\t"
                   "add %[hi], %[bi], %[lo]\n\t"
                   "sub %[bi], %[bi], %[lo]\n\t"
                   "str %[bi], [%[pi], %[h4]]\n\t"
                   "str %[hi], [%[pi]]\n\t"
                   "add %[pr], %[pr], %[s4]\n\t"
                   "add %[pi], %[pi], %[s4]\n\t"
                   "cmp %[pr], %[end]\n\t"
                   "blo 1b"
                   : [pr] "+r"(pr), [pi] "+r"(pi), [br] "=&r"(br), [bi] "=&r"(bi), [lo] "=&r"(lo), [hi] "=&r"(hi),
                     [t] "=&r"(t)
                   : [end] "r"(end), [h4] "r"(4 * half), [s4] "r"(4 * span), [wr] "r"(wr), [wi] "r"(wi)
                   : "cc", "memory");
#else
    for (int j = k; j < n; j += span) {
        const int32_t br = re[j + half], bi = im[j + half];
        const int32_t tr = (int32_t)((TC_TW_HALF + (int64_t)br * wr - (int64_t)bi * wi) >> 30);
        const int32_t ti = (int32_t)((TC_TW_HALF + (int64_t)br * wi + (int64_t)bi * wr) >> 30);
        const int32_t xr = re[j], xi = im[j];
        re[j] = xr + tr;
        re[j + half] = xr - tr;
        im[j] = xi + ti;
        im[j + half] = xi - ti;
    }
#endif
}

/* the butterflies of fft_butterflies with w = 1 (minus_i 0: b w = b) or w = -i (minus_i 1: b w =
 * (bi, -br)), exact without multiplies */
static void fft_butterflies_trivial(int32_t *restrict re, int32_t *restrict im, int n, int half, int k,
                                    int minus_i)
{
    const int span = 2 * half;
    for (int j = k; j < n; j += span) {
        const int32_t xr = re[j], xi = im[j], br = re[j + half], bi = im[j + half];
        const int32_t tr = minus_i ? bi : br, ti = minus_i ? -br : bi;
        re[j] = xr + tr;
        im[j] = xi + ti;
        re[j + half] = xr - tr;
        im[j + half] = xi - ti;
    }
}

/* The radix-2 stages of half-size `half` and up on data already in bit-reversed order; stage
 * `half` uses the twiddles tw[k n / (2 half)], k < half. */
static void fft_stages(int32_t *re, int32_t *im, int n, const int32_t *tw_re, const int32_t *tw_im, int half,
                       int trivial)
{
    for (; half < n; half *= 2) {
        const int step = n / (2 * half);
        int k = 0;
        if (trivial) {
            fft_butterflies_trivial(re, im, n, half, 0, 0);
            if (half >= 2)
                fft_butterflies_trivial(re, im, n, half, half / 2, 1);
            k = 1;
        }
        for (; k < half; k++)
            if (!trivial || 2 * k != half)
                fft_butterflies(re, im, n, half, k, tw_re[k * step], tw_im[k * step]);
    }
}

/* the bit-reversed successor of r for an index step of n / (2 bit): add `bit` with the carry
 * running towards the low bits */
static inline unsigned fft_rev_next(unsigned r, unsigned bit)
{
    while (r & bit) {
        r ^= bit;
        bit >>= 1;
    }
    return r | bit;
}

void tc_fft_int(int32_t *re, int32_t *im, int n, const int32_t *tw_re, const int32_t *tw_im)
{
    /* bit-reversed load in place: swap each pair (i, rev i) once */
    unsigned r = 0;
    for (int i = 0; i < n; i++) {
        if ((int)r > i) {
            int32_t t = re[i];
            re[i] = re[r];
            re[r] = t;
            t = im[i];
            im[i] = im[r];
            im[r] = t;
        }
        if (i + 1 < n)
            r = fft_rev_next(r, (unsigned)n >> 1);
    }
    fft_stages(re, im, n, tw_re, tw_im, 1, fft_trivial_twiddles(n, tw_re, tw_im));
}

/* the window: (x h + 2^14) >> 15 (fits int32: |x h| < 2^30) */
#define TC_WIN(i) (((int32_t)x[i] * hann[i] + ((int32_t)1 << 14)) >> 15)

/* One frame: windowed bit-reversed load (+ the first two stages when the twiddles allow), the
 * remaining stages. re, im: [n] work rows. */
static void spectrum_fft(const int16_t *x, int n, const tc_spectrum_t *spec, int32_t *re, int32_t *im)
{
    const int16_t *hann = spec->hann;
    if (fft_trivial_twiddles(n, spec->tw_re, spec->tw_im)) {
        /* positions 4j .. 4j+3 load samples rev(4j) + {0, n/2, n/4, 3n/4}; stage 1 (w = 1) and
         * stage 2 (w = 1, -i) on real values: (a0 + a1) +- (a2 + a3), (a0 - a1) -+ i (a2 - a3) */
        const unsigned q = (unsigned)n / 4, h = (unsigned)n / 2;
        unsigned r = 0;
        for (int i = 0; i < n; i += 4) {
            const int32_t a0 = TC_WIN(r), a1 = TC_WIN(r + h), a2 = TC_WIN(r + q), a3 = TC_WIN(r + h + q);
            const int32_t s0 = a0 + a1, d0 = a0 - a1, s1 = a2 + a3, d1 = a2 - a3;
            re[i] = s0 + s1;
            im[i] = 0;
            re[i + 1] = d0;
            im[i + 1] = -d1;
            re[i + 2] = s0 - s1;
            im[i + 2] = 0;
            re[i + 3] = d0;
            im[i + 3] = d1;
            if (i + 4 < n)
                r = fft_rev_next(r, (unsigned)n >> 3);
        }
        fft_stages(re, im, n, spec->tw_re, spec->tw_im, 4, 1);
        return;
    }
    unsigned r = 0;
    for (int i = 0; i < n; i++) {
        re[i] = TC_WIN(r);
        im[i] = 0;
        if (i + 1 < n)
            r = fft_rev_next(r, (unsigned)n >> 1);
    }
    fft_stages(re, im, n, spec->tw_re, spec->tw_im, 1, 0);
}
#undef TC_WIN

/* floor(log2 v) for v > 0 */
static inline int spectrum_log2_floor(uint64_t v)
{
    const uint32_t hi = (uint32_t)(v >> 32), lo = (uint32_t)v;
#if defined(__GNUC__) || defined(__clang__)
    return hi ? 63 - __builtin_clz(hi) : 31 - __builtin_clz(lo);
#else
    int m = hi ? 32 : 0;
    for (uint32_t t = hi ? hi : lo; t > 1; t >>= 1)
        m++;
    return m;
#endif
}

/* v >> s for 0 <= s < 64 as 32-bit word shifts (no 64-bit shift by a variable: no libgcc call) */
static inline uint32_t spectrum_shift(uint64_t v, int s)
{
    const uint32_t hi = (uint32_t)(v >> 32), lo = (uint32_t)v;
    if (s >= 32)
        return hi >> (s - 32);
    return s ? (lo >> s) | (hi << (32 - s)) : lo;
}

void tc_log_spectrum(const int16_t *x, int n_fft, int hop, const tc_spectrum_t *spec, int t_out, int c_out,
                     int32_t *work, int8_t *y)
{
    const int bins = n_fft / 2 + 1;
    int32_t *re = work, *im = work + n_fft;
    const int32_t *lut = spec->log_lut;
    const int64_t log_floor = spec->log_floor, a = spec->a, b = spec->b;
    for (int f = 0; f < t_out; f++, x += hop, y += c_out) {
        spectrum_fft(x, n_fft, spec, re, im);
        for (int k = 0; k < bins; k++) {
            const uint64_t v = (uint64_t)((int64_t)re[k] * re[k] + (int64_t)im[k] * im[k] + log_floor);
            const int m = spectrum_log2_floor(v);
            const int32_t l = (int32_t)((uint32_t)m << 16) + lut[spectrum_shift(v, m - 8) - 256];
            const int64_t q = (a * l + b) >> 30;
            y[k] = (int8_t)(q > 127 ? 127 : (q < -128 ? -128 : q));
        }
        for (int k = bins; k < c_out; k++)
            y[k] = 0;
    }
}
