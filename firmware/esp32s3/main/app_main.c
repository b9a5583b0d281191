/* ESP32-S3: 16 kHz mono from an I2S MEMS microphone (e.g. INMP441, 24-bit left slot), encoded
 * frame by frame (hop_length samples) with the tinycodec_encoder component, sent as tinycodec
 * streaming packets (sequence number, frames, n_q, bit-packed codes, CRC32) over a UART.
 * CONFIG_TINYCODEC_TEST_VECTORS encodes the golden vectors instead and checks the codes. */
#include <stdio.h>
#include <string.h>

#include "driver/i2s_std.h"
#include "driver/uart.h"
#include "esp_cpu.h"
#include "esp_log.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"

#include "tinycodec_encoder.h"
#include "tinycodec_model.h"
#include "tinycodec_packet.h"
#if CONFIG_TINYCODEC_TEST_VECTORS
#include "tinycodec_golden.h"
#endif

#define FPP CONFIG_TINYCODEC_FRAMES_PER_PACKET
#define CODE_BITS (31 - __builtin_clz(TC_CODEBOOK_SIZE))

static const char *TAG = "tinycodec";
static uint8_t arena[TC_ARENA_BYTES] __attribute__((aligned(4))); /* the one static arena */
static tinycodec_encoder_t enc;
static uint16_t packet_codes[FPP * TC_N_Q];
static uint8_t packet[TC_PACKET_OVERHEAD + (FPP * TC_N_Q * 16 + 7) / 8];
static uint32_t seq;
static int in_packet;

static void uart_setup(void)
{
    const uart_config_t cfg = {.baud_rate = CONFIG_TINYCODEC_UART_BAUD, .data_bits = UART_DATA_8_BITS,
                               .parity = UART_PARITY_DISABLE, .stop_bits = UART_STOP_BITS_1,
                               .flow_ctrl = UART_HW_FLOWCTRL_DISABLE, .source_clk = UART_SCLK_DEFAULT};
    ESP_ERROR_CHECK(uart_driver_install(CONFIG_TINYCODEC_UART_NUM, 1024, 2048, 0, NULL, 0));
    ESP_ERROR_CHECK(uart_param_config(CONFIG_TINYCODEC_UART_NUM, &cfg));
    ESP_ERROR_CHECK(uart_set_pin(CONFIG_TINYCODEC_UART_NUM, CONFIG_TINYCODEC_UART_TX, UART_PIN_NO_CHANGE,
                                 UART_PIN_NO_CHANGE, UART_PIN_NO_CHANGE));
}

/* queue one frame's codes; send a packet every FPP frames */
static void push_frame(const uint16_t *codes, int last)
{
    memcpy(packet_codes + in_packet * TC_N_Q, codes, TC_N_Q * sizeof(uint16_t));
    if (++in_packet == FPP || last) {
        size_t n = tc_packet_write(packet, sizeof packet, seq++, last ? TC_PACKET_FLAG_LAST : 0, packet_codes,
                                   in_packet, TC_N_Q, CODE_BITS);
        uart_write_bytes(CONFIG_TINYCODEC_UART_NUM, packet, n);
        in_packet = 0;
    }
}

#if CONFIG_TINYCODEC_TEST_VECTORS
static void run_test_vectors(void)
{
    uint16_t codes[TC_N_Q];
    uint32_t bad = 0, cycles_max = 0;
    uint64_t cycles = 0;
    for (int f = 0; f < TC_GOLDEN_SPEECH_FRAMES; f++) {
        uint32_t t0 = esp_cpu_get_cycle_count();
        tinycodec_encode_frame(&enc, tc_golden_speech_pcm + f * TC_HOP_LENGTH, codes);
        uint32_t dt = esp_cpu_get_cycle_count() - t0;
        cycles += dt;
        cycles_max = dt > cycles_max ? dt : cycles_max;
        for (int q = 0; q < TC_N_Q; q++)
            bad += codes[q] != tc_golden_speech_codes[q * TC_GOLDEN_SPEECH_FRAMES + f];
        push_frame(codes, f == TC_GOLDEN_SPEECH_FRAMES - 1);
    }
    ESP_LOGI(TAG, "test vectors: %s (%lu mismatching codes), %llu cycles/frame mean, %lu max, %.1f%% of real time",
             bad ? "FAIL" : "PASS", (unsigned long)bad, cycles / TC_GOLDEN_SPEECH_FRAMES, (unsigned long)cycles_max,
             100.0 * (double)(cycles / TC_GOLDEN_SPEECH_FRAMES) * TC_SAMPLE_RATE / TC_HOP_LENGTH /
                 (CONFIG_ESP_DEFAULT_CPU_FREQ_MHZ * 1e6));
}
#endif

static void run_microphone(void)
{
    i2s_chan_handle_t rx;
    i2s_chan_config_t chan = I2S_CHANNEL_DEFAULT_CONFIG(I2S_NUM_0, I2S_ROLE_MASTER);
    ESP_ERROR_CHECK(i2s_new_channel(&chan, NULL, &rx));
    i2s_std_config_t std = {
        .clk_cfg = I2S_STD_CLK_DEFAULT_CONFIG(TC_SAMPLE_RATE),
        .slot_cfg = I2S_STD_PHILIPS_SLOT_DEFAULT_CONFIG(I2S_DATA_BIT_WIDTH_32BIT, I2S_SLOT_MODE_MONO),
        .gpio_cfg = {.mclk = I2S_GPIO_UNUSED, .bclk = CONFIG_TINYCODEC_I2S_BCLK, .ws = CONFIG_TINYCODEC_I2S_WS,
                     .dout = I2S_GPIO_UNUSED, .din = CONFIG_TINYCODEC_I2S_DIN},
    };
    std.slot_cfg.slot_mask = I2S_STD_SLOT_LEFT;
    ESP_ERROR_CHECK(i2s_channel_init_std_mode(rx, &std));
    ESP_ERROR_CHECK(i2s_channel_enable(rx));
    static int32_t raw[TC_HOP_LENGTH];
    static int16_t pcm[TC_HOP_LENGTH];
    uint16_t codes[TC_N_Q];
    for (;;) {
        size_t got = 0;
        ESP_ERROR_CHECK(i2s_channel_read(rx, raw, sizeof raw, &got, portMAX_DELAY));
        for (int i = 0; i < TC_HOP_LENGTH; i++)
            pcm[i] = (int16_t)(raw[i] >> 16); /* 24-bit sample, MSB aligned in 32 bits -> int16 */
        tinycodec_encode_frame(&enc, pcm, codes);
        push_frame(codes, 0);
    }
}

void app_main(void)
{
    if (tinycodec_encoder_init(&enc, &tinycodec_model, arena, sizeof arena) != 0) {
        ESP_LOGE(TAG, "encoder init failed (arena %u bytes)", (unsigned)sizeof arena);
        return;
    }
    ESP_LOGI(TAG, "preset %s: %d Hz, hop %d, n_q %d, arena %u bytes", TC_MODEL_PRESET, TC_SAMPLE_RATE,
             TC_HOP_LENGTH, TC_N_Q, (unsigned)TC_ARENA_BYTES);
    uart_setup();
#if CONFIG_TINYCODEC_TEST_VECTORS
    run_test_vectors();
    tinycodec_encoder_reset(&enc);
#endif
    run_microphone();
}
