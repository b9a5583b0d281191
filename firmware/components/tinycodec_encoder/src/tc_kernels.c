/* Element-wise and convolution kernels of the TinyStream encoder; twins of
 * tinycodec/export/int8.py (`tc_` + the Python name). tc_pointwise lives in tc_pointwise.c,
 * tc_codebook_norms and tc_rvq_search in tc_rvq.c.
 *
 * Layout: activations are time-major [T][C]. Accumulators are int32 (the Python reference
 * asserts they cannot overflow for the exported model). `>>` on a negative int32 must be an
 * arithmetic shift (true for GCC, Clang and Xtensa GCC; tinycodec_encoder_init checks it).
 * On Arm cores with the DSP extension (Cortex-M4/M7/M33) the kernels use dual 16-bit MACs
 * (SMLAD) and saturating instructions: the same integers, fewer instructions.
 */
#include "tc_internal.h"

int8_t tc_requantize(int32_t acc, int shift)
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
    return tc_sat8(y);
}

void tc_relu(const int8_t *x, int8_t *y, size_t n)
{
    size_t i = 0;
#if TC_USE_DSP
    /* 8 lanes a pass: SSUB8 sets a GE flag per non-negative byte, SEL keeps those bytes */
    for (; i + 8 <= n; i += 8) {
        uint32_t v0 = tc_load32(x + i), v1 = tc_load32(x + i + 4), r0, r1, zero = 0;
        __asm("ssub8 %0, %1, %2\n\tsel %0, %1, %2" : "=&r"(r0) : "r"(v0), "r"(zero));
        __asm("ssub8 %0, %1, %2\n\tsel %0, %1, %2" : "=&r"(r1) : "r"(v1), "r"(zero));
        memcpy(y + i, &r0, 4);
        memcpy(y + i + 4, &r1, 4);
    }
#endif
    for (; i < n; i++)
        y[i] = x[i] > 0 ? x[i] : 0;
}

#if TC_USE_DSP
/* (u << s) + v + r >> s == u + ((v + r) >> s), 4 lanes a pass: the shift as s halving adds
 * (SHADD8: floor((x + y) / 2) per byte, the last one adding 1 for the rounding), then QADD8
 * (sat8(u + t) per byte) and, for a fused ReLU, SSUB8 + SEL (keep the non-negative bytes) */
static inline __attribute__((always_inline)) void residual_lanes(const int8_t *u, const int8_t *v, size_t n,
                                                                 const int shift, const int relu, int8_t *y)
{
    const uint32_t zero = 0, one = 0x01010101u;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t t = tc_load32(v + i), out;
        if (shift > 0) {
            for (int k = 1; k < shift; k++)
                t = __shadd8(t, zero);
            t = __shadd8(t, one);
        }
        out = __qadd8(tc_load32(u + i), t);
        if (relu)
            __asm("ssub8 %0, %0, %1\n\tsel %0, %0, %1" : "+r"(out) : "r"(zero));
        memcpy(y + i, &out, 4);
    }
}
#endif

