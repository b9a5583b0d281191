/* Host tests: the C encoder reproduces the Python int8 reference's codes exactly on real audio
 * (demo corpus speech and nature clips), whole-signal and frame by frame; kernels hand-checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tinycodec_encoder.h"
#include "tinycodec_golden.h"
#include "tinycodec_packet.h"
#include "tinycodec_model.h"
#include "rvq_selftest.h"

static uint8_t arena[TC_ARENA_BYTES] __attribute__((aligned(4)));
static tinycodec_encoder_t enc;
static uint16_t codes[TC_N_Q * 1024];

static void test_requantize_rounding_and_saturation(void **state)
{
    (void)state;
    assert_int_equal(tc_requantize(5, 1), 3);     /* 2.5 -> 3: half up */
    assert_int_equal(tc_requantize(-5, 1), -2);   /* -2.5 -> -2: half up, not away from zero */
    assert_int_equal(tc_requantize(3, 1), 2);     /* 1.5 -> 2 */
    assert_int_equal(tc_requantize(-3, 1), -1);   /* -1.5 -> -1 */
    assert_int_equal(tc_requantize(-7, 2), -2);   /* -1.75 -> -2 */
    assert_int_equal(tc_requantize(1000, 2), 127);
    assert_int_equal(tc_requantize(-1000, 2), -128);
    assert_int_equal(tc_requantize(-7, 0), -7);
    assert_int_equal(tc_requantize(3, -2), 12);   /* left shift */
    assert_int_equal(tc_requantize(100, -2), 127);
}

static void test_relu_and_residual_add(void **state)
{
    (void)state;
    int8_t x[4] = {-128, -1, 0, 127}, y[4], s[4];
    tc_relu(x, y, 4);
    assert_int_equal(y[0], 0); assert_int_equal(y[1], 0); assert_int_equal(y[3], 127);
    int8_t a[2] = {10, -10}, b[2] = {3, 3};
    tc_residual_add(a, b, 2, 1, 0, 1, 0, s); /* ((a << 1) + b) / 2 rounded half up */
    assert_int_equal(s[0], 12); /* 23 / 2 = 11.5 -> 12 */
    assert_int_equal(s[1], -8); /* -17 / 2 = -8.5 -> -8 */
}

static void check_codes(const uint16_t *got, const uint16_t *want, size_t n, const char *what)
{
    size_t bad = 0, first = n;
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i] && bad++ == 0)
            first = i;
    if (bad)
        print_error("%s: %zu of %zu codes differ (first at %zu: %u != %u)\n", what, bad, n, first,
                    got[first], want[first]);
    assert_int_equal(bad, 0);
}

static void whole(const int16_t *pcm, size_t n, const uint16_t *want, size_t frames, const char *what)
{
    assert_int_equal(tinycodec_encoder_init(&enc, &tinycodec_model, arena, sizeof arena), 0);
    assert_int_equal(tinycodec_encode(&enc, pcm, n, codes), frames);
    check_codes(codes, want, frames * TC_N_Q, what);
}

static void by_frame(const int16_t *pcm, const uint16_t *want, size_t frames, const char *what)
{
    uint16_t c[TC_N_Q];
    assert_int_equal(tinycodec_encoder_init(&enc, &tinycodec_model, arena, sizeof arena), 0);
    for (size_t f = 0; f < frames; f++) {
        tinycodec_encode_frame(&enc, pcm + f * TC_HOP_LENGTH, c);
        for (int q = 0; q < TC_N_Q; q++)
            codes[q * frames + f] = c[q];
    }
    check_codes(codes, want, frames * TC_N_Q, what);
}

static void test_speech_whole(void **s) { (void)s; whole(tc_golden_speech_pcm, TC_GOLDEN_SPEECH_SAMPLES, tc_golden_speech_codes, TC_GOLDEN_SPEECH_FRAMES, "speech whole"); }
static void test_speech_frames(void **s) { (void)s; by_frame(tc_golden_speech_pcm, tc_golden_speech_codes, TC_GOLDEN_SPEECH_FRAMES, "speech frames"); }
static void test_nature_whole(void **s) { (void)s; whole(tc_golden_nature_pcm, TC_GOLDEN_NATURE_SAMPLES, tc_golden_nature_codes, TC_GOLDEN_NATURE_FRAMES, "nature whole"); }
static void test_nature_frames(void **s) { (void)s; by_frame(tc_golden_nature_pcm, tc_golden_nature_codes, TC_GOLDEN_NATURE_FRAMES, "nature frames"); }

