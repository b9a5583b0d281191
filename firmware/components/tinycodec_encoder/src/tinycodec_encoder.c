/* Encoder driver: runs the layer table over the static arena, frame by frame; the twin of
 * Int8Encoder.run_graph / encode_frame / encode in tinycodec/export/int8.py. */
#include "tinycodec_encoder.h"

#include <string.h>

/* a log_spectrum row: PCM in, n_fft a power of two >= 4 split into history + hop, every bin has a
 * channel, its tables given and the FFT work rows (2 n_fft int32) in the kernel scratch */
static int spectrum_fits(const tc_model_t *m, const tc_layer_t *l)
{
    const unsigned n = l->kernel;
    return l->c_in == 1 && n >= 4 && (n & (n - 1)) == 0 && l->stride > 0 && l->history + l->stride == n &&
           l->c_out >= n / 2 + 1 && l->w != NULL && ((const tc_spectrum_t *)l->w)->log_spectrum != NULL &&
           m->scratch_bytes >= 8u * n;
}

static int model_fits(const tc_model_t *m)
{
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].op == TC_OP_LOG_SPECTRUM && !spectrum_fits(m, &m->layers[i]))
            return 0;
    if (m->dim % 4 || m->n_q == 0 || m->residual + 2u * m->dim > m->arena_bytes ||
        m->norms + 4u * m->n_q * m->codebook_size > m->arena_bytes || (m->scratch & 3u) ||
        m->scratch + m->scratch_bytes > m->arena_bytes)
        return 0;
    if (m->tail_norms && m->dim % TC_RVQ_SEGMENT == 0 &&
        ((m->tail_norms & 1u) ||
         m->tail_norms + 2u * m->n_q * m->codebook_size * (m->dim / TC_RVQ_SEGMENT - 1u) > m->arena_bytes))
        return 0;
    return 1;
}

static uint16_t *tail_norms(const tinycodec_encoder_t *enc)
{
    return enc->model->tail_norms ? (uint16_t *)(enc->arena + enc->model->tail_norms) : NULL;
}

int tinycodec_encoder_init(tinycodec_encoder_t *enc, const tc_model_t *model, void *arena, size_t arena_bytes)
{
    volatile int32_t minus_three = -3;
    if ((minus_three >> 1) != -2)
        return -2;
    if (arena_bytes < model->arena_bytes || ((uintptr_t)arena & 3u))
        return -1;
    if (!model_fits(model))
        return -3;
    enc->model = model;
    enc->arena = (uint8_t *)arena;
    tc_codebook_norms(model->codebooks, model->cb_shifts, model->n_q, model->codebook_size, model->dim,
                      (int32_t *)(enc->arena + model->norms), tail_norms(enc));
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
        const int relu = l->flags & TC_LAYER_RELU;
        size_t elem = 1;
        switch (l->op) {
        case TC_OP_CONV1D:
            elem = 2; /* the PCM input */
            tc_conv1d((const int16_t *)(a + l->in), l->w, l->b, l->c_in, l->c_out, l->kernel, l->stride,
                      l->dilation, l->t_out, l->shift, (int8_t *)(a + l->out));
            break;
        case TC_OP_LOG_SPECTRUM: {
            /* tc_log_spectrum through the model's pointer (linked only when a model has the op); the
             * PCM input, the FFT rows in the kernel scratch */
            const tc_spectrum_t *spec = (const tc_spectrum_t *)l->w;
            elem = 2;
            spec->log_spectrum((const int16_t *)(a + l->in), l->kernel, l->stride, spec, l->t_out, l->c_out,
                               (int32_t *)(a + m->scratch), (int8_t *)(a + l->out));
            break;
        }
        case TC_OP_DEPTHWISE:
            tc_depthwise((const int8_t *)(a + l->in), l->w, l->c_in, l->kernel, l->stride, l->dilation, l->t_out,
                         l->shift, (int8_t *)(a + l->out));
            break;
        case TC_OP_POINTWISE:
            tc_pointwise((const int8_t *)(a + l->in), l->w, l->b, l->c_in, l->c_out, l->t_out, l->shift, relu,
                         m->scratch_bytes ? a + m->scratch : NULL, m->scratch_bytes, (int8_t *)(a + l->out));
            break;
        case TC_OP_RELU:
            tc_relu((const int8_t *)(a + l->in), (int8_t *)(a + l->out), (size_t)l->t_out * l->c_in);
            break;
        case TC_OP_RESIDUAL_ADD:
            tc_residual_add((const int8_t *)(a + l->in), (const int8_t *)(a + l->in2), (size_t)l->t_out * l->c_in,
                            l->shift_a, l->shift_b, l->shift, relu, (int8_t *)(a + l->out));
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

/* the layers + the VQ search on the frame already in the input buffer */
static void encode_input(tinycodec_encoder_t *enc, uint16_t *codes, size_t code_stride)
{
    const tc_model_t *m = enc->model;
    run_graph(enc);
    tc_rvq_search((const int8_t *)(enc->arena + m->z), m->codebooks, (const int32_t *)(enc->arena + m->norms),
                  tail_norms(enc), m->n_q, m->codebook_size, m->dim, m->z_shift, m->cb_shifts,
                  (int16_t *)(enc->arena + m->residual), codes, code_stride);
}

void tinycodec_encode_frame(tinycodec_encoder_t *enc, const int16_t *pcm, uint16_t *codes)
{
    memcpy(enc->arena + enc->model->input, pcm, (size_t)enc->model->hop_length * sizeof(int16_t));
    encode_input(enc, codes, 1);
}

size_t tinycodec_encode(tinycodec_encoder_t *enc, const int16_t *pcm, size_t n, uint16_t *codes)
{
    const size_t hop = enc->model->hop_length, frames = (n + hop - 1) / hop;
    int16_t *in = (int16_t *)(enc->arena + enc->model->input);
    tinycodec_encoder_reset(enc);
    for (size_t f = 0; f < frames; f++) {
        size_t have = n - f * hop < hop ? n - f * hop : hop;
        memset(in + have, 0, (hop - have) * sizeof(int16_t)); /* zero-pad the last frame, like Python */
        memcpy(in, pcm + f * hop, have * sizeof(int16_t));
        encode_input(enc, codes + f, frames); /* codes [n_q][frames] */
    }
    return frames;
}