void tc_residual_add(const int8_t *a, const int8_t *b, size_t n, int shift_a, int shift_b, int shift, int relu,
                     int8_t *y)
{
    if (shift < 0) {
        for (size_t i = 0; i < n; i++)
            y[i] = tc_requantize_relu(((int32_t)a[i] << shift_a) + ((int32_t)b[i] << shift_b), shift, relu);
        return;
    }
    size_t i = 0;
#if TC_USE_DSP
    if (n >= 4 && ((shift_b == 0 && shift_a == shift) || (shift_a == 0 && shift_b == shift))) {
        const int8_t *u = shift_b == 0 ? a : b, *v = shift_b == 0 ? b : a;
        i = n & ~(size_t)3;
        switch (shift * 2 + (relu != 0)) {
        case 0: residual_lanes(u, v, i, 0, 0, y); break;
        case 1: residual_lanes(u, v, i, 0, 1, y); break;
        case 2: residual_lanes(u, v, i, 1, 0, y); break;
        case 3: residual_lanes(u, v, i, 1, 1, y); break;
        case 4: residual_lanes(u, v, i, 2, 0, y); break;
        case 5: residual_lanes(u, v, i, 2, 1, y); break;
        default: residual_lanes(u, v, i, shift, relu, y); break;
        }
    }
#endif
    /* one operand is usually aligned already (shift 0): fold the rounding into the other */
    const int32_t r = tc_round(shift);
#define TC_RES(i) (((int32_t)a[i] << shift_a) + ((int32_t)b[i] << shift_b) + r) >> shift
    if (relu) {
        for (; i + 2 <= n; i += 2) {
            y[i] = tc_sat8_relu(TC_RES(i));
            y[i + 1] = tc_sat8_relu(TC_RES(i + 1));
        }
        for (; i < n; i++)
            y[i] = tc_sat8_relu(TC_RES(i));
    } else {
        for (; i + 2 <= n; i += 2) {
            y[i] = tc_sat8(TC_RES(i));
            y[i + 1] = tc_sat8(TC_RES(i + 1));
        }
        for (; i < n; i++)
            y[i] = tc_sat8(TC_RES(i));
    }
#undef TC_RES
}

#if TC_USE_DSP
/* The PCM layer (1 input channel, 7 taps, stride 1): int16 samples are already SMLAD pairs.
 * Output t of channel o: (x_t, x_t+1) . (w0, w1) + (x_t+2, x_t+3) . (w2, w3) + (x_t+4, x_t+5) .
 * (w4, w5) + x_t+6 w6, one (possibly unaligned) word load per pair. */
static void conv1d_pcm7(const int16_t *x, const int8_t *w, const int32_t *b, int c_out, int t_out, int shift,
                        int8_t *y)
{
    const int32_t r = tc_round(shift);
    for (int o = 0; o < c_out; o++) {
        const int8_t *wo = w + o * 7;
        const uint32_t w01 = tc_pack16(wo[0], wo[1]), w23 = tc_pack16(wo[2], wo[3]), w45 = tc_pack16(wo[4], wo[5]);
        const int32_t w6 = wo[6], start = (b ? b[o] : 0) + r;
        const int16_t *xt = x;
        int8_t *yo = y + o;
        for (int t = 0; t < t_out; t++, xt++, yo += c_out) {
            int32_t acc = __smlad(tc_load32(xt), w01, start);
            acc = __smlad(tc_load32(xt + 2), w23, acc);
            acc = __smlad(tc_load32(xt + 4), w45, acc);
            acc += w6 * xt[6];
            *yo = tc_sat8(acc >> shift);
        }
    }
}
#endif

void tc_conv1d(const int16_t *x, const int8_t *w, const int32_t *b, int c_in, int c_out, int kernel,
               int stride, int dilation, int t_out, int shift, int8_t *y)
{
#if TC_USE_DSP
    if (c_in == 1 && kernel == 7 && stride == 1 && dilation == 1 && shift >= 0) {
        conv1d_pcm7(x, w, b, c_out, t_out, shift, y);
        return;
    }
#endif
    for (int t = 0; t < t_out; t++) {
        const int16_t *xt = x + (size_t)t * stride * c_in;
        for (int o = 0; o < c_out; o++) {
            int32_t acc = b ? b[o] : 0;
            const int8_t *wo = w + (size_t)o * c_in * kernel;
            for (int i = 0; i < c_in; i++)
                for (int k = 0; k < kernel; k++)
                    acc += (int32_t)wo[i * kernel + k] * xt[k * dilation * c_in + i];
            y[(size_t)t * c_out + o] = tc_requantize(acc, shift);
        }
    }
}

/* Depthwise layers with a fixed kernel and shift >= 0: a channel's taps live in registers while
 * the time loop walks one pointer down the time-major input; the rounding starts the sum. */