static void test_reset_restarts_stream(void **s)
{
    (void)s;
    /* speech after nature in one stream, then reset: must equal speech from a fresh state */
    uint16_t c[TC_N_Q];
    assert_int_equal(tinycodec_encoder_init(&enc, &tinycodec_model, arena, sizeof arena), 0);
    for (size_t f = 0; f < TC_GOLDEN_NATURE_FRAMES; f++)
        tinycodec_encode_frame(&enc, tc_golden_nature_pcm + f * TC_HOP_LENGTH, c);
    tinycodec_encoder_reset(&enc);
    for (size_t f = 0; f < TC_GOLDEN_SPEECH_FRAMES; f++) {
        tinycodec_encode_frame(&enc, tc_golden_speech_pcm + f * TC_HOP_LENGTH, c);
        for (int q = 0; q < TC_N_Q; q++)
            assert_int_equal(c[q], tc_golden_speech_codes[q * TC_GOLDEN_SPEECH_FRAMES + f]);
    }
}

static void test_packet_matches_python_bitstream(void **s)
{
    (void)s;
    /* the golden packet holds the first frames of the speech clip (Python Packet.to_bytes) */
    uint16_t frame_major[TC_GOLDEN_PACKET_FRAMES * TC_N_Q];
    uint8_t out[256];
    for (int f = 0; f < TC_GOLDEN_PACKET_FRAMES; f++)
        for (int q = 0; q < TC_N_Q; q++)
            frame_major[f * TC_N_Q + q] = tc_golden_speech_codes[q * TC_GOLDEN_SPEECH_FRAMES + f];
    size_t n = tc_packet_write(out, sizeof out, TC_GOLDEN_PACKET_SEQ, 0, frame_major, TC_GOLDEN_PACKET_FRAMES,
                               TC_N_Q, TC_GOLDEN_PACKET_BITS);
    assert_int_equal(n, sizeof tc_golden_packet);
    assert_memory_equal(out, tc_golden_packet, n);
    assert_int_equal(tc_crc32((const uint8_t *)"123456789", 9), 0xCBF43926u); /* the CRC-32 check value */
}

static void test_arena_too_small_is_refused(void **s)
{
    (void)s;
    assert_int_equal(tinycodec_encoder_init(&enc, &tinycodec_model, arena, TC_ARENA_BYTES - 4), -1);
    tc_model_t bad = tinycodec_model;
    bad.scratch = TC_ARENA_BYTES; /* an offset outside the arena */
    bad.scratch_bytes = 64;
    assert_int_equal(tinycodec_encoder_init(&enc, &bad, arena, sizeof arena), -3);
}

static void test_log_spectrum_row_is_checked(void **s)
{
    (void)s;
    /* a log_spectrum row is accepted only when consistent (any preset: its table is replaced) */
    static const int16_t hann[16];
    static const int32_t tw[8], lut[256];
    tc_spectrum_t spec = {hann, tw, tw, lut, tc_log_spectrum, 1024, 1, 0};
    const tc_layer_t good = {TC_OP_LOG_SPECTRUM, 0, 0, 0, 0, 1, 9, 16, 8, 1, 8, 1, 0u, 0u, 0u, &spec, NULL};
    tc_layer_t l = good;
    tc_model_t m = tinycodec_model;
    m.layers = &l;
    m.n_layers = 1;
    if (m.scratch_bytes < 8 * 16) { /* a model without enough scratch: give it some (inside the arena) */
        m.scratch = m.norms - 8 * 16;
        m.scratch_bytes = 8 * 16;
    }
    assert_int_equal(tinycodec_encoder_init(&enc, &m, arena, sizeof arena), 0);
    l.kernel = 12, l.history = 4; /* not a power of two */
    assert_int_equal(tinycodec_encoder_init(&enc, &m, arena, sizeof arena), -3);
    l = good, l.history = 4;     /* history + hop != n_fft */
    assert_int_equal(tinycodec_encoder_init(&enc, &m, arena, sizeof arena), -3);
    l = good, l.c_out = 8;       /* fewer channels than bins */
    assert_int_equal(tinycodec_encoder_init(&enc, &m, arena, sizeof arena), -3);
    l = good, m.scratch_bytes = 8 * 16 - 4; /* no room for the FFT rows */
    assert_int_equal(tinycodec_encoder_init(&enc, &m, arena, sizeof arena), -3);
    m.scratch_bytes = 8 * 16, spec.log_spectrum = NULL;
    assert_int_equal(tinycodec_encoder_init(&enc, &m, arena, sizeof arena), -3);
}

