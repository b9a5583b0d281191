/* Self-test of tc_rvq_search on random data, shared by the host tests and the Cortex-M4 run:
 * the pruned search (tail norms given) must return exactly the codes of the full search (no tail
 * norms) and of a plain int64 twin of the Python rvq_search, ties included (duplicated codewords).
 * Returns the number of mismatching codes. */
#ifndef TC_RVQ_SELFTEST_H
#define TC_RVQ_SELFTEST_H

#include <stdint.h>
#include <string.h>

#include "tinycodec_encoder.h"

#define TC_ST_NQ 4
#define TC_ST_K 96
#define TC_ST_DMAX 128

static uint32_t tc_st_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* the Python reference, one frame: r = z << z_shift; per level argmin_k ||c||^2 << s - 2 r.c */
static void tc_st_reference(const int8_t *z, const int8_t *cb, const int8_t *shifts, int k, int d, int z_shift,
                            uint16_t *codes)
{
    int32_t r[TC_ST_DMAX];
    for (int j = 0; j < d; j++)
        r[j] = (int32_t)z[j] * (1 << z_shift);
    for (int q = 0; q < TC_ST_NQ; q++) {
        const int8_t *c = cb + (size_t)q * k * d;
        int64_t best = INT64_MAX;
        int best_k = 0;
        for (int i = 0; i < k; i++) {
            int64_t norm = 0, dot = 0;
            for (int j = 0; j < d; j++) {
                norm += (int64_t)c[i * d + j] * c[i * d + j];
                dot += (int64_t)r[j] * c[i * d + j];
            }
            int64_t score = norm * ((int64_t)1 << shifts[q]) - 2 * dot;
            if (score < best) {
                best = score;
                best_k = i;
            }
        }
        codes[q] = (uint16_t)best_k;
        for (int j = 0; j < d; j++)
            r[j] -= (int32_t)c[best_k * d + j] * (1 << shifts[q]);
    }
}

static int tc_rvq_selftest(uint32_t seed, int frames)
{
    static int8_t cb[TC_ST_NQ * TC_ST_K * TC_ST_DMAX] __attribute__((aligned(4)));
    static int32_t norms[TC_ST_NQ * TC_ST_K];
    static uint16_t tails[TC_ST_NQ * TC_ST_K * 3];
    static int16_t residual[TC_ST_DMAX] __attribute__((aligned(4)));
    static const int dims[2] = {64, 128};
    int bad = 0;
    uint32_t s = seed | 1u;
    for (int di = 0; di < 2; di++) {
        const int d = dims[di];
        const int8_t shifts[TC_ST_NQ] = {3, 2, 1, 0};
        for (int f = 0; f < frames; f++) {
            const int z_shift = (int)(tc_st_rand(&s) % 6u);
            int8_t z[TC_ST_DMAX];
            for (size_t i = 0; i < (size_t)TC_ST_NQ * TC_ST_K * d; i++)
                cb[i] = (int8_t)(tc_st_rand(&s) >> 24) / (int8_t)(1 + (i / ((size_t)TC_ST_K * d)));
            /* ties: every 8th codeword repeats its predecessor */
            for (int q = 0; q < TC_ST_NQ; q++)
                for (int i = 8; i < TC_ST_K; i += 8)
                    memcpy(cb + ((size_t)q * TC_ST_K + i) * d, cb + ((size_t)q * TC_ST_K + i - 1) * d, (size_t)d);
            for (int j = 0; j < d; j++)
                z[j] = (int8_t)(tc_st_rand(&s) >> 24);
            if (f % 4 == 0) /* z on a codeword: a zero-distance match */
                memcpy(z, cb + (size_t)(tc_st_rand(&s) % TC_ST_K) * d, (size_t)d);
            uint16_t want[TC_ST_NQ], pruned[TC_ST_NQ], full[TC_ST_NQ];
            tc_st_reference(z, cb, shifts, TC_ST_K, d, z_shift, want);
            tc_codebook_norms(cb, shifts, TC_ST_NQ, TC_ST_K, d, norms, tails);
            tc_rvq_search(z, cb, norms, tails, TC_ST_NQ, TC_ST_K, d, z_shift, shifts, residual, pruned, 1);
            tc_rvq_search(z, cb, norms, NULL, TC_ST_NQ, TC_ST_K, d, z_shift, shifts, residual, full, 1);
            for (int q = 0; q < TC_ST_NQ; q++)
                bad += (pruned[q] != want[q]) + (full[q] != want[q]);
        }
    }
    return bad;
}

#endif /* TC_RVQ_SELFTEST_H */
