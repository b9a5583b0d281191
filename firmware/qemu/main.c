/* Cortex-M4 golden-vector check: encode the golden PCM (whole signal and frame by frame) with
 * the tinycodec_encoder component, compare with the Python int8 reference codes, print the
 * codes over semihosting and exit 0 only if every code matches. */
#include <stdint.h>

#include "semihost.h"
#include "tinycodec_encoder.h"
#include "tinycodec_golden.h"
#include "tinycodec_model.h"

static uint8_t arena[TC_ARENA_BYTES] __attribute__((aligned(4)));
static tinycodec_encoder_t enc;
#define MAX_FRAMES (TC_GOLDEN_SPEECH_FRAMES > TC_GOLDEN_NATURE_FRAMES ? TC_GOLDEN_SPEECH_FRAMES : TC_GOLDEN_NATURE_FRAMES)
static uint16_t codes[TC_N_Q * MAX_FRAMES];

static int compare(const char *clip, const char *mode, const uint16_t *want, uint32_t frames)
{
    uint32_t bad = 0;
    for (uint32_t i = 0; i < frames * TC_N_Q; i++)
        bad += codes[i] != want[i];
    sh_puts("CHECK "); sh_puts(clip); sh_puts(" "); sh_puts(mode); sh_puts(" mismatches=");
    sh_putu(bad); sh_puts(" of "); sh_putu(frames * TC_N_Q); sh_puts("\n");
    return bad != 0;
}

static void print_codes(const char *clip, uint32_t frames)
{
    for (int q = 0; q < TC_N_Q; q++) {
        sh_puts("CODES "); sh_puts(clip); sh_puts(" "); sh_putu((uint32_t)q); sh_puts(":");
        for (uint32_t f = 0; f < frames; f++) {
            sh_puts(" ");
            sh_putu(codes[q * frames + f]);
        }
        sh_puts("\n");
    }
}

static int run_clip(const char *clip, const int16_t *pcm, uint32_t n, const uint16_t *want, uint32_t frames)
{
    int fails = 0;
    uint16_t c[TC_N_Q];
    fails += tinycodec_encode(&enc, pcm, n, codes) != frames;
    fails += compare(clip, "whole", want, frames);
    print_codes(clip, frames);
    tinycodec_encoder_reset(&enc);
    for (uint32_t f = 0; f < frames; f++) {
        tinycodec_encode_frame(&enc, pcm + f * TC_HOP_LENGTH, c);
        for (int q = 0; q < TC_N_Q; q++)
            codes[q * frames + f] = c[q];
    }
    fails += compare(clip, "frames", want, frames);
    return fails;
}

int main(void)
{
    int fails = 0;
    sh_puts("tinycodec M4 preset=" TC_MODEL_PRESET "\n");
    if (tinycodec_encoder_init(&enc, &tinycodec_model, arena, sizeof arena) != 0) {
        sh_puts("init failed\n");
        return 2;
    }
    fails += run_clip("speech", tc_golden_speech_pcm, TC_GOLDEN_SPEECH_SAMPLES, tc_golden_speech_codes,
                      TC_GOLDEN_SPEECH_FRAMES);
    fails += run_clip("nature", tc_golden_nature_pcm, TC_GOLDEN_NATURE_SAMPLES, tc_golden_nature_codes,
                      TC_GOLDEN_NATURE_FRAMES);
    /* each clip is encoded twice (whole + frames) */
    sh_puts("AUDIO_SAMPLES "); sh_putu(2u * (TC_GOLDEN_SPEECH_SAMPLES + TC_GOLDEN_NATURE_SAMPLES)); sh_puts("\n");
    sh_puts("ARENA_BYTES "); sh_putu(TC_ARENA_BYTES); sh_puts("\n");
    sh_puts("STACK_HIGH_WATER "); sh_putu(stack_high_water()); sh_puts("\n");
    sh_puts(fails ? "RESULT FAIL\n" : "RESULT PASS\n");
    return fails ? 1 : 0;
}
