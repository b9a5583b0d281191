/* tc_pointwise: the 1x1 conv y[t][o] = requantize(b[o] + sum_i w[o][i] x[t][i]); twin of
 * pointwise() in tinycodec/export/int8.py.
 *
 * On Arm DSP cores the input is first widened to int16 pairs in the scratch buffer (SXTB16 order:
 * (x0, x2) then (x1, x3) for every 4 channels), a chunk of rows at a time, so that each input byte
 * is sign-extended once instead of once per output channel. Then, per output channel:
 *   c_in <= 8   the widened weight row stays in registers; one LDM + c_in/2 SMLAD per row;
 *   c_in >= 16  rows go in blocks of 4 stored pair-major ([block][pair][4 rows]): each weight word
 *               is widened once for 4 rows and each pair of 4 rows is one LDM;
 *   other rows  (t % 4, e.g. t = 1) two output channels share each widened input pair.
 */
#include "tc_internal.h"

static void pointwise_portable(const int8_t *x, const int8_t *w, const int32_t *b, int c_in, int c_out, int t,
                               int shift, int relu, int8_t *y)
{
    /* shift >= 0: the rounding starts the sum, then one shift and a clamp (see tc_internal.h) */
    const int32_t r = shift >= 0 ? tc_round(shift) : 0;
    for (int s = 0; s < t; s++) {
        const int8_t *xs = x + (size_t)s * c_in;
        for (int o = 0; o < c_out; o++) {
            const int8_t *wo = w + (size_t)o * c_in;
            int32_t acc = (b ? b[o] : 0) + r;
            int i = 0;
            for (; i + 4 <= c_in; i += 4)
                acc += (int32_t)wo[i] * xs[i] + (int32_t)wo[i + 1] * xs[i + 1] + (int32_t)wo[i + 2] * xs[i + 2] +
                       (int32_t)wo[i + 3] * xs[i + 3];
            for (; i < c_in; i++)
                acc += (int32_t)wo[i] * xs[i];
            if (shift < 0)
                y[(size_t)s * c_out + o] = tc_requantize_relu(acc, shift, relu);
            else
                y[(size_t)s * c_out + o] = relu ? tc_sat8_relu(acc >> shift) : tc_sat8(acc >> shift);
        }
    }
}

#if TC_USE_DSP
#define TC_OUT(v) (relu ? __usat((v), 7) : __ssat((v), 8)) /* int32: STRB keeps the low byte */

/* rows [t][c_in/2] of widened pairs (c_in % 4 == 0) */
static void widen_rows(const int8_t *x, int c_in, int rows, uint32_t *s)
{
    const int8_t *end = x + (size_t)rows * c_in;
    for (; x < end; x += 4, s += 2) {
        uint32_t v = tc_load32(x);
        s[0] = __sxtb16(v);
        s[1] = tc_sxtb16_ror8(v);
    }
}

/* blocks of 4 rows, pair-major: s[block][g][0..3] = (x4g, x4g+2) of rows 0..3, s[block][g][4..7] =
 * (x4g+1, x4g+3) of rows 0..3 */
static void widen_blocks(const int8_t *x, int c_in, int blocks, uint32_t *s)
{
    for (int blk = 0; blk < blocks; blk++, x += 4 * c_in)
        for (int g = 0; g < c_in; g += 4, s += 8)
            for (int row = 0; row < 4; row++) {
                uint32_t v = tc_load32(x + row * c_in + g);
                s[row] = __sxtb16(v);
                s[4 + row] = tc_sxtb16_ror8(v);
            }
}

/* c_in == 8: the weights widened once per call into a table of [b + r, 4 weight words] per output
 * channel; per row the input is widened into 4 registers and every output channel is one LDM of
 * its 5 table words, 4 SMLAD and the requantize (c_out even: two outputs a loop pass) */
#define TC_C8_OUT(SAT)                                       \
    "ldmia %[wt]!, {r8, r9, r10, r11, r12}\n\t"             \
    "smlad r8, %[x0], r9, r8\n\t"                           \
    "smlad r8, %[x1], r10, r8\n\t"                          \
    "smlad r8, %[x2], r11, r8\n\t"                          \
    "smlad r8, %[x3], r12, r8\n\t"                          \
    "asr r8, r8, %[shift]\n\t" SAT "\n\t"                   \
    "strb r8, [%[y]], #1\n\t"
