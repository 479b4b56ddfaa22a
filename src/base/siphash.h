/* siphash.h — SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012), a
 * keyed hash: without the 16-byte key its outputs can neither be predicted nor forged, nor
 * traced back to the input. For names and check values that must not give away what they were
 * made from (the context cache's block ids, owner folders and file checks). Not a password
 * hash, and 64 bits of output are a name, not a signature: use the 128-bit form to
 * authenticate.
 *
 * Both output sizes: 8 bytes (the paper's SipHash-2-4) and 16 bytes (the same rounds with the
 * 128-bit finalization the authors added later: 0xee into v1 at the start, 0xee into v2 then
 * 0xdd into v1 at the end). Incremental: init, any number of updates, final; the result equals
 * one call over the concatenated bytes. Outputs are little-endian byte strings, as the paper's
 * test vectors are written. */
#ifndef WHALE_BASE_SIPHASH_H
#define WHALE_BASE_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

#define SIPHASH_KEY_BYTES 16

typedef struct siphash {
    uint64_t v0, v1, v2, v3;
    uint64_t tail; /* bytes of the current word not yet compressed, little-endian */
    uint64_t len;  /* bytes hashed so far */
    int out_bytes; /* 8 or 16 */
} siphash;

/* out_bytes: 8 or 16 (anything else is taken as 8). */
void siphash_init(siphash *h, const uint8_t key[SIPHASH_KEY_BYTES], int out_bytes);
void siphash_update(siphash *h, const void *p, size_t n);
/* Writes out_bytes bytes; h is spent (init again to reuse it). */
void siphash_final(siphash *h, uint8_t *out);

/* One call: the 8-byte result as a number (its little-endian bytes are the paper's output). */
uint64_t siphash64(const uint8_t key[SIPHASH_KEY_BYTES], const void *p, size_t n);

#endif