#define TC_DW_TAP(k) acc += w##k * p[(k) * step];
#define TC_DW_BODY(LOAD, TAPS)                                                            \
    const int step = dilation * c, advance = stride * c;                                  \
    const int32_t r = tc_round(shift);                                                    \
    for (int ch = 0; ch < c; ch++) {                                                      \
        const int8_t *wc = w + ch * kernel;                                               \
        LOAD                                                                              \
        const int8_t *p = x + ch;                                                         \
        int8_t *yc = y + ch;                                                              \
        for (int t = 0; t < t_out; t++, p += advance, yc += c) {                          \
            int32_t acc = r;                                                              \
            TAPS                                                                          \
            *yc = tc_sat8(acc >> shift);                                                  \
        }                                                                                 \
    }

static void depthwise3(const int8_t *x, const int8_t *w, int c, int stride, int dilation, int t_out, int shift,
                       int8_t *y)
{
    const int kernel = 3;
    TC_DW_BODY(const int32_t w0 = wc[0]; const int32_t w1 = wc[1]; const int32_t w2 = wc[2];,
               TC_DW_TAP(0) TC_DW_TAP(1) TC_DW_TAP(2))
}

#if TC_USE_DSP
/* 7 taps, stride 1, C channels (a compile-time constant: the row offsets become immediates):
 * two outputs a pass from 8 sample loads, (x0,x1)(x2,x3)(x4,x5) x6 for the even one and
 * (x1,x2)(x3,x4)(x5,x6) x7 for the odd one against the packed tap pairs (w0,w1)(w2,w3)(w4,w5) w6 */
#define TC_DW7_PAIR(K, W, E, O)                                                            \
    "ldrsb %[xb], [%[p], #" #K "*%c[C]]\n\t"                                              \
    "pkhbt %[xa], %[xa], %[xb], lsl #16\n\t"                                              \
    "smlad %[e], %[xa], %[" #W "], %[" E "]\n\t"                                           \
    "ldrsb %[xa], [%[p], #(" #K "+1)*%c[C]]\n\t"                                          \
    "pkhbt %[xb], %[xb], %[xa], lsl #16\n\t"                                              \
    "smlad %[o], %[xb], %[" #W "], %[" O "]\n\t"
#define TC_DW7_COLUMN(C_)                                                                   \
    static void depthwise7_c##C_(const int8_t *x, const int8_t *w, int t_out, int shift, int8_t *y)      \
    {                                                                                       \
        const int32_t r = tc_round(shift);                                                 \
        for (int ch = 0; ch < C_; ch++) {                                                   \
            const int8_t *wc = w + ch * 7, *p = x + ch, *end = p + t_out * C_;             \
            const uint32_t w01 = tc_pack16(wc[0], wc[1]), w23 = tc_pack16(wc[2], wc[3]);    \
            const uint32_t w45 = tc_pack16(wc[4], wc[5]), w6 = (uint16_t)wc[6];             \
            int8_t *yc = y + ch;                                                            \
            int32_t e, o, xa, xb;                                                           \
            __asm volatile("1:\n\t"                                                         \
                  "ldrsb %[xa], [%[p]]\n\t"                                                 \
                  TC_DW7_PAIR(1, w01, "r", "r") TC_DW7_PAIR(3, w23, "e", "o")              \
                  TC_DW7_PAIR(5, w45, "e", "o")                                             \
                  "smlabb %[e], %[xa], %[w6], %[e]\n\t"                                     \
                  "ldrsb %[xb], [%[p], #7*%c[C]]\n\t"                                       \
                  "smlabb %[o], %[xb], %[w6], %[o]\n\t"                                     \
                  "asr %[e], %[e], %[shift]\n\t"                                            \
                  "asr %[o], %[o], %[shift]\n\t"                                            \
                  "ssat %[e], #8, %[e]\n\t"                                                 \
                  "ssat %[o], #8, %[o]\n\t"                                                 \
                  "strb %[e], [%[yc]]\n\t"                                                  \
                  "strb %[o], [%[yc], #%c[C]]\n\t"                                          \
                  "add %[p], %[p], #2*%c[C]\n\t"                                            \
                  "add %[yc], %[yc], #2*%c[C]\n\t"                                          \
                  "cmp %[p], %[end]\n\t"                                                    \
                  "bne 1b"                                                                  \
                  : [p] "+r"(p), [yc] "+r"(yc), [e] "=&r"(e), [o] "=&r"(o), [xa] "=&r"(xa),   \
                    [xb] "=&r"(xb)                                                          \
                  : [w01] "r"(w01), [w23] "r"(w23), [w45] "r"(w45), [w6] "r"(w6), [r] "r"(r),   \
                    [shift] "r"(shift), [end] "r"(end), [C] "i"(C_)                          \
                  : "cc", "memory");                                                        \
        }                                                                                   \
    }
