/* hash.h — small non-cryptographic hashes for in-memory tables (never for anything an attacker
 * can aim at: keyed hashes are base/siphash.h). */
#ifndef WHALE_BASE_HASH_H
#define WHALE_BASE_HASH_H

#include <stdint.h>

/* Two ids into one well-mixed 64-bit value (the murmur3 finalizer over a packed pair). */
static inline uint64_t hash_id_pair(int32_t a, int32_t b) {
    uint64_t x = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

#endif
