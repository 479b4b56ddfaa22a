/* rng.h — the program's small random number generators, state held by the caller (no globals,
 * so a test or a request replays exactly). Not for secrets: keys and salts come from
 * libsodium / getrandom.
 *   rng_xorshift64: Marsaglia's xorshift with shifts 13, 7, 17 — the exact sequence the test
 *                   data and the random KV fill were made with; a zero state stays zero.
 *   rng_splitmix64: Vigna's splitmix64, to spread one seed over several states (the sampler's
 *                   xoshiro256** is seeded with it) and to hash a position to a number. */
#ifndef WHALE_BASE_RNG_H
#define WHALE_BASE_RNG_H

#include <stdint.h>

/* Advance *s (which must not be 0) and return its new value. */
uint64_t rng_xorshift64(uint64_t *s);

/* Advance *s by the golden-ratio step and return the mixed value; any *s works. */
uint64_t rng_splitmix64(uint64_t *s);

/* Uniform on [0, 1) from the top 53 bits of x. */
double rng_unit(uint64_t x);

#endif