static inline __attribute__((always_inline)) void rows_c8(const int8_t *x, const uint32_t *table, int c_out,
                                                          int rows, int shift, const int relu, int8_t *y)
{
    const uint32_t *tend = table + 5 * c_out;
    for (int t = 0; t < rows; t++, x += 8) {
        const uint32_t v0 = tc_load32(x), v1 = tc_load32(x + 4);
        const uint32_t x0 = __sxtb16(v0), x1 = tc_sxtb16_ror8(v0), x2 = __sxtb16(v1), x3 = tc_sxtb16_ror8(v1);
        const uint32_t *wt = table;
        if (relu)
            __asm volatile("1:\n\t" TC_C8_OUT("usat r8, #7, r8") TC_C8_OUT("usat r8, #7, r8")
                  "cmp %[wt], %[tend]\n\t"
                  "bne 1b"
                  : [wt] "+r"(wt), [y] "+r"(y)
                  : [x0] "r"(x0), [x1] "r"(x1), [x2] "r"(x2), [x3] "r"(x3), [shift] "r"(shift), [tend] "r"(tend)
                  : "r8", "r9", "r10", "r11", "r12", "cc", "memory");
        else
            __asm volatile("1:\n\t" TC_C8_OUT("ssat r8, #8, r8") TC_C8_OUT("ssat r8, #8, r8")
                  "cmp %[wt], %[tend]\n\t"
                  "bne 1b"
                  : [wt] "+r"(wt), [y] "+r"(y)
                  : [x0] "r"(x0), [x1] "r"(x1), [x2] "r"(x2), [x3] "r"(x3), [shift] "r"(shift), [tend] "r"(tend)
                  : "r8", "r9", "r10", "r11", "r12", "cc", "memory");
    }
}
#undef TC_C8_OUT

static void widen_table_c8(const int8_t *w, const int32_t *b, int c_out, int shift, uint32_t *table)
{
    const int32_t r = tc_round(shift);
    for (int o = 0; o < c_out; o++, w += 8, table += 5) {
        const uint32_t v0 = tc_load32(w), v1 = tc_load32(w + 4);
        table[0] = (uint32_t)((b ? b[o] : 0) + r);
        table[1] = __sxtb16(v0);
        table[2] = tc_sxtb16_ror8(v0);
        table[3] = __sxtb16(v1);
        table[4] = tc_sxtb16_ror8(v1);
    }
}

/* c_in == 4 or 8: the output channel's widened weight words in registers, one row at a time */
static inline __attribute__((always_inline)) void rows_small(const uint32_t *s, const int8_t *w, const int32_t *b,
                                                             int c_out, int rows, int shift, const int relu,
                                                             int8_t *y, int c_in)
{
    const int32_t r = tc_round(shift);
    const int words = c_in / 2;
    for (int o = 0; o < c_out; o++) {
        uint32_t wv[4];
        for (int g = 0; g < c_in; g += 4) {
            uint32_t v = tc_load32(w + o * c_in + g);
            wv[g / 2] = __sxtb16(v);
            wv[g / 2 + 1] = tc_sxtb16_ror8(v);
        }
        const int32_t start = (b ? b[o] : 0) + r;
        const uint32_t *xs = s, *end = s + words * rows;
        int8_t *yo = y + o;
        for (; xs < end; xs += words, yo += c_out) {
            int32_t acc = start;
            for (int j = 0; j < words; j++)
                acc = __smlad(xs[j], wv[j], acc);
            *yo = TC_OUT(acc >> shift);
        }
    }
}

#define TC_EPILOGUE4(S0, S1, S2, S3)              \
    "asr %[a0], %[a0], %[shift]\n\t"               \
    "asr %[a1], %[a1], %[shift]\n\t"               \
    "asr %[a2], %[a2], %[shift]\n\t"               \
    "asr %[a3], %[a3], %[shift]\n\t"               \
    S0 "\n\t" S1 "\n\t" S2 "\n\t" S3 "\n\t"        \
    "strb %[a0], [%[y]]\n\t"                       \
    "strb %[a1], [%[y], %[c]]\n\t"                 \
    "strb %[a2], [%[y], %[c], lsl #1]\n\t"         \
    "add %[y3], %[y], %[c], lsl #1\n\t"            \
    "strb %[a3], [%[y3], %[c]]"
/* c_in % 4 == 0: `blocks` blocks of 4 rows from widen_blocks; per block every output channel
 * walks the weight matrix (row after row) against the same widened block */
