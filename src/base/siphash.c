/* siphash.c — SipHash-2-4 with 64- and 128-bit outputs; see siphash.h. Written from the
 * paper's description: four 64-bit words of state from the key and four constants, each
 * 8-byte little-endian message word xored into v3, two rounds, then into v0; the last word
 * carries the leftover bytes and the length mod 256 in its top byte; four rounds to finish. */
#include "base/siphash.h"

static uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

static uint64_t load64(const uint8_t *p) {
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--) x = x << 8 | p[i];
    return x;
}

static void store64(uint8_t *p, uint64_t x) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(x >> (8 * i));
}

/* SipRound: the ARX network of the paper's figure 2.2. */
static void round_(siphash *h) {
    h->v0 += h->v1, h->v1 = rotl(h->v1, 13), h->v1 ^= h->v0, h->v0 = rotl(h->v0, 32);
    h->v2 += h->v3, h->v3 = rotl(h->v3, 16), h->v3 ^= h->v2;
    h->v0 += h->v3, h->v3 = rotl(h->v3, 21), h->v3 ^= h->v0;
    h->v2 += h->v1, h->v1 = rotl(h->v1, 17), h->v1 ^= h->v2, h->v2 = rotl(h->v2, 32);
}

static void compress(siphash *h, uint64_t m) {
    h->v3 ^= m;
    round_(h);
    round_(h);
    h->v0 ^= m;
}

void siphash_init(siphash *h, const uint8_t key[SIPHASH_KEY_BYTES], int out_bytes) {
    uint64_t k0 = load64(key), k1 = load64(key + 8);
    h->v0 = k0 ^ 0x736f6d6570736575ull; /* "somepseudorandomlygeneratedbytes" */
    h->v1 = k1 ^ 0x646f72616e646f6dull;
    h->v2 = k0 ^ 0x6c7967656e657261ull;
    h->v3 = k1 ^ 0x7465646279746573ull;
    h->out_bytes = out_bytes == 16 ? 16 : 8;
    if (h->out_bytes == 16) h->v1 ^= 0xee;
    h->tail = 0;
    h->len = 0;
}

void siphash_update(siphash *h, const void *p, size_t n) {
    const uint8_t *b = p;
    size_t have = (size_t)(h->len & 7);
    h->len += n;
    if (have) { /* finish the word a previous update began */
        for (; have < 8 && n; have++, n--) h->tail |= (uint64_t)*b++ << (8 * have);
        if (have < 8) return;
        compress(h, h->tail);
        h->tail = 0;
    }
    for (; n >= 8; n -= 8, b += 8) compress(h, load64(b));
    for (size_t i = 0; i < n; i++) h->tail |= (uint64_t)b[i] << (8 * i);
}

void siphash_final(siphash *h, uint8_t *out) {
    compress(h, h->tail | (h->len & 0xff) << 56);
    h->v2 ^= h->out_bytes == 16 ? 0xee : 0xff;
    for (int i = 0; i < 4; i++) round_(h);
    store64(out, h->v0 ^ h->v1 ^ h->v2 ^ h->v3);
    if (h->out_bytes == 16) {
        h->v1 ^= 0xdd;
        for (int i = 0; i < 4; i++) round_(h);
        store64(out + 8, h->v0 ^ h->v1 ^ h->v2 ^ h->v3);
    }
}

uint64_t siphash64(const uint8_t key[SIPHASH_KEY_BYTES], const void *p, size_t n) {
    siphash h;
    uint8_t out[8];
    siphash_init(&h, key, 8);
    siphash_update(&h, p, n);
    siphash_final(&h, out);
    return load64(out);
}
