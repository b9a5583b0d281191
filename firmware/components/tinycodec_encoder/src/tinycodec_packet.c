/* Streaming packet writer, byte-identical with tinycodec.bitstream.Packet.to_bytes(). */
#include "tinycodec_packet.h"

size_t tc_packet_size(unsigned frames, unsigned n_q, unsigned bits)
{
    return TC_PACKET_OVERHEAD + ((size_t)frames * n_q * bits + 7u) / 8u;
}

uint32_t tc_crc32(const uint8_t *data, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        crc ^= data[i];
        for (int k = 0; k < 8; k++) /* bitwise: no 1 KB table in RAM or flash */
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return crc ^ 0xFFFFFFFFu;
}

static void put_le(uint8_t *p, uint32_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

size_t tc_packet_write(uint8_t *out, size_t cap, uint32_t seq, unsigned flags, const uint16_t *codes,
                       unsigned frames, unsigned n_q, unsigned bits)
{
    size_t total = tc_packet_size(frames, n_q, bits), payload = total - TC_PACKET_OVERHEAD;
    if (cap < total || frames == 0 || frames > 4096 || n_q == 0 || n_q > 255 || bits == 0 || bits > 16)
        return 0;
    out[0] = 'T';
    out[1] = 'P';
    out[2] = 1;
    out[3] = (uint8_t)flags;
    put_le(out + 4, seq, 4);
    put_le(out + 8, frames, 2);
    out[10] = (uint8_t)n_q;
    out[11] = (uint8_t)bits;
    put_le(out + 12, (uint32_t)payload, 2);
    uint8_t *p = out + 14;
    for (size_t i = 0; i < payload; i++)
        p[i] = 0;
    size_t bit = 0;
    for (size_t i = 0; i < (size_t)frames * n_q; i++)
        for (int b = (int)bits - 1; b >= 0; b--, bit++)
            if ((codes[i] >> b) & 1u)
                p[bit >> 3] |= (uint8_t)(0x80u >> (bit & 7));
    put_le(out + 14 + payload, tc_crc32(out, 14 + payload), 4);
    return total;
}