static inline __attribute__((always_inline)) void blocks4(const uint32_t *s, const int8_t *w, const int32_t *b,
                                                          int c_in, int c_out, int blocks, int shift,
                                                          const int relu, int8_t *y)
{
    const int32_t r = tc_round(shift);
    const int8_t *wall = w + (size_t)c_out * c_in;
    const int32_t zero = 0;
    const int bstep = b ? 1 : 0; /* no bias: read one zero, c_out times */
    for (int blk = 0; blk < blocks; blk++, s += 2 * c_in, y += 3 * c_out) {
        const int32_t *bp = b ? b : &zero;
        for (const int8_t *wp = w; wp < wall; y++, bp += bstep) {
            const int32_t start = *bp + r;
            int32_t a0 = start, a1 = start, a2 = start, a3 = start;
            const uint32_t *xs = s;
            const int8_t *wend = wp + c_in;
            uint32_t v, wd;
            /* per 4 input channels: one weight word widened once for 4 rows, two LDM of 4 rows */
            __asm("1:\n\t"
                  "ldr %[v], [%[wp]], #4\n\t"
                  "ldmia %[xs]!, {r8, r9, r10, r11}\n\t"
                  "sxtb16 %[wd], %[v], ror #8\n\t"
                  "sxtb16 %[v], %[v]\n\t"
                  "smlad %[a0], r8, %[v], %[a0]\n\t"
                  "smlad %[a1], r9, %[v], %[a1]\n\t"
                  "smlad %[a2], r10, %[v], %[a2]\n\t"
                  "smlad %[a3], r11, %[v], %[a3]\n\t"
                  "ldmia %[xs]!, {r8, r9, r10, r11}\n\t"
                  "smlad %[a0], r8, %[wd], %[a0]\n\t"
                  "smlad %[a1], r9, %[wd], %[a1]\n\t"
                  "smlad %[a2], r10, %[wd], %[a2]\n\t"
                  "smlad %[a3], r11, %[wd], %[a3]\n\t"
                  "cmp %[wp], %[wend]\n\t"
                  "bne 1b"
                  : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [wp] "+r"(wp), [xs] "+r"(xs),
                    [v] "=&r"(v), [wd] "=&r"(wd)
                  : [wend] "r"(wend)
                  : "r8", "r9", "r10", "r11", "cc", "memory");
            /* the 4 rows' outputs: y, y + c_out, y + 2 c_out, y + 3 c_out (register offsets) */
            int8_t *y3;
            if (relu)
                __asm volatile(TC_EPILOGUE4("usat %[a0], #7, %[a0]", "usat %[a1], #7, %[a1]", "usat %[a2], #7, %[a2]",
                                            "usat %[a3], #7, %[a3]")
                               : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [y3] "=&r"(y3)
                               : [y] "r"(y), [c] "r"(c_out), [shift] "r"(shift)
                               : "memory");
            else
                __asm volatile(TC_EPILOGUE4("ssat %[a0], #8, %[a0]", "ssat %[a1], #8, %[a1]", "ssat %[a2], #8, %[a2]",
                                            "ssat %[a3], #8, %[a3]")
                               : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [y3] "=&r"(y3)
                               : [y] "r"(y), [c] "r"(c_out), [shift] "r"(shift)
                               : "memory");
        }
    }
}
#undef TC_EPILOGUE4

/* one widened row (t = 1 or the t % 4 leftover rows): three output channels a pass share each
 * widened input pair (LDRD); their weight words come from rows c_in apart (c_in % 8 == 0) */
#define TC_ROW_OUT(A, ADDR)                                          \
    "ldr %[v], " ADDR "\n\t"                                         \
    "sxtb16 %[wd], %[v], ror #8\n\t"                                 \
    "sxtb16 %[v], %[v]\n\t"                                          \
    "smlad %[" A "], %[xe], %[v], %[" A "]\n\t"                      \
    "smlad %[" A "], %[xo], %[wd], %[" A "]\n\t"
#define TC_ROW_GROUP                                                 \
    "ldrd %[xe], %[xo], [%[xs]], #8\n\t"                             \
    TC_ROW_OUT("a1", "[%[wp], %[cin]]")                               \
    TC_ROW_OUT("a2", "[%[wp], %[cin], lsl #1]")                       \
    TC_ROW_OUT("a0", "[%[wp]], #4")