static void test_pruned_search_is_the_full_search(void **s)
{
    (void)s;
    /* random codebooks with ties and exact matches, d = 64 and 128: pruned == full == int64 twin */
    assert_int_equal(tc_rvq_selftest(12345u, 24), 0);
}

static void test_pointwise_relu_and_residual_relu(void **s)
{
    (void)s;
    /* the fused ReLU of the C table: relu(requantize(acc)) == clamp((acc + r) >> s, 0, 127) */
    const int8_t x[8] = {100, -100, 50, -50, 127, -128, 1, -1};
    const int8_t w[2 * 8] = {1, 1, 1, 1, 1, 1, 1, 1, -1, 2, -3, 4, -5, 6, -7, 8};
    const int32_t b[2] = {-3, 40};
    int8_t y[2], y_relu[2], z[8], z_relu[8];
    tc_pointwise(x, w, b, 8, 2, 1, 2, 0, NULL, 0, y);
    tc_pointwise(x, w, b, 8, 2, 1, 2, 1, NULL, 0, y_relu);
    for (int o = 0; o < 2; o++) {
        int32_t acc = b[o];
        for (int i = 0; i < 8; i++)
            acc += (int32_t)w[o * 8 + i] * x[i];
        assert_int_equal(y[o], tc_requantize(acc, 2));
        assert_int_equal(y_relu[o], y[o] > 0 ? y[o] : 0);
    }
    tc_residual_add(x, x + 0, 8, 1, 0, 1, 0, z);
    tc_residual_add(x, x + 0, 8, 1, 0, 1, 1, z_relu);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(z[i], tc_requantize(((int32_t)x[i] << 1) + x[i], 1));
        assert_int_equal(z_relu[i], z[i] > 0 ? z[i] : 0);
    }
}

static void test_encode_any_n_q_layout(void **s)
{
    (void)s;
    /* tinycodec_encode writes codes [n_q][F] for the model's n_q (no cap), partial last frame
     * zero-padded: the same codes as frame by frame on the padded signal */
    static int16_t padded[3 * TC_HOP_LENGTH];
    const size_t n = 2 * TC_HOP_LENGTH + TC_HOP_LENGTH / 3;
    memset(padded, 0, sizeof padded);
    memcpy(padded, tc_golden_speech_pcm, n * sizeof(int16_t));
    assert_int_equal(tinycodec_encoder_init(&enc, &tinycodec_model, arena, sizeof arena), 0);
    assert_int_equal(tinycodec_encode(&enc, tc_golden_speech_pcm, n, codes), 3);
    uint16_t c[TC_N_Q];
    tinycodec_encoder_reset(&enc);
    for (size_t f = 0; f < 3; f++) {
        tinycodec_encode_frame(&enc, padded + f * TC_HOP_LENGTH, c);
        for (int q = 0; q < TC_N_Q; q++)
            assert_int_equal(codes[q * 3 + f], c[q]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requantize_rounding_and_saturation),
        cmocka_unit_test(test_relu_and_residual_add),
        cmocka_unit_test(test_speech_whole),
        cmocka_unit_test(test_speech_frames),
        cmocka_unit_test(test_nature_whole),
        cmocka_unit_test(test_nature_frames),
        cmocka_unit_test(test_reset_restarts_stream),
        cmocka_unit_test(test_packet_matches_python_bitstream),
        cmocka_unit_test(test_arena_too_small_is_refused),
        cmocka_unit_test(test_log_spectrum_row_is_checked),
        cmocka_unit_test(test_pruned_search_is_the_full_search),
        cmocka_unit_test(test_pointwise_relu_and_residual_relu),
        cmocka_unit_test(test_encode_any_n_q_layout),
    };
    return cmocka_run_group_tests_name(TC_MODEL_PRESET, tests, NULL, NULL);
}
