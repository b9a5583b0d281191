/* Size probe: the encoder, the model and a frame loop, no golden vectors; its
 * arm-none-eabi-size figures are the flash and RAM the encoder needs on a Cortex-M4. */
#include <stdint.h>

#include "semihost.h"
#include "tinycodec_encoder.h"
#include "tinycodec_model.h"

static uint8_t arena[TC_ARENA_BYTES] __attribute__((aligned(4)));
static int16_t pcm[TC_HOP_LENGTH];
static tinycodec_encoder_t enc;
volatile uint16_t sink;

int main(void)
{
    uint16_t codes[TC_N_Q];
    if (tinycodec_encoder_init(&enc, &tinycodec_model, arena, sizeof arena) != 0)
        return 2;
    tinycodec_encode_frame(&enc, pcm, codes);
    sink = codes[0];
    sh_puts("STACK_HIGH_WATER "); sh_putu(stack_high_water()); sh_puts("\n");
    return 0;
}