TC_DW7_COLUMN(8)
TC_DW7_COLUMN(16)
TC_DW7_COLUMN(32)
TC_DW7_COLUMN(64)
#undef TC_DW7_COLUMN
#undef TC_DW7_PAIR
#endif

static void depthwise7(const int8_t *x, const int8_t *w, int c, int stride, int dilation, int t_out, int shift,
                       int8_t *y)
{
    const int kernel = 7;
#if TC_USE_DSP
    if (stride == 1 && dilation == 1 && (t_out & 1) == 0 && t_out > 0) {
        switch (c) {
        case 8: depthwise7_c8(x, w, t_out, shift, y); return;
        case 16: depthwise7_c16(x, w, t_out, shift, y); return;
        case 32: depthwise7_c32(x, w, t_out, shift, y); return;
        case 64: depthwise7_c64(x, w, t_out, shift, y); return;
        default: break;
        }
    }
#endif
    TC_DW_BODY(const int32_t w0 = wc[0]; const int32_t w1 = wc[1]; const int32_t w2 = wc[2];
               const int32_t w3 = wc[3]; const int32_t w4 = wc[4]; const int32_t w5 = wc[5];
               const int32_t w6 = wc[6];,
               TC_DW_TAP(0) TC_DW_TAP(1) TC_DW_TAP(2) TC_DW_TAP(3) TC_DW_TAP(4) TC_DW_TAP(5) TC_DW_TAP(6))
}

#if TC_USE_DSP
/* 8 taps, stride 4, C channels (compile-time): output t reads rows 4t .. 4t+7 as the sample pairs
 * (x0,x1)(x2,x3)(x4,x5)(x6,x7); the last two are output t+1's first two, so each output loads
 * 4 new samples. Two outputs a pass with the pair registers' roles swapped; odd t_out ends
 * after the first half. */
#define TC_DW8_HALF(PA, PB, PC, PD)                                                         \
    "ldrsb %[" #PC "], [%[p], #4*%c[C]]\n\t"                                               \
    "ldrsb %[acc], [%[p], #5*%c[C]]\n\t"                                                   \
    "pkhbt %[" #PC "], %[" #PC "], %[acc], lsl #16\n\t"                                     \
    "ldrsb %[" #PD "], [%[p], #6*%c[C]]\n\t"                                               \
    "ldrsb %[acc], [%[p], #7*%c[C]]\n\t"                                                   \
    "pkhbt %[" #PD "], %[" #PD "], %[acc], lsl #16\n\t"                                     \
    "smlad %[acc], %[" #PA "], %[w01], %[r]\n\t"                                           \
    "smlad %[acc], %[" #PB "], %[w23], %[acc]\n\t"                                         \
    "smlad %[acc], %[" #PC "], %[w45], %[acc]\n\t"                                         \
    "smlad %[acc], %[" #PD "], %[w67], %[acc]\n\t"                                         \
    "asr %[acc], %[acc], %[shift]\n\t"                                                     \
    "ssat %[acc], #8, %[acc]\n\t"                                                          \
    "strb %[acc], [%[yc]], #%c[C]\n\t"                                                     \
    "add %[p], %[p], #4*%c[C]\n\t"                                                         \
    "cmp %[yc], %[end]\n\t"
