/* tc_log_spectrum and tc_fft_int on the cases of a generated header (spectrum_case.h, written by
 * tests/test_firmware.py): prints every output as text; the test compares them with the Python
 * reference (log_spectrum, fft_int). Builds on the host (gcc, portable C) and for the Cortex-M4
 * (`make -C firmware/qemu MODEL_DIR=<case dir> BUILD=<dir> spectrum_check`, semihosting output).
 *
 *   WHOLE a s f: y[0 .. c_out)   frame f of signal s with tc_spectrum<a>, all frames in one call
 *                                (history = zeros)
 *   STREAM a s f: y[0 .. c_out)  the same frame, one call per frame with the history moved in between
 *   FFT v: re[0 .. n) im[0 .. n)    tc_fft_int of vector v with the tables of spectrum_tables(n)
 *   FFTG v: ...                     the same with tc_case_tw_*_generic (no trivial twiddle)
 */
#include <stdint.h>
#include <string.h>

#include "spectrum_case.h"
#include "tinycodec_encoder.h"

#ifdef TC_SEMIHOSTING
#include "semihost.h"
#define TC_PUTS sh_puts
#else
#include <stdio.h>
static void TC_PUTS(const char *s) { fputs(s, stdout); }
#endif

#define P (TC_CASE_N_FFT - TC_CASE_HOP)
#define FRAMES (TC_CASE_SAMPLES / TC_CASE_HOP)

static char line[256];
static size_t used;

static void flush(void)
{
    line[used] = 0;
    TC_PUTS(line);
    used = 0;
}

static void put(const char *s)
{
    while (*s) {
        if (used + 1 >= sizeof line)
            flush();
        line[used++] = *s++;
    }
}

static void put_int(int32_t v)
{
    char buf[16];
    int i = 15;
    uint32_t u = v < 0 ? 0u - (uint32_t)v : (uint32_t)v;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        buf[--i] = '-';
    put(" ");
    put(buf + i);
}

static void put_row(const char *tag, int a, int s, int f, const int8_t *y, int n)
{
    put(tag);
    put_int(a);
    put_int(s);
    put_int(f);
    put(":");
    for (int i = 0; i < n; i++)
        put_int(y[i]);
    put("\n");
    flush();
}

static int16_t whole[P + TC_CASE_SAMPLES], stream[P + TC_CASE_HOP];
static int8_t y[FRAMES * TC_CASE_C_OUT];
static int32_t work[2 * TC_CASE_N_FFT], re[TC_CASE_N_FFT], im[TC_CASE_N_FFT];

static void fft_case(const char *tag, int v, const int32_t *tw_re, const int32_t *tw_im)
{
    memcpy(re, tc_case_fft_re[v], sizeof re);
    memcpy(im, tc_case_fft_im[v], sizeof im);
    tc_fft_int(re, im, TC_CASE_N_FFT, tw_re, tw_im);
    put(tag);
    put_int(v);
    put(":");
    for (int i = 0; i < TC_CASE_N_FFT; i++)
        put_int(re[i]);
    for (int i = 0; i < TC_CASE_N_FFT; i++)
        put_int(im[i]);
    put("\n");
    flush();
}

static const tc_spectrum_t *const spectra[TC_CASE_AFFINES] = TC_CASE_SPECTRA;

static void spectrum_case(int a, int s)
{
    const tc_spectrum_t *spec = spectra[a];
    {
        memset(whole, 0, sizeof whole);
        memcpy(whole + P, tc_case_pcm[s], sizeof tc_case_pcm[s]);
        memset(y, 0x55, sizeof y); /* the padding channels must be written */
        tc_log_spectrum(whole, TC_CASE_N_FFT, TC_CASE_HOP, spec, FRAMES, TC_CASE_C_OUT, work, y);
        for (int f = 0; f < FRAMES; f++)
            put_row("WHOLE", a, s, f, y + f * TC_CASE_C_OUT, TC_CASE_C_OUT);
        memset(stream, 0, sizeof stream);
        for (int f = 0; f < FRAMES; f++) {
            memcpy(stream + P, tc_case_pcm[s] + f * TC_CASE_HOP, TC_CASE_HOP * sizeof(int16_t));
            memset(y, 0x55, TC_CASE_C_OUT);
            tc_log_spectrum(stream, TC_CASE_N_FFT, TC_CASE_HOP, spec, 1, TC_CASE_C_OUT, work, y);
            memmove(stream, stream + TC_CASE_HOP, P * sizeof(int16_t)); /* the driver's history move */
            put_row("STREAM", a, s, f, y, TC_CASE_C_OUT);
        }
    }
}

int main(void)
{
    for (int a = 0; a < TC_CASE_AFFINES; a++)
        for (int s = 0; s < TC_CASE_SIGNALS; s++)
            spectrum_case(a, s);
    for (int v = 0; v < TC_CASE_FFT_VECTORS; v++) {
        fft_case("FFT", v, tc_tw_re0, tc_tw_im0);
        fft_case("FFTG", v, tc_case_tw_re_generic, tc_case_tw_im_generic);
    }
    TC_PUTS("DONE\n");
    return 0;
}
