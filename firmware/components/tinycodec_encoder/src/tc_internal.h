/* Private helpers of the kernels: the requantize epilogue and the Arm DSP-extension intrinsics.
 *
 * requantize(acc, s) for s >= 0 is sat8((acc + r) >> s) with r = 2^(s-1) (0 for s = 0): the
 * kernels start their accumulator at bias + r, so one arithmetic shift and one saturation finish
 * an output. A fused ReLU is relu(sat8(v)) == clamp(v, 0, 127): USAT #7 instead of SSAT #8.
 * Negative shifts (left shifts) take the general tc_requantize. Accumulators wrap modulo 2^32
 * in any summation order; the Python reference checks that the final sums fit in int32, so every
 * order gives the same integers.
 */
#ifndef TC_INTERNAL_H
#define TC_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "tinycodec_encoder.h"

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__GNUC__) && !defined(TC_PORTABLE)
#include <arm_acle.h>
#define TC_USE_DSP 1
static inline uint32_t tc_load32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4); /* one LDR: Armv7E-M loads unaligned words */
    return v;
}
/* SXTB16 of bytes 1 and 3 in one instruction (ACLE has no rotate operand) */
static inline uint32_t tc_sxtb16_ror8(uint32_t x)
{
    uint32_t r;
    __asm("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
/* two int16 values in one word: lo in bits 0-15, hi in bits 16-31 (PKHBT) */
static inline uint32_t tc_pack16(int32_t lo, int32_t hi)
{
    return ((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16); /* GCC and Clang emit PKHBT */
}
#else
#define TC_USE_DSP 0
#endif

static inline int32_t tc_round(int shift)
{
    return shift > 0 ? (int32_t)1 << (shift - 1) : 0;
}

static inline int8_t tc_sat8(int32_t v)
{
#if TC_USE_DSP
    return (int8_t)__ssat(v, 8);
#else
    return (int8_t)(v > 127 ? 127 : (v < -128 ? -128 : v));
#endif
}

static inline int8_t tc_sat8_relu(int32_t v)
{
#if TC_USE_DSP
    return (int8_t)__usat(v, 7);
#else
    return (int8_t)(v > 127 ? 127 : (v < 0 ? 0 : v));
#endif
}

/* requantize for any shift, optionally followed by ReLU (the portable paths and left shifts) */
static inline int8_t tc_requantize_relu(int32_t acc, int shift, int relu)
{
    int8_t y = tc_requantize(acc, shift);
    return relu && y < 0 ? 0 : y;
}

/* the residual of tc_rvq_search is stored with dims 1 and 2 of every group of 4 swapped, so that
 * one 32-bit load of it pairs with SXTB16 of 4 codebook bytes: (c0, c2) and (c1, c3) */
#define TC_RIDX(j) (((j) & ~3) | (((j) & 1) << 1) | (((j) >> 1) & 1))

#endif /* TC_INTERNAL_H */
