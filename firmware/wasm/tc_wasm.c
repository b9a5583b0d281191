/* WebAssembly driver of the tinycodec_encoder component: the same C sources as the Cortex-M4 build,
 * compiled for the browser (tools/wasm.py, clang --target=wasm32-wasi). A page writes one hop of
 * int16 PCM into tc_wasm_pcm(), calls tc_wasm_encode_frame() and reads n_q codes from tc_wasm_codes():
 * the codes the microcontroller sends for the same PCM, frame by frame.
 *
 * Notebook: book/07_deployment.md
 */
#include <stdint.h>

#include "tinycodec_encoder.h"
#include "tinycodec_model.h"

#define TC_EXPORT(name) __attribute__((export_name(name)))

static uint8_t arena[TC_ARENA_BYTES] __attribute__((aligned(8)));
static tinycodec_encoder_t enc;
static int16_t pcm[TC_HOP_LENGTH];
static uint16_t codes[TC_N_Q];

/* 0 on success (tinycodec_encoder_init's error codes otherwise); also resets the streaming state */
TC_EXPORT("tc_wasm_init") int tc_wasm_init(void)
{
    return tinycodec_encoder_init(&enc, &tinycodec_model, arena, sizeof arena);
}

TC_EXPORT("tc_wasm_reset") void tc_wasm_reset(void) { tinycodec_encoder_reset(&enc); }
TC_EXPORT("tc_wasm_pcm") int16_t *tc_wasm_pcm(void) { return pcm; }
TC_EXPORT("tc_wasm_codes") uint16_t *tc_wasm_codes(void) { return codes; }
TC_EXPORT("tc_wasm_hop_length") int tc_wasm_hop_length(void) { return TC_HOP_LENGTH; }
TC_EXPORT("tc_wasm_n_q") int tc_wasm_n_q(void) { return TC_N_Q; }
TC_EXPORT("tc_wasm_sample_rate") int tc_wasm_sample_rate(void) { return tinycodec_model.sample_rate; }
TC_EXPORT("tc_wasm_codebook_size") int tc_wasm_codebook_size(void) { return tinycodec_model.codebook_size; }

/* one hop of tc_wasm_pcm() -> n_q codes in tc_wasm_codes() */
TC_EXPORT("tc_wasm_encode_frame") void tc_wasm_encode_frame(void) { tinycodec_encode_frame(&enc, pcm, codes); }
