/* Encoder driver: runs the layer table over the static arena, frame by frame; the twin of
 * Int8Encoder.run_graph / encode_frame / encode in tinycodec/export/int8.py. */
#include "tinycodec_encoder.h"

#include <string.h>

int tinycodec_encoder_init(tinycodec_encoder_t *enc, const tc_model_t *model, void *arena, size_t arena_bytes)
{
    volatile int32_t minus_three = -3;
    if ((minus_three >> 1) != -2)
        return -2;
    if (arena_bytes < model->arena_bytes || ((uintptr_t)arena & 3u))
        return -1;
    enc->model = model;
    enc->arena = (uint8_t *)arena;
    codebook_norms(model->codebooks, model->cb_shifts, model->n_q, model->codebook_size, model->dim,
                   (int32_t *)(enc->arena + model->norms));
    tinycodec_encoder_reset(enc);
    return 0;
}

void tinycodec_encoder_reset(tinycodec_encoder_t *enc)
{
    /* zero everything before the norms: activation buffers and every layer's history */
    memset(enc->arena, 0, enc->model->norms);
}

static void run_graph(tinycodec_encoder_t *enc)
{
    const tc_model_t *m = enc->model;
    uint8_t *a = enc->arena;
    for (int i = 0; i < m->n_layers; i++) {
        const tc_layer_t *l = &m->layers[i];
        size_t elem = 1;
        switch (l->op) {
        case TC_OP_CONV1D:
            elem = 2; /* the PCM input */
            conv1d((const int16_t *)(a + l->in), l->w, l->b, l->c_in, l->c_out, l->kernel, l->stride,
                   l->dilation, l->t_out, l->shift, (int8_t *)(a + l->out));
            break;
        case TC_OP_DEPTHWISE:
            depthwise((const int8_t *)(a + l->in), l->w, l->c_in, l->kernel, l->stride, l->dilation, l->t_out,
                      l->shift, (int8_t *)(a + l->out));
            break;
        case TC_OP_POINTWISE:
            pointwise((const int8_t *)(a + l->in), l->w, l->b, l->c_in, l->c_out, l->t_out, l->shift,
                      (int8_t *)(a + l->out));
            break;
        case TC_OP_RELU:
            relu((const int8_t *)(a + l->in), (int8_t *)(a + l->out), (size_t)l->t_out * l->c_in);
            break;
        case TC_OP_RESIDUAL_ADD:
            residual_add((const int8_t *)(a + l->in), (const int8_t *)(a + l->in2), (size_t)l->t_out * l->c_in,
                         l->shift_a, l->shift_b, l->shift, (int8_t *)(a + l->out));
            break;
        default:
            break;
        }
        if (l->history) {
            /* streaming state: the last P input rows become the next frame's history */
            size_t row = (size_t)l->c_in * elem;
            memmove(a + l->in, a + l->in + (size_t)l->t_out * l->stride * row, l->history * row);
        }
    }
}

void tinycodec_encode_frame(tinycodec_encoder_t *enc, const int16_t *pcm, uint16_t *codes)
{
    const tc_model_t *m = enc->model;
    memcpy(enc->arena + m->input, pcm, (size_t)m->hop_length * sizeof(int16_t));
    run_graph(enc);
    rvq_search((const int8_t *)(enc->arena + m->z), m->codebooks, (const int32_t *)(enc->arena + m->norms),
               m->n_q, m->codebook_size, m->dim, m->z_shift, m->cb_shifts,
               (int16_t *)(enc->arena + m->residual), codes);
}

size_t tinycodec_encode(tinycodec_encoder_t *enc, const int16_t *pcm, size_t n, uint16_t *codes)
{
    const tc_model_t *m = enc->model;
    size_t hop = m->hop_length, frames = (n + hop - 1) / hop;
    uint16_t frame_codes[16];
    tinycodec_encoder_reset(enc);
    for (size_t f = 0; f < frames; f++) {
        size_t have = n - f * hop < hop ? n - f * hop : hop;
        if (have == hop) {
            tinycodec_encode_frame(enc, pcm + f * hop, frame_codes);
        } else { /* zero-pad the last partial frame, like the Python reference */
            int16_t *in = (int16_t *)(enc->arena + m->input);
            memset(in, 0, hop * sizeof(int16_t));
            memcpy(in, pcm + f * hop, have * sizeof(int16_t));
            run_graph(enc);
            rvq_search((const int8_t *)(enc->arena + m->z), m->codebooks, (const int32_t *)(enc->arena + m->norms),
                       m->n_q, m->codebook_size, m->dim, m->z_shift, m->cb_shifts,
                       (int16_t *)(enc->arena + m->residual), frame_codes);
        }
        for (int q = 0; q < m->n_q && q < 16; q++)
            codes[(size_t)q * frames + f] = frame_codes[q];
    }
    return frames;
}
