/* Residual VQ in integers: tc_codebook_norms (once at init) and tc_rvq_search (per frame);
 * twins of codebook_norms() and rvq_search() in tinycodec/export/int8.py.
 *
 * The search returns exactly the reference's codes: per level the argmin over codewords of the
 * int64 score ||c||^2 << s - 2 r.c, ties -> lowest index. It skips work without changing that
 * argmin (exact pruning): the dot r.c is summed in segments of TC_RVQ_SEGMENT dims, and after
 * segment m the rest of it is bounded by Cauchy-Schwarz,
 *
 *     |r_tail . c_tail| <= ||r_tail|| ||c_tail|| <= ceil(sqrt(R_m)) * ceil(sqrt(C_m)),
 *
 * (R_m, C_m: integer sums of squares over the dims after the segment; ceil(sqrt(C_m)) per codeword
 * from tc_codebook_norms, ceil(sqrt(R_m)) once per level). When the score's lower bound
 * nq - 2 (a_m + bound) is already >= the best score so far, the codeword can neither beat it nor
 * tie it with a lower index (codewords are visited in index order), so the rest of its dot is
 * skipped. The instructions saved depend on the audio; with no pruning at all the search costs
 * what a plain full search costs plus one check per segment.
 */
#include "tc_internal.h"

#define TC_MAX_CHECKS 3 /* pruning for d <= 128 (int32 bounds, see search_level); larger d: full search */