static inline __attribute__((always_inline)) void one_row(const uint32_t *s, const int8_t *w, const int32_t *b,
                                                          int c_in, int c_out, int shift, const int relu,
                                                          int8_t *y)
{
    const int32_t r = tc_round(shift);
    const uint32_t *send = s + c_in / 2;
    int o = 0;
    if ((c_in & 7) == 0) {
        for (; o + 3 <= c_out; o += 3) {
            const int8_t *wp = w + (size_t)o * c_in;
            int32_t a0 = (b ? b[o] : 0) + r, a1 = (b ? b[o + 1] : 0) + r, a2 = (b ? b[o + 2] : 0) + r;
            const uint32_t *xs = s;
            uint32_t xe, xo, v, wd;
            __asm("1:\n\t" TC_ROW_GROUP TC_ROW_GROUP
                  "cmp %[xs], %[send]\n\t"
                  "bne 1b"
                  : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [wp] "+r"(wp), [xs] "+r"(xs), [xe] "=&r"(xe),
                    [xo] "=&r"(xo), [v] "=&r"(v), [wd] "=&r"(wd)
                  : [cin] "r"(c_in), [send] "r"(send)
                  : "cc", "memory");
            y[o] = TC_OUT(a0 >> shift);
            y[o + 1] = TC_OUT(a1 >> shift);
            y[o + 2] = TC_OUT(a2 >> shift);
        }
    }
    for (; o < c_out; o++) {
        const int8_t *w0 = w + (size_t)o * c_in;
        int32_t a0 = (b ? b[o] : 0) + r;
        for (int g = 0; g < c_in; g += 4) {
            uint32_t v0 = tc_load32(w0 + g);
            a0 = __smlad(s[g / 2], __sxtb16(v0), a0);
            a0 = __smlad(s[g / 2 + 1], tc_sxtb16_ror8(v0), a0);
        }
        y[o] = TC_OUT(a0 >> shift);
    }
}
#undef TC_ROW_OUT
#undef TC_ROW_GROUP

static inline __attribute__((always_inline)) void pointwise_dsp(const int8_t *x, const int8_t *w,
                                                                const int32_t *b, int c_in, int c_out, int t,
                                                                int shift, const int relu, uint32_t *s,
                                                                size_t scratch_bytes, int8_t *y)
{
    if (c_in == 8 && (c_out & 1) == 0 && scratch_bytes >= 20u * (unsigned)c_out) {
        widen_table_c8(w, b, c_out, shift, s);
        rows_c8(x, s, c_out, t, shift, relu, y);
        return;
    }
    if (c_in <= 8) {
        const int chunk = (int)(scratch_bytes / (2u * (unsigned)c_in));
        for (int t0 = 0; t0 < t; t0 += chunk) {
            const int rows = t - t0 < chunk ? t - t0 : chunk;
            widen_rows(x + (size_t)t0 * c_in, c_in, rows, s);
            rows_small(s, w, b, c_out, rows, shift, relu, y + (size_t)t0 * c_out, c_in);
        }
        return;
    }
    const int chunk = (int)(scratch_bytes / (8u * (unsigned)c_in)) * 4, t4 = t & ~3;
    for (int t0 = 0; t0 < t4; t0 += chunk) {
        const int rows = t4 - t0 < chunk ? t4 - t0 : chunk;
        widen_blocks(x + (size_t)t0 * c_in, c_in, rows / 4, s);
        blocks4(s, w, b, c_in, c_out, rows / 4, shift, relu, y + (size_t)t0 * c_out);
    }
    for (int t0 = t4; t0 < t; t0++) {
        widen_rows(x + (size_t)t0 * c_in, c_in, 1, s);
        one_row(s, w, b, c_in, c_out, shift, relu, y + (size_t)t0 * c_out);
    }
}
#endif

void tc_pointwise(const int8_t *x, const int8_t *w, const int32_t *b, int c_in, int c_out, int t, int shift,
                  int relu, void *scratch, size_t scratch_bytes, int8_t *y)
{
#if TC_USE_DSP
    if (shift >= 0 && (c_in & 3) == 0 && scratch && scratch_bytes >= 8u * (unsigned)c_in) {
        if (relu)
            pointwise_dsp(x, w, b, c_in, c_out, t, shift, 1, (uint32_t *)scratch, scratch_bytes, y);
        else
            pointwise_dsp(x, w, b, c_in, c_out, t, shift, 0, (uint32_t *)scratch, scratch_bytes, y);
        return;
    }
#else
    (void)scratch;
    (void)scratch_bytes;
#endif
    pointwise_portable(x, w, b, c_in, c_out, t, shift, relu, y);
}
