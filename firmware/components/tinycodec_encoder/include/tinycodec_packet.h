/* The tinycodec streaming packet (tinycodec/bitstream/packet.py), written on the device:
 *
 *   offset size  field
 *   0      2     sync "TP"
 *   2      1     version (1)
 *   3      1     flags (bit 0: last packet of the stream)
 *   4      4     sequence number, little-endian
 *   8      2     frames in this packet, little-endian
 *   10     1     n_q
 *   11     1     bits per code (log2 codebook_size)
 *   12     2     payload bytes, little-endian
 *   14     N     codes, frame-major ([frames][n_q]), each `bits` bits MSB first, zero-padded
 *   14+N   4     CRC32 (zlib polynomial) of bytes 0 .. 14+N-1, little-endian
 */
#ifndef TINYCODEC_PACKET_H
#define TINYCODEC_PACKET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TC_PACKET_OVERHEAD 18u
#define TC_PACKET_FLAG_LAST 1u

/* Bytes of a packet of `frames` frames. */
size_t tc_packet_size(unsigned frames, unsigned n_q, unsigned bits);
/* CRC32 as zlib.crc32 (reflected 0xEDB88320, init and final xor 0xFFFFFFFF). */
uint32_t tc_crc32(const uint8_t *data, size_t n);
/* Write one packet; codes are frame-major [frames][n_q]. Returns its size, 0 if `cap` is short. */
size_t tc_packet_write(uint8_t *out, size_t cap, uint32_t seq, unsigned flags, const uint16_t *codes,
                       unsigned frames, unsigned n_q, unsigned bits);

#ifdef __cplusplus
}
#endif
#endif