#define TC_DW8_COLUMN(C_)                                                                    \
    static void depthwise8_c##C_(const int8_t *x, const int8_t *w, int t_out, int shift, int8_t *y)       \
    {                                                                                        \
        const int32_t r = tc_round(shift);                                                  \
        for (int ch = 0; ch < C_; ch++) {                                                    \
            const int8_t *wc = w + ch * 8, *p = x + ch;                                      \
            const uint32_t w01 = tc_pack16(wc[0], wc[1]), w23 = tc_pack16(wc[2], wc[3]);     \
            const uint32_t w45 = tc_pack16(wc[4], wc[5]), w67 = tc_pack16(wc[6], wc[7]);     \
            uint32_t pa = tc_pack16(p[0], p[C_]), pb = tc_pack16(p[2 * C_], p[3 * C_]), pc, pd; \
            int8_t *yc = y + ch, *end = yc + t_out * C_;                                     \
            int32_t acc;                                                                     \
            __asm volatile("1:\n\t"                                                          \
                           TC_DW8_HALF(pa, pb, pc, pd)                                       \
                           "beq 2f\n\t"                                                      \
                           TC_DW8_HALF(pc, pd, pa, pb)                                       \
                           "bne 1b\n\t"                                                      \
                           "2:"                                                              \
                           : [p] "+r"(p), [yc] "+r"(yc), [pa] "+r"(pa), [pb] "+r"(pb),       \
                             [pc] "=&r"(pc), [pd] "=&r"(pd), [acc] "=&r"(acc)                \
                           : [w01] "r"(w01), [w23] "r"(w23), [w45] "r"(w45), [w67] "r"(w67), \
                             [r] "r"(r), [shift] "r"(shift), [end] "r"(end), [C] "i"(C_)     \
                           : "cc", "memory");                                                \
        }                                                                                    \
    }
TC_DW8_COLUMN(8)
TC_DW8_COLUMN(16)
TC_DW8_COLUMN(32)
TC_DW8_COLUMN(64)
#undef TC_DW8_COLUMN
#undef TC_DW8_HALF
#endif

static void depthwise8(const int8_t *x, const int8_t *w, int c, int stride, int dilation, int t_out, int shift,
                       int8_t *y)
{
    const int kernel = 8;
#if TC_USE_DSP
    if (stride == 4 && dilation == 1 && t_out > 0) {
        switch (c) {
        case 8: depthwise8_c8(x, w, t_out, shift, y); return;
        case 16: depthwise8_c16(x, w, t_out, shift, y); return;
        case 32: depthwise8_c32(x, w, t_out, shift, y); return;
        case 64: depthwise8_c64(x, w, t_out, shift, y); return;
        default: break;
        }
    }
#endif
    TC_DW_BODY(const int32_t w0 = wc[0]; const int32_t w1 = wc[1]; const int32_t w2 = wc[2];
               const int32_t w3 = wc[3]; const int32_t w4 = wc[4]; const int32_t w5 = wc[5];
               const int32_t w6 = wc[6]; const int32_t w7 = wc[7];,
               TC_DW_TAP(0) TC_DW_TAP(1) TC_DW_TAP(2) TC_DW_TAP(3) TC_DW_TAP(4) TC_DW_TAP(5) TC_DW_TAP(6)
               TC_DW_TAP(7))
}

void tc_depthwise(const int8_t *x, const int8_t *w, int c, int kernel, int stride, int dilation, int t_out,
                  int shift, int8_t *y)
{
    if (shift >= 0) {
        switch (kernel) {
        case 3: depthwise3(x, w, c, stride, dilation, t_out, shift, y); return;
        case 7: depthwise7(x, w, c, stride, dilation, t_out, shift, y); return;
        case 8: depthwise8(x, w, c, stride, dilation, t_out, shift, y); return;
        default: break;
        }
    }
    for (int t = 0; t < t_out; t++) {
        const int8_t *xt = x + (size_t)t * stride * c;
        for (int ch = 0; ch < c; ch++) {
            const int8_t *wc = w + ch * kernel;
            const int8_t *xc = xt + ch;
            int32_t acc = 0;
            for (int k = 0; k < kernel; k++)
                acc += (int32_t)wc[k] * xc[k * dilation * c];
            y[(size_t)t * c + ch] = tc_requantize(acc, shift);
        }
    }
}
