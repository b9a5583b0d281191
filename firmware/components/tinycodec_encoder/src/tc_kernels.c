/* Int8 kernels of the TinyStream encoder; twins of tinycodec/export/int8.py (same names).
 *
 * Layout: activations are time-major [T][C]. Accumulators are int32 (the Python reference
 * asserts they cannot overflow for the exported model). `>>` on a negative int32 must be an
 * arithmetic shift (true for GCC, Clang and Xtensa GCC; tinycodec_encoder_init checks it).
 * On Arm cores with the DSP extension (Cortex-M4/M7/M33) pointwise and rvq_search use dual
 * 16-bit MACs (SMLAD); the sums are the same integers, only faster.
 */
#include "tinycodec_encoder.h"

#include <string.h>

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && !defined(TC_PORTABLE)
#include <arm_acle.h>
#define TC_USE_DSP 1
static inline uint32_t tc_load32(const void *p) { uint32_t v; memcpy(&v, p, 4); return v; }
/* SXTB16 of bytes 1 and 3 in one instruction (ACLE has no rotate operand) */
static inline uint32_t tc_sxtb16_ror8(uint32_t x)
{
    uint32_t r;
    __asm("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
#else
#define TC_USE_DSP 0
#endif

/* The VQ residual is stored with dims 1 and 2 of every group of 4 swapped, so that one 32-bit
 * load of it pairs with SXTB16 of 4 codebook bytes: (c0, c2) and (c1, c3). */
/* one tap of a fixed-kernel conv: weight register w<k> times the sample under p, then step */
#define TC_DW_TAP(k) acc += w##k * *p; p += step;

#define TC_RIDX(j) (((j) & ~3) | (((j) & 1) << 1) | (((j) >> 1) & 1))

static inline int8_t requantize_inline(int32_t acc, int shift)
{
    int32_t y;
    if (shift > 0) {
        y = (acc + ((int32_t)1 << (shift - 1))) >> shift; /* round half up */
    } else {
        /* left shift: any |acc| > 128 saturates anyway, and 8 bits of shift saturate any acc != 0 */
        int n = -shift > 8 ? 8 : -shift;
        y = acc > 128 ? 128 : (acc < -129 ? -129 : acc);
        y = y * (1 << n);
    }
#if TC_USE_DSP
    return (int8_t)__ssat(y, 8);
#else
    return (int8_t)(y > 127 ? 127 : (y < -128 ? -128 : y));
#endif
}

int8_t requantize(int32_t acc, int shift) { return requantize_inline(acc, shift); }

void relu(const int8_t *x, int8_t *y, size_t n)
{
    size_t i = 0;
#if TC_USE_DSP
    /* 4 lanes at a time: SSUB8 sets a GE flag per non-negative byte, SEL keeps those bytes */
    for (; i + 4 <= n; i += 4) {
        uint32_t v = tc_load32(x + i), r, zero = 0;
        __asm("ssub8 %0, %1, %2\n\tsel %0, %1, %2" : "=&r"(r) : "r"(v), "r"(zero));
        memcpy(y + i, &r, 4);
    }
#endif
    for (; i < n; i++)
        y[i] = x[i] > 0 ? x[i] : 0;
}

/* the PCM layer (1 input channel, 7 taps): an output channel's taps stay in registers */
static void conv1d_pcm7(const int16_t *x, const int8_t *w, const int32_t *b, int c_out, int stride, int dilation,
                        int t_out, int shift, int8_t *y)
{
    for (int o = 0; o < c_out; o++) {
        int32_t wk[7], bias = b ? b[o] : 0;
        for (int k = 0; k < 7; k++)
            wk[k] = w[o * 7 + k];
        const int32_t w0 = wk[0], w1 = wk[1], w2 = wk[2], w3 = wk[3], w4 = wk[4], w5 = wk[5], w6 = wk[6];
        const int16_t *xt = x;
        int8_t *yo = y + o;
        for (int t = 0; t < t_out; t++, xt += stride, yo += c_out) {
            const int16_t *p = xt;
            const int step = dilation;
            int32_t acc = bias;
            TC_DW_TAP(0) TC_DW_TAP(1) TC_DW_TAP(2) TC_DW_TAP(3) TC_DW_TAP(4) TC_DW_TAP(5) TC_DW_TAP(6)
            *yo = requantize_inline(acc, shift);
        }
    }
}

void conv1d(const int16_t *x, const int8_t *w, const int32_t *b, int c_in, int c_out, int kernel,
            int stride, int dilation, int t_out, int shift, int8_t *y)
{
    if (c_in == 1 && kernel == 7) {
        conv1d_pcm7(x, w, b, c_out, stride, dilation, t_out, shift, y);
        return;
    }
    for (int t = 0; t < t_out; t++) {
        const int16_t *xt = x + (size_t)t * stride * c_in;
        for (int o = 0; o < c_out; o++) {
            int32_t acc = b ? b[o] : 0;
            const int8_t *wo = w + (size_t)o * c_in * kernel;
            for (int i = 0; i < c_in; i++)
                for (int k = 0; k < kernel; k++)
                    acc += (int32_t)wo[i * kernel + k] * xt[k * dilation * c_in + i];
            y[(size_t)t * c_out + o] = requantize_inline(acc, shift);
        }
    }
}

/* Depthwise layers with a fixed kernel: a channel's taps live in scalar registers while the
 * time loop runs, and the taps are read by walking one pointer down the time-major input. */
#define TC_DW_BODY(TAPS)                                                                 \
    const int step = dilation * c, advance = stride * c;                                 \
    for (int ch = 0; ch < c; ch++) {                                                     \
        const int8_t *wc = w + ch * kernel;                                              \
        TC_DW_LOAD_WEIGHTS                                                               \
        const int8_t *xc = x + ch;                                                       \
        int8_t *yc = y + ch;                                                             \
        for (int t = 0; t < t_out; t++, xc += advance, yc += c) {                        \
            const int8_t *p = xc;                                                        \
            int32_t acc = 0;                                                             \
            TAPS                                                                         \
            *yc = requantize_inline(acc, shift);                                         \
        }                                                                                \
    }

static void depthwise3(const int8_t *x, const int8_t *w, int c, int stride, int dilation, int t_out, int shift,
                       int8_t *y)
{
    const int kernel = 3;
#define TC_DW_LOAD_WEIGHTS const int32_t w0 = wc[0], w1 = wc[1], w2 = wc[2];
    TC_DW_BODY(TC_DW_TAP(0) TC_DW_TAP(1) TC_DW_TAP(2))
#undef TC_DW_LOAD_WEIGHTS
}

static void depthwise7(const int8_t *x, const int8_t *w, int c, int stride, int dilation, int t_out, int shift,
                       int8_t *y)
{
    const int kernel = 7;
#define TC_DW_LOAD_WEIGHTS const int32_t w0 = wc[0], w1 = wc[1], w2 = wc[2], w3 = wc[3], w4 = wc[4], \
                                         w5 = wc[5], w6 = wc[6];
    TC_DW_BODY(TC_DW_TAP(0) TC_DW_TAP(1) TC_DW_TAP(2) TC_DW_TAP(3) TC_DW_TAP(4) TC_DW_TAP(5) TC_DW_TAP(6))
#undef TC_DW_LOAD_WEIGHTS
}

static void depthwise8(const int8_t *x, const int8_t *w, int c, int stride, int dilation, int t_out, int shift,
                       int8_t *y)
{
    const int kernel = 8;
#define TC_DW_LOAD_WEIGHTS const int32_t w0 = wc[0], w1 = wc[1], w2 = wc[2], w3 = wc[3], w4 = wc[4], \
                                         w5 = wc[5], w6 = wc[6], w7 = wc[7];
    TC_DW_BODY(TC_DW_TAP(0) TC_DW_TAP(1) TC_DW_TAP(2) TC_DW_TAP(3) TC_DW_TAP(4) TC_DW_TAP(5) TC_DW_TAP(6)
               TC_DW_TAP(7))
#undef TC_DW_LOAD_WEIGHTS
}

void depthwise(const int8_t *x, const int8_t *w, int c, int kernel, int stride, int dilation, int t_out,
               int shift, int8_t *y)
{
    switch (kernel) {
    case 3: depthwise3(x, w, c, stride, dilation, t_out, shift, y); return;
    case 7: depthwise7(x, w, c, stride, dilation, t_out, shift, y); return;
    case 8: depthwise8(x, w, c, stride, dilation, t_out, shift, y); return;
    default: break;
    }
    for (int t = 0; t < t_out; t++) {
        const int8_t *xt = x + (size_t)t * stride * c;
        for (int ch = 0; ch < c; ch++) {
            const int8_t *wc = w + ch * kernel;
            const int8_t *xc = xt + ch;
            int32_t acc = 0;
            for (int k = 0; k < kernel; k++)
                acc += (int32_t)wc[k] * xc[k * dilation * c];
            y[(size_t)t * c + ch] = requantize_inline(acc, shift);
        }
    }
}

static int32_t dot_s8(const int8_t *a, const int8_t *b, int n)
{
    int32_t acc = 0;
    int i = 0;
#if TC_USE_DSP
    for (; i + 4 <= n; i += 4) {
        uint32_t av = tc_load32(a + i), bv = tc_load32(b + i);
        acc = __smlad(__sxtb16(av), __sxtb16(bv), acc);
        acc = __smlad(tc_sxtb16_ror8(av), tc_sxtb16_ror8(bv), acc);
    }
#endif
    for (; i < n; i++)
        acc += (int32_t)a[i] * b[i];
    return acc;
}

void pointwise(const int8_t *x, const int8_t *w, const int32_t *b, int c_in, int c_out, int t, int shift,
               int8_t *y)
{
#if TC_USE_DSP
    /* few input channels: keep the unpacked weights in registers and run down the time axis */
    if (c_in == 8 && (c_out & 1) == 0) {
        for (int o = 0; o < c_out; o += 2) {
            const int8_t *w0 = w + (size_t)o * 8, *w1 = w0 + 8;
            uint32_t v;
            v = tc_load32(w0); const uint32_t a0e = __sxtb16(v), a0o = tc_sxtb16_ror8(v);
            v = tc_load32(w0 + 4); const uint32_t a1e = __sxtb16(v), a1o = tc_sxtb16_ror8(v);
            v = tc_load32(w1); const uint32_t b0e = __sxtb16(v), b0o = tc_sxtb16_ror8(v);
            v = tc_load32(w1 + 4); const uint32_t b1e = __sxtb16(v), b1o = tc_sxtb16_ror8(v);
            const int32_t bias0 = b ? b[o] : 0, bias1 = b ? b[o + 1] : 0;
            const int8_t *xs = x;
            int8_t *ys = y + o;
            for (int s = 0; s < t; s++, xs += 8, ys += c_out) {
                uint32_t x0 = tc_load32(xs), x1 = tc_load32(xs + 4);
                uint32_t x0e = __sxtb16(x0), x0o = tc_sxtb16_ror8(x0), x1e = __sxtb16(x1), x1o = tc_sxtb16_ror8(x1);
                int32_t acc0 = __smlad(x0e, a0e, bias0), acc1 = __smlad(x0e, b0e, bias1);
                acc0 = __smlad(x0o, a0o, acc0);
                acc1 = __smlad(x0o, b0o, acc1);
                acc0 = __smlad(x1e, a1e, acc0);
                acc1 = __smlad(x1e, b1e, acc1);
                acc0 = __smlad(x1o, a1o, acc0);
                acc1 = __smlad(x1o, b1o, acc1);
                ys[0] = requantize_inline(acc0, shift);
                ys[1] = requantize_inline(acc1, shift);
            }
        }
        return;
    }
    if (c_in == 16) {
        for (int o = 0; o < c_out; o++) {
            const int8_t *wo = w + (size_t)o * 16;
            uint32_t v;
            v = tc_load32(wo); const uint32_t a0e = __sxtb16(v), a0o = tc_sxtb16_ror8(v);
            v = tc_load32(wo + 4); const uint32_t a1e = __sxtb16(v), a1o = tc_sxtb16_ror8(v);
            v = tc_load32(wo + 8); const uint32_t a2e = __sxtb16(v), a2o = tc_sxtb16_ror8(v);
            v = tc_load32(wo + 12); const uint32_t a3e = __sxtb16(v), a3o = tc_sxtb16_ror8(v);
            const int32_t bias = b ? b[o] : 0;
            const int8_t *xs = x;
            int8_t *ys = y + o;
            for (int s = 0; s < t; s++, xs += 16, ys += c_out) {
                uint32_t x0 = tc_load32(xs), x1 = tc_load32(xs + 4), x2 = tc_load32(xs + 8), x3 = tc_load32(xs + 12);
                int32_t acc = __smlad(__sxtb16(x0), a0e, bias);
                acc = __smlad(tc_sxtb16_ror8(x0), a0o, acc);
                acc = __smlad(__sxtb16(x1), a1e, acc);
                acc = __smlad(tc_sxtb16_ror8(x1), a1o, acc);
                acc = __smlad(__sxtb16(x2), a2e, acc);
                acc = __smlad(tc_sxtb16_ror8(x2), a2o, acc);
                acc = __smlad(__sxtb16(x3), a3e, acc);
                acc = __smlad(tc_sxtb16_ror8(x3), a3o, acc);
                *ys = requantize_inline(acc, shift);
            }
        }
        return;
    }
#endif
    for (int s = 0; s < t; s++) {
        const int8_t *xs = x + (size_t)s * c_in;
        int8_t *ys = y + (size_t)s * c_out;
        int o = 0;
#if TC_USE_DSP
        if ((c_in & 3) == 0) {
            /* four output channels per pass share the unpacked input */
            for (; o + 4 <= c_out; o += 4) {
                const int8_t *w0 = w + (size_t)o * c_in, *w1 = w0 + c_in, *w2 = w1 + c_in, *w3 = w2 + c_in;
                int32_t a0 = b ? b[o] : 0, a1 = b ? b[o + 1] : 0, a2 = b ? b[o + 2] : 0, a3 = b ? b[o + 3] : 0;
                for (int i = 0; i < c_in; i += 4) {
                    uint32_t xv = tc_load32(xs + i);
                    uint32_t xe = __sxtb16(xv), xo = tc_sxtb16_ror8(xv), v;
                    v = tc_load32(w0 + i);
                    a0 = __smlad(xe, __sxtb16(v), a0);
                    a0 = __smlad(xo, tc_sxtb16_ror8(v), a0);
                    v = tc_load32(w1 + i);
                    a1 = __smlad(xe, __sxtb16(v), a1);
                    a1 = __smlad(xo, tc_sxtb16_ror8(v), a1);
                    v = tc_load32(w2 + i);
                    a2 = __smlad(xe, __sxtb16(v), a2);
                    a2 = __smlad(xo, tc_sxtb16_ror8(v), a2);
                    v = tc_load32(w3 + i);
                    a3 = __smlad(xe, __sxtb16(v), a3);
                    a3 = __smlad(xo, tc_sxtb16_ror8(v), a3);
                }
                ys[o] = requantize_inline(a0, shift);
                ys[o + 1] = requantize_inline(a1, shift);
                ys[o + 2] = requantize_inline(a2, shift);
                ys[o + 3] = requantize_inline(a3, shift);
            }
            for (; o + 2 <= c_out; o += 2) {
                const int8_t *w0 = w + (size_t)o * c_in, *w1 = w0 + c_in;
                int32_t a0 = b ? b[o] : 0, a1 = b ? b[o + 1] : 0;
                for (int i = 0; i < c_in; i += 4) {
                    uint32_t xv = tc_load32(xs + i);
                    uint32_t xe = __sxtb16(xv), xo = tc_sxtb16_ror8(xv);
                    uint32_t v0 = tc_load32(w0 + i), v1 = tc_load32(w1 + i);
                    a0 = __smlad(xe, __sxtb16(v0), a0);
                    a0 = __smlad(xo, tc_sxtb16_ror8(v0), a0);
                    a1 = __smlad(xe, __sxtb16(v1), a1);
                    a1 = __smlad(xo, tc_sxtb16_ror8(v1), a1);
                }
                ys[o] = requantize_inline(a0, shift);
                ys[o + 1] = requantize_inline(a1, shift);
            }
        }
#endif
        for (; o < c_out; o++)
            ys[o] = requantize_inline((b ? b[o] : 0) + dot_s8(xs, w + (size_t)o * c_in, c_in), shift);
    }
}

void residual_add(const int8_t *a, const int8_t *b, size_t n, int shift_a, int shift_b, int shift, int8_t *y)
{
    for (size_t i = 0; i < n; i++)
        y[i] = requantize_inline(((int32_t)a[i] << shift_a) + ((int32_t)b[i] << shift_b), shift);
}

void codebook_norms(const int8_t *codebooks, const int8_t *cb_shifts, int n_q, int k, int d, int32_t *norms)
{
    for (int j = 0; j < n_q * k; j++)
        norms[j] = dot_s8(codebooks + (size_t)j * d, codebooks + (size_t)j * d, d) << cb_shifts[j / k];
}

/* r . c for the permuted int16 residual r and an int8 codeword c */
static int32_t dot_residual(const int16_t *r, const int8_t *c, int d)
{
    int32_t acc = 0;
#if TC_USE_DSP
    if ((d & 3) == 0) {
        for (int j = 0; j < d; j += 4) {
            uint32_t cv = tc_load32(c + j);
            acc = __smlad(tc_load32(r + j), __sxtb16(cv), acc);
            acc = __smlad(tc_load32(r + j + 2), tc_sxtb16_ror8(cv), acc);
        }
        return acc;
    }
#endif
    for (int j = 0; j < d; j++)
        acc += (int32_t)r[TC_RIDX(j)] * c[j];
    return acc;
}

void rvq_search(const int8_t *z, const int8_t *codebooks, const int32_t *norms, int n_q, int k, int d,
                int z_shift, const int8_t *cb_shifts, int16_t *residual, uint16_t *codes)
{
    for (int j = 0; j < d; j++)
        residual[TC_RIDX(j)] = (int16_t)((int32_t)z[j] << z_shift);
    for (int q = 0; q < n_q; q++) {
        const int8_t *cb = codebooks + (size_t)q * k * d;
        const int32_t *nq = norms + (size_t)q * k; /* ||c||^2 << s, see codebook_norms */
        int s = cb_shifts[q];
        /* ||r - (c << s)||^2 = ||r||^2 + 2^s ((||c||^2 << s) - 2 r.c): the same argmin */
        int64_t best = INT64_MAX;
        int best_k = 0, i = 0;
#if TC_USE_DSP
        if ((d & 3) == 0) {
            for (; i + 2 <= k; i += 2) { /* two codewords share each residual load */
                const int8_t *c0 = cb + (size_t)i * d, *c1 = c0 + d;
                int32_t a0 = 0, a1 = 0;
#pragma GCC unroll 4
                for (int j = 0; j < d; j += 4) {
                    uint64_t r; /* one LDRD: (r0, r2) and (r1, r3) of the permuted residual */
                    memcpy(&r, residual + j, 8);
                    uint32_t r02 = (uint32_t)r, r13 = (uint32_t)(r >> 32);
                    uint32_t v0 = tc_load32(c0 + j), v1 = tc_load32(c1 + j);
                    a0 = __smlad(r02, __sxtb16(v0), a0);
                    a0 = __smlad(r13, tc_sxtb16_ror8(v0), a0);
                    a1 = __smlad(r02, __sxtb16(v1), a1);
                    a1 = __smlad(r13, tc_sxtb16_ror8(v1), a1);
                }
                int64_t s0 = (int64_t)nq[i] - 2 * (int64_t)a0, s1 = (int64_t)nq[i + 1] - 2 * (int64_t)a1;
                if (s0 < best) { best = s0; best_k = i; } /* strict: ties keep the lowest index */
                if (s1 < best) { best = s1; best_k = i + 1; }
            }
        }
#endif
        for (; i < k; i++) {
            int64_t score = (int64_t)nq[i] - 2 * (int64_t)dot_residual(residual, cb + (size_t)i * d, d);
            if (score < best) {
                best = score;
                best_k = i;
            }
        }
        codes[q] = (uint16_t)best_k;
        const int8_t *c = cb + (size_t)best_k * d;
        for (int j = 0; j < d; j++)
            residual[TC_RIDX(j)] = (int16_t)(residual[TC_RIDX(j)] - ((int32_t)c[j] << s));
    }
}