/* smallest x with x * x >= n (bit-by-bit square root; 32-bit when n fits, the usual case) */
static inline __attribute__((always_inline)) uint32_t isqrt_ceil(uint64_t n)
{
    if (n <= UINT32_MAX) {
        uint32_t rem = (uint32_t)n, root = 0, bit = 1u << 30;
        while (bit > rem)
            bit >>= 2;
        for (; bit; bit >>= 2) {
            if (rem >= root + bit) {
                rem -= root + bit;
                root = (root >> 1) + bit;
            } else {
                root >>= 1;
            }
        }
        return root + (rem != 0);
    }
    uint64_t rem = n, root = 0, bit = (uint64_t)1 << 62;
    while (bit > rem)
        bit >>= 2;
    for (; bit; bit >>= 2) {
        if (rem >= root + bit) {
            rem -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
    }
    return (uint32_t)root + (rem != 0);
}

/* checks per codeword: segments - 1, or 0 (no pruning) */
static int rvq_checks(int d, const uint16_t *tail_norms)
{
    if (!tail_norms || d % TC_RVQ_SEGMENT || d / TC_RVQ_SEGMENT - 1 > TC_MAX_CHECKS)
        return 0;
    return d / TC_RVQ_SEGMENT - 1;
}

void tc_codebook_norms(const int8_t *codebooks, const int8_t *cb_shifts, int n_q, int k, int d, int32_t *norms,
                       uint16_t *tail_norms)
{
    const int checks = rvq_checks(d, tail_norms);
    for (int j = 0; j < n_q * k; j++) {
        const int8_t *c = codebooks + (size_t)j * d;
        int32_t sum = 0;
        for (int i = d - 1; i >= 0; i--) {
            /* at i = 32 (m + 1) - 1, sum holds the dims after segment m */
            if (i % TC_RVQ_SEGMENT == TC_RVQ_SEGMENT - 1 && i / TC_RVQ_SEGMENT < checks)
                tail_norms[(size_t)j * checks + i / TC_RVQ_SEGMENT] = (uint16_t)isqrt_ceil((uint64_t)sum);
            sum += (int32_t)c[i] * c[i];
        }
        norms[j] = sum << cb_shifts[j / k];
    }
}

#if TC_USE_DSP
/* acc + r.c over one segment of 32 dims: per 8 dims one LDM of 4 residual words (pairs (r0, r2),
 * (r1, r3), (r4, r6), (r5, r7)), one LDRD of 8 codebook bytes, 4 SXTB16, 4 SMLAD. r and c are
 * word-aligned (arena offsets and the generated arrays are). */
static inline __attribute__((always_inline)) int32_t dot_segment(const int16_t *r, const int8_t *c, int32_t acc)
{
    uint32_t c0, c1, t0, t1;
    __asm(".rept 4\n\t"
          "ldmia %[r]!, {r8, r9, r10, r11}\n\t"
          "ldrd %[c0], %[c1], [%[c]], #8\n\t"
          "sxtb16 %[t0], %[c0], ror #8\n\t"
          "sxtb16 %[c0], %[c0]\n\t"
          "smlad %[acc], r8, %[c0], %[acc]\n\t"
          "smlad %[acc], r9, %[t0], %[acc]\n\t"
          "sxtb16 %[t1], %[c1], ror #8\n\t"
          "sxtb16 %[c1], %[c1]\n\t"
          "smlad %[acc], r10, %[c1], %[acc]\n\t"
          "smlad %[acc], r11, %[t1], %[acc]\n\t"
          ".endr"
          : [acc] "+r"(acc), [r] "+r"(r), [c] "+r"(c), [c0] "=&r"(c0), [c1] "=&r"(c1), [t0] "=&r"(t0),
            [t1] "=&r"(t1)
          : "m"(*(const int16_t(*)[TC_RVQ_SEGMENT])r), "m"(*(const int8_t(*)[TC_RVQ_SEGMENT])c)
          : "r8", "r9", "r10", "r11");
    return acc;
}
#endif

/* a + r.c over n dims (n % 4 == 0): r is the permuted int16 residual */
static inline int32_t dot_residual(const int16_t *r, const int8_t *c, int n, int32_t acc)
{
    int j = 0;
#if TC_USE_DSP
    for (; j + TC_RVQ_SEGMENT <= n; j += TC_RVQ_SEGMENT)
        acc = dot_segment(r + j, c + j, acc);
    for (; j < n; j += 4) {
        uint32_t cv = tc_load32(c + j);
        acc = __smlad(tc_load32(r + j), __sxtb16(cv), acc);
        acc = __smlad(tc_load32(r + j + 2), tc_sxtb16_ror8(cv), acc);
    }
#endif
    /* positions j .. j+3 of r hold dims j, j+2, j+1, j+3 (TC_RIDX) */
    for (; j < n; j += 4)
        acc += (int32_t)r[j] * c[j] + (int32_t)r[j + 2] * c[j + 1] + (int32_t)r[j + 1] * c[j + 2] +
               (int32_t)r[j + 3] * c[j + 3];
    return acc;
}

#if TC_USE_DSP
/* The pruned search of one level in assembly, for d = 64 (2 segments) or 128 (4 segments):
 * codewords 1 .. k-1 against the best so far held in `st` (see search_level). Per codeword:
 * lim = a_b + ((nq_i - nq_b) >> 1), then segment, check (a + r_tail[m] * tail[m] <= lim: skip
 * the rest), segment, ..., and a > lim: a new best (the codeword's end pointer is kept). */
typedef struct {
    const int16_t *r;       /* 0: residual */
    int32_t nq_b, a_b;      /* 4, 8: the best so far */
    const int8_t *best_end; /* 12: end of the best codeword */
    const int32_t *nq;      /* 16: next codeword's norm */
    int32_t nq_i;           /* 20 */
    const int8_t *c_end;    /* 24: end of the level's codebook */
    uint32_t r_tail[3];     /* 28, 32, 36 */
} tc_search_t;

#define TC_SEG                                                             \
    ".rept 4\n\t"                                                         \
    "ldmia %[rp]!, {r8, r9, r10, r11}\n\t"                                \
    "ldrd %[c0], %[c1], [%[cp]], #8\n\t"                                  \
    "sxtb16 %[t0], %[c0], ror #8\n\t"                                     \
    "sxtb16 %[c0], %[c0]\n\t"                                             \
    "smlad %[acc], r8, %[c0], %[acc]\n\t"                                 \
    "smlad %[acc], r9, %[t0], %[acc]\n\t"                                 \
    "sxtb16 %[t0], %[c1], ror #8\n\t"                                     \
    "sxtb16 %[c1], %[c1]\n\t"                                             \
    "smlad %[acc], r10, %[c1], %[acc]\n\t"                                \
    "smlad %[acc], r11, %[t0], %[acc]\n\t"                                \
    ".endr\n\t"
#define TC_CHECK(M, SKIP)                                                  \
    "ldrh %[t0], [%[tp], #2*" #M "]\n\t"                                   \
    "ldr %[c0], [%[st], #28+4*" #M "]\n\t"                                 \
    "mla %[t0], %[c0], %[t0], %[acc]\n\t"                                 \
    "cmp %[t0], %[lim]\n\t"                                               \
    "ble " SKIP "\n\t"

static void search_pruned(tc_search_t *st, const int8_t *cp, const uint16_t *tp, int segments)
{
    int32_t c0, c1, t0, acc, lim;
    const int16_t *rp;
    if (segments == 4)
        __asm volatile("5:\n\t"
                       "ldr r8, [%[st], #16]\n\t"
                       "ldr %[t0], [r8], #4\n\t"
                       "str r8, [%[st], #16]\n\t"
                       "ldr %[c0], [%[st], #4]\n\t"
                       "sub %[c0], %[t0], %[c0]\n\t"
                       "ldr %[c1], [%[st], #8]\n\t"
                       "add %[lim], %[c1], %[c0], asr #1\n\t"
                       "str %[t0], [%[st], #20]\n\t"
                       "ldr %[rp], [%[st]]\n\t"
                       "movs %[acc], #0\n\t"
                       TC_SEG TC_CHECK(0, "3f") TC_SEG TC_CHECK(1, "2f") TC_SEG TC_CHECK(2, "1f") TC_SEG
                       "cmp %[acc], %[lim]\n\t"
                       "ble 4f\n\t"
                       "str %[acc], [%[st], #8]\n\t"
                       "ldr %[t0], [%[st], #20]\n\t"
                       "str %[t0], [%[st], #4]\n\t"
                       "str %[cp], [%[st], #12]\n\t"
                       "b 4f\n\t"
                       "3:\n\tadd %[cp], %[cp], #32\n\t"
                       "2:\n\tadd %[cp], %[cp], #32\n\t"
                       "1:\n\tadd %[cp], %[cp], #32\n\t"
                       "4:\n\t"
                       "add %[tp], %[tp], #6\n\t"
                       "ldr %[t0], [%[st], #24]\n\t"
                       "cmp %[cp], %[t0]\n\t"
                       "blo 5b"
                       : [cp] "+r"(cp), [tp] "+r"(tp), [c0] "=&r"(c0), [c1] "=&r"(c1), [t0] "=&r"(t0),
                         [acc] "=&r"(acc), [lim] "=&r"(lim), [rp] "=&r"(rp)
                       : [st] "r"(st)
                       : "r8", "r9", "r10", "r11", "cc", "memory");
    else
        __asm volatile("5:\n\t"
                       "ldr r8, [%[st], #16]\n\t"
                       "ldr %[t0], [r8], #4\n\t"
                       "str r8, [%[st], #16]\n\t"
                       "ldr %[c0], [%[st], #4]\n\t"
                       "sub %[c0], %[t0], %[c0]\n\t"
                       "ldr %[c1], [%[st], #8]\n\t"
                       "add %[lim], %[c1], %[c0], asr #1\n\t"
                       "str %[t0], [%[st], #20]\n\t"
                       "ldr %[rp], [%[st]]\n\t"
                       "movs %[acc], #0\n\t"
                       TC_SEG TC_CHECK(0, "1f") TC_SEG
                       "cmp %[acc], %[lim]\n\t"
                       "ble 4f\n\t"
                       "str %[acc], [%[st], #8]\n\t"
                       "ldr %[t0], [%[st], #20]\n\t"
                       "str %[t0], [%[st], #4]\n\t"
                       "str %[cp], [%[st], #12]\n\t"
                       "b 4f\n\t"
                       "1:\n\tadd %[cp], %[cp], #32\n\t"
                       "4:\n\t"
                       "add %[tp], %[tp], #2\n\t"
                       "ldr %[t0], [%[st], #24]\n\t"
                       "cmp %[cp], %[t0]\n\t"
                       "blo 5b"
                       : [cp] "+r"(cp), [tp] "+r"(tp), [c0] "=&r"(c0), [c1] "=&r"(c1), [t0] "=&r"(t0),
                         [acc] "=&r"(acc), [lim] "=&r"(lim), [rp] "=&r"(rp)
                       : [st] "r"(st)
                       : "r8", "r9", "r10", "r11", "cc", "memory");
}
#undef TC_SEG
#undef TC_CHECK
#endif

/* one level: the argmin of nq[i] - 2 r.c_i, ties -> lowest i */
static int search_level(const int16_t *r, const int8_t *cb, const int32_t *nq, const uint16_t *tails, int checks,
                        const uint32_t *r_tail, int k, int d)
{
    if (!checks) {
        int64_t best = INT64_MAX;
        int best_k = 0;
        for (int i = 0; i < k; i++) {
            int64_t score = (int64_t)nq[i] - 2 * (int64_t)dot_residual(r, cb + (size_t)i * d, d, 0);
            if (score < best) { /* strict: ties keep the lowest index */
                best = score;
                best_k = i;
            }
        }
        return best_k;
    }
    /* The best so far, nq_b - 2 a_b, is kept as (a_b, nq_b). With a the partial dot of codeword i
     * and P = ceil||r_tail|| ceil||c_tail||, its lower bound nq - 2 (a + P) is >= the best
     * <=> a + P <= lim = a_b + floor((nq - nq_b) / 2), and its full score beats the best
     * <=> a > lim. For d <= 128 every term fits in int32: |a| <= 128 * 2^15 * 2^7 = 2^29,
     * P < 2^29, |nq - nq_b| < 2^31. */
    int32_t a_b = dot_residual(r, cb, d, 0), nq_b = nq[0];
    int best_k = 0;
#if TC_USE_DSP
    if ((d == 64 || d == 128) && checks == d / TC_RVQ_SEGMENT - 1 && k > 1) {
        tc_search_t st = {r, nq_b, a_b, cb + d, nq + 1, 0, cb + (size_t)k * d, {0, 0, 0}};
        for (int m = 0; m < checks; m++)
            st.r_tail[m] = r_tail[m];
        search_pruned(&st, cb + d, tails + checks, d / TC_RVQ_SEGMENT);
        return (int)((st.best_end - cb) / d) - 1;
    }
#endif
    for (int i = 1; i < k; i++) {
        const int8_t *c = cb + (size_t)i * d;
        const uint16_t *t = tails + (size_t)i * checks;
        const int32_t lim = a_b + ((nq[i] - nq_b) >> 1);
        int32_t a = dot_residual(r, c, TC_RVQ_SEGMENT, 0);
        int m = 0;
        for (; m < checks; m++) {
            if (a + (int32_t)(r_tail[m] * t[m]) <= lim)
                break; /* cannot beat the best, nor tie it with a lower index */
            a = dot_residual(r + (m + 1) * TC_RVQ_SEGMENT, c + (m + 1) * TC_RVQ_SEGMENT, TC_RVQ_SEGMENT, a);
        }
        if (m == checks && a > lim) {
            a_b = a;
            nq_b = nq[i];
            best_k = i;
        }
    }
    return best_k;
}

void tc_rvq_search(const int8_t *z, const int8_t *codebooks, const int32_t *norms, const uint16_t *tail_norms,
                   int n_q, int k, int d, int z_shift, const int8_t *cb_shifts, int16_t *residual,
                   uint16_t *codes, size_t code_stride)
{
    const int checks = rvq_checks(d, tail_norms);
    uint32_t r_tail[TC_MAX_CHECKS + 1];
    for (int j = 0; j < d; j++)
        residual[TC_RIDX(j)] = (int16_t)((int32_t)z[j] << z_shift);
    for (int q = 0; q < n_q; q++) {
        const int8_t *cb = codebooks + (size_t)q * k * d;
        if (checks) { /* ceil(sqrt(sum of r_j^2 over the dims after segment m)) */
            uint64_t sum = 0;
            for (int j = d - 1; j >= TC_RVQ_SEGMENT; j--) {
                sum += (uint64_t)((int32_t)residual[j] * residual[j]);
                if (j % TC_RVQ_SEGMENT == 0)
                    r_tail[j / TC_RVQ_SEGMENT - 1] = isqrt_ceil(sum);
            }
        }
        int best_k = search_level(residual, cb, norms + (size_t)q * k,
                                  checks ? tail_norms + (size_t)q * k * checks : NULL, checks, r_tail, k, d);
        codes[(size_t)q * code_stride] = (uint16_t)best_k;
        const int8_t *c = cb + (size_t)best_k * d;
        const int s = cb_shifts[q];
        for (int j = 0; j < d; j++)
            residual[TC_RIDX(j)] = (int16_t)(residual[TC_RIDX(j)] - ((int32_t)c[j] << s));
    }
}
