/* dtype.c — the type table, byte-size arithmetic and the scalar dequantize of every type.
 *
 * Owns: the numbers in the table (GGUF/ggml block sizes and bytes), the half/bfloat16/FP8
 * conversions, and one plain C dequantize per block format. This is the reference: it favours
 * reading like the format description over speed, and the fast kernels are tested against it.
 * Does not own: quantizing (we only load models that are already quantized), fast kernels.
 *
 * Every block is read byte by byte in little-endian order (GGUF is little-endian, and blocks
 * of 18 or 210 bytes leave multi-byte fields unaligned), so the code is the same on any host
 * and clean under UBSan.
 *
 * Exactness: every product below is exact in f32. An f16 scale has at most 11 significant
 * bits and the integers it multiplies at most 12 between them (Q6_K: a 7-bit scale times a
 * 5-bit q), 23 bits in all, and with finite scales no product leaves f32's normal range. So
 * each element is its exact value rounded at most once: by the final `+ m` / `- dmin * m` of
 * Q4_1, Q5_1, Q2_K, Q4_K, Q5_K, or by Q8_K's f32 d * q. Results are therefore bitwise equal to
 * ggml's and gguf-py's whatever order the multiplications run in, and FMA contraction cannot
 * change them either (a fused a * b + c rounds once, as a + c does when a * b is exact). */
#include "formats/dtype.h"

#include <assert.h>
#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * The table. block_elems/block_bytes are GGUF's (ggml's GGML_QUANT_SIZES); the "K" types use
 * super-blocks of QK_K = 256 elements.
 * ------------------------------------------------------------------------------------------- */

#define QK   32  /* elements per block of the Q4_0 ... Q8_1 family */
#define QK_K 256 /* elements per super-block of the K family */

/* One type per line reads as a table. */
/* clang-format off */
static const dtype_info dtype_table[] = {
    {WHALE_DTYPE_F32, "F32", 1, 4, 1},
    {WHALE_DTYPE_F16, "F16", 1, 2, 1},
    {WHALE_DTYPE_Q4_0, "Q4_0", QK, 18, 1},
    {WHALE_DTYPE_Q4_1, "Q4_1", QK, 20, 1},
    {WHALE_DTYPE_Q5_0, "Q5_0", QK, 22, 1},
    {WHALE_DTYPE_Q5_1, "Q5_1", QK, 24, 1},
    {WHALE_DTYPE_Q8_0, "Q8_0", QK, 34, 1},
    {WHALE_DTYPE_Q8_1, "Q8_1", QK, 36, 1},
    {WHALE_DTYPE_Q2_K, "Q2_K", QK_K, 84, 1},
    {WHALE_DTYPE_Q3_K, "Q3_K", QK_K, 110, 1},
    {WHALE_DTYPE_Q4_K, "Q4_K", QK_K, 144, 1},
    {WHALE_DTYPE_Q5_K, "Q5_K", QK_K, 176, 1},
    {WHALE_DTYPE_Q6_K, "Q6_K", QK_K, 210, 1},
    {WHALE_DTYPE_Q8_K, "Q8_K", QK_K, 292, 1},
    {WHALE_DTYPE_I8, "I8", 1, 1, 0},
    {WHALE_DTYPE_I16, "I16", 1, 2, 0},
    {WHALE_DTYPE_I32, "I32", 1, 4, 0},
    {WHALE_DTYPE_I64, "I64", 1, 8, 0},
    {WHALE_DTYPE_F64, "F64", 1, 8, 0},
    {WHALE_DTYPE_BF16, "BF16", 1, 2, 1},
    {WHALE_DTYPE_F8_E4M3, "F8_E4M3", 1, 1, 1},
    {WHALE_DTYPE_F8_E5M2, "F8_E5M2", 1, 1, 1},
    {WHALE_DTYPE_U8, "U8", 1, 1, 0},
};
/* clang-format on */

const dtype_info *dtype_get(int t) {
    for (size_t i = 0; i < sizeof dtype_table / sizeof dtype_table[0]; i++)
        if ((int)dtype_table[i].type == t) return &dtype_table[i];
    return NULL;
}

const char *dtype_name(int t) {
    const dtype_info *d = dtype_get(t);
    return d ? d->name : "?";
}

int dtype_bytes(int t, int64_t n, size_t *out) {
    const dtype_info *d = dtype_get(t);
    if (!d || n < 0 || n % d->block_elems != 0) return -1;
    uint64_t blocks = (uint64_t)(n / d->block_elems);
    if (blocks > SIZE_MAX / d->block_bytes) return -1;
    *out = (size_t)blocks * d->block_bytes;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Scalar conversions. Bits move through memcpy, never through pointer casts.
 * ------------------------------------------------------------------------------------------- */

static float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. Every half is exactly a
 * float, so this conversion is exact; NaN payloads are kept (shifted into the top bits). */
float fp16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (man << 13)); /* inf, NaN */
    if (exp != 0) return f32_from_bits(sign | ((exp + 127 - 15) << 23) | (man << 13));
    /* zero or subnormal: man * 2^-24, exact in float */
    float v = (float)man * 0x1p-24f;
    return sign ? -v : v;
}

/* Round to nearest even; overflow goes to inf, NaN stays NaN (quiet, sign kept), and results
 * below the half range become half subnormals or zero, rounded the same way. */
uint16_t f32_to_fp16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t exp = (u >> 23) & 0xff;
    uint32_t man = u & 0x7fffff;
    if (exp == 0xff) /* inf, or NaN forced quiet so a payload cut to 10 bits can't become inf */
        return (uint16_t)(sign | 0x7c00 | (man ? 0x200 | (man >> 13) : 0));
    int e = (int)exp - 127 + 15; /* the half's biased exponent */
    if (e >= 0x1f) return (uint16_t)(sign | 0x7c00);
    if (e <= 0) {
        /* Subnormal half (or zero): the value is m * 2^-24 with m = full significand shifted
         * right by (14 - e) bits (float significand has 23 fraction bits; 2^-24 / 2^(exp-150)). */
        if (e < -10) return sign; /* below half the smallest subnormal: rounds to zero */
        uint32_t sig = man | 0x800000;
        int shift = 14 - e;
        uint32_t q = sig >> shift;
        uint32_t rem = sig & ((1u << shift) - 1);
        uint32_t halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (q & 1))) q++; /* may carry into the normals */
        return (uint16_t)(sign | q);
    }
    uint32_t q = ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++; /* a carry may reach 0x7c00 = inf */
    return (uint16_t)(sign | q);
}

/* bfloat16 is the top half of a float: exact. */
float bf16_to_f32(uint16_t h) {
    return f32_from_bits((uint32_t)h << 16);
}

uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffff) > 0x7f800000) /* NaN: keep sign and top payload, force quiet */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fff + ((u >> 16) & 1); /* round to nearest even; a carry may give inf, as it should */
    return (uint16_t)(u >> 16);
}

/* FP8 E4M3, the "fn" variant (OCP FP8 E4M3, DeepSeek-V3's weights): 1 sign, 4 exponent
 * (bias 7), 3 mantissa bits; no infinities, S.1111.111 is NaN, max 448, subnormals m/8*2^-6. */
float fp8_e4m3_to_f32(uint8_t v) {
    uint32_t exp = (v >> 3) & 0xf;
    uint32_t man = v & 0x7;
    float x;
    if (exp == 0xf && man == 0x7)
        x = NAN;
    else if (exp == 0)
        x = (float)man * 0x1p-9f; /* (man / 8) * 2^-6 */
    else
        x = f32_from_bits(((exp + 127 - 7) << 23) | (man << 20));
    return (v & 0x80) ? -x : x;
}

/* FP8 E5M2: IEEE-like (1, 5 bias 15, 2) with inf and NaN — exactly the top byte of a half. */
float fp8_e5m2_to_f32(uint8_t v) {
    return fp16_to_f32((uint16_t)(v << 8));
}

/* ---------------------------------------------------------------------------------------------
 * Dequantize. One function per block format; each is preceded by the block's byte map.
 * All multi-byte fields are little-endian.
 * ------------------------------------------------------------------------------------------- */

static float rd_f16(const uint8_t *p) {
    return fp16_to_f32((uint16_t)(p[0] | (p[1] << 8)));
}

static uint32_t rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Q4_0, 32 elements in 18 bytes:
 *   [0..1]   d  (f16)
 *   [2..17]  qs (16 bytes): byte j low nibble = element j, high nibble = element j+16
 * x = d * (q - 8). */
static void dq_q4_0(const uint8_t *b, float *y) {
    float d = rd_f16(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < QK / 2; j++) {
        y[j] = (float)((qs[j] & 0xf) - 8) * d;
        y[j + QK / 2] = (float)((qs[j] >> 4) - 8) * d;
    }
}

/* Q4_1, 32 elements in 20 bytes:
 *   [0..1]   d  (f16)
 *   [2..3]   m  (f16), the block minimum
 *   [4..19]  qs: as Q4_0 (low nibbles 0..15, high nibbles 16..31)
 * x = d * q + m. */
static void dq_q4_1(const uint8_t *b, float *y) {
    float d = rd_f16(b), m = rd_f16(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < QK / 2; j++) {
        y[j] = (float)(qs[j] & 0xf) * d + m;
        y[j + QK / 2] = (float)(qs[j] >> 4) * d + m;
    }
}

/* Q5_0, 32 elements in 22 bytes:
 *   [0..1]   d  (f16)
 *   [2..5]   qh (u32 LE): bit i is the 5th bit of element i
 *   [6..21]  qs: low 4 bits, laid out as Q4_0
 * x = d * (q - 16). */
static void dq_q5_0(const uint8_t *b, float *y) {
    float d = rd_f16(b);
    uint32_t qh = rd_u32(b + 2);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < QK / 2; j++) {
        int h0 = (qh >> j) & 1, h1 = (qh >> (j + QK / 2)) & 1;
        y[j] = (float)(((qs[j] & 0xf) | (h0 << 4)) - 16) * d;
        y[j + QK / 2] = (float)(((qs[j] >> 4) | (h1 << 4)) - 16) * d;
    }
}

/* Q5_1, 32 elements in 24 bytes:
 *   [0..1]   d  (f16)
 *   [2..3]   m  (f16)
 *   [4..7]   qh (u32 LE): bit i is the 5th bit of element i
 *   [8..23]  qs: low 4 bits, laid out as Q4_0
 * x = d * q + m. */
static void dq_q5_1(const uint8_t *b, float *y) {
    float d = rd_f16(b), m = rd_f16(b + 2);
    uint32_t qh = rd_u32(b + 4);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < QK / 2; j++) {
        int h0 = (qh >> j) & 1, h1 = (qh >> (j + QK / 2)) & 1;
        y[j] = (float)((qs[j] & 0xf) | (h0 << 4)) * d + m;
        y[j + QK / 2] = (float)((qs[j] >> 4) | (h1 << 4)) * d + m;
    }
}

/* Q8_0, 32 elements in 34 bytes:
 *   [0..1]   d  (f16)
 *   [2..33]  qs (int8), element j at byte 2+j
 * x = d * q.
 * Q8_1, 32 elements in 36 bytes: the same with [2..3] s (f16, d * sum(q), unused here) and
 * qs at [4..35]. */
static void dq_q8(const uint8_t *b, const uint8_t *qs, float *y) {
    float d = rd_f16(b);
    for (int j = 0; j < QK; j++) y[j] = (float)(int8_t)qs[j] * d;
}

/* Q2_K, 256 elements in 84 bytes:
 *   [0..15]   scales: byte i is sub-block i (16 elements): low nibble scale, high nibble min
 *   [16..79]  qs (64 bytes, 2 bits each): two halves of 128 elements; half h uses bytes
 *             qs[32h .. 32h+31], and bit pair s (bits 2s..2s+1) of byte l is element
 *             128h + 32s + l
 *   [80..81]  d    (f16), super-block scale of the scales
 *   [82..83]  dmin (f16), super-block scale of the mins
 * x = (d * sc) * q - (dmin * m). */
static void dq_q2_k(const uint8_t *b, float *y) {
    const uint8_t *sc = b, *qs = b + 16;
    float d = rd_f16(b + 80), dmin = rd_f16(b + 82);
    for (int i = 0; i < QK_K; i++) {
        int h = i / 128, s = (i % 128) / 32, l = i % 32;
        int q = (qs[32 * h + l] >> (2 * s)) & 3;
        int sub = i / 16;
        float dl = d * (float)(sc[sub] & 0xf), ml = dmin * (float)(sc[sub] >> 4);
        y[i] = dl * (float)q - ml;
    }
}

/* Q3_K, 256 elements in 110 bytes:
 *   [0..31]    hmask: bit g of byte l is the high bit of element 32g + l (g = 0..7); the
 *              value is offset by -4 when that bit is 0 (a set bit means no offset)
 *   [32..95]   qs (2 bits each), laid out as in Q2_K
 *   [96..107]  scales: 16 6-bit signed scales (stored +32), one per 16 elements. Scale j's
 *              low 4 bits: byte j (j < 8) low nibble, or byte j-8 high nibble (j >= 8);
 *              its high 2 bits: bits 2*(j/4)..+1 of byte 8 + j%4
 *   [108..109] d (f16)
 * x = (d * (sc - 32)) * (q - (hbit ? 0 : 4)). */
static void dq_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hmask = b, *qs = b + 32, *sc = b + 96;
    float d = rd_f16(b + 108);
    for (int i = 0; i < QK_K; i++) {
        int h = i / 128, s = (i % 128) / 32, l = i % 32, g = i / 32;
        int q = (qs[32 * h + l] >> (2 * s)) & 3;
        if (!((hmask[l] >> g) & 1)) q -= 4;
        int j = i / 16;
        int lo = j < 8 ? (sc[j] & 0xf) : (sc[j - 8] >> 4);
        int hi = (sc[8 + j % 4] >> (2 * (j / 4))) & 3;
        float dl = d * (float)((lo | (hi << 4)) - 32);
        y[i] = dl * (float)q;
    }
}

/* The 12 scale bytes shared by Q4_K and Q5_K hold 8 (scale, min) pairs of 6 bits, one pair
 * per 32 elements:
 *   j < 4:  scale = s[j] & 63,                         min = s[j+4] & 63
 *   j >= 4: scale = (s[j+4] & 15) | (s[j-4] >> 6) << 4, min = (s[j+4] >> 4) | (s[j] >> 6) << 4 */
static void k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Q4_K, 256 elements in 144 bytes:
 *   [0..1]    d    (f16)
 *   [2..3]    dmin (f16)
 *   [4..15]   scales: 8 (scale, min) pairs, see k_scale_min
 *   [16..143] qs (128 bytes): four chunks of 32 bytes; chunk c's low nibbles are elements
 *             64c + 0..31, its high nibbles 64c + 32..63
 * x = (d * sc) * q - (dmin * m), with (sc, m) the pair of the 32-element group. */
static void dq_q4_k(const uint8_t *b, float *y) {
    float d = rd_f16(b), dmin = rd_f16(b + 2);
    const uint8_t *scales = b + 4, *qs = b + 16;
    for (int g = 0; g < 8; g++) { /* one (scale, min) pair per 32-element group */
        int sc, m;
        k_scale_min(scales, g, &sc, &m);
        float ds = d * (float)sc, dm = dmin * (float)m;
        const uint8_t *q = qs + 32 * (g / 2);
        for (int l = 0; l < 32; l++) y[32 * g + l] = ds * (float)((g % 2 == 0) ? (q[l] & 0xf) : (q[l] >> 4)) - dm;
    }
}

/* Q5_K, 256 elements in 176 bytes:
 *   [0..1]    d    (f16)
 *   [2..3]    dmin (f16)
 *   [4..15]   scales: 8 (scale, min) pairs, see k_scale_min
 *   [16..47]  qh: bit g of byte l is the 5th bit of element 32g + l
 *   [48..175] qs: low 4 bits, laid out as Q4_K's qs
 * x = (d * sc) * q - (dmin * m). */
static void dq_q5_k(const uint8_t *b, float *y) {
    float d = rd_f16(b), dmin = rd_f16(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *qs = b + 48;
    for (int i = 0; i < QK_K; i++) {
        int g = i / 32, c = i / 64, l = i % 32;
        int q = (g % 2 == 0) ? (qs[32 * c + l] & 0xf) : (qs[32 * c + l] >> 4);
        q |= ((qh[l] >> g) & 1) << 4;
        int sc, m;
        k_scale_min(scales, g, &sc, &m);
        y[i] = (d * (float)sc) * (float)q - dmin * (float)m;
    }
}

/* Q6_K, 256 elements in 210 bytes:
 *   [0..127]   ql: low 4 bits. Two halves of 128 elements; half h uses ql[64h .. 64h+63]:
 *              element 128h + l (l < 32) is the low nibble of ql[64h + l], +32 the low nibble
 *              of ql[64h + 32 + l], +64 the high nibble of ql[64h + l], +96 the high nibble
 *              of ql[64h + 32 + l]
 *   [128..191] qh: high 2 bits. Half h uses qh[32h .. 32h+31]: bits 2s..2s+1 of qh[32h + l]
 *              belong to element 128h + 32s + l
 *   [192..207] scales (int8), one per 16 elements
 *   [208..209] d (f16)
 * x = (d * sc) * (q - 32). */
static void dq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    float d = rd_f16(b + 208);
    for (int i = 0; i < QK_K; i++) {
        int h = i / 128, s = (i % 128) / 32, l = i % 32;
        uint8_t lb = ql[64 * h + 32 * (s % 2) + l];
        int lo = (s < 2) ? (lb & 0xf) : (lb >> 4);
        int hi = (qh[32 * h + l] >> (2 * s)) & 3;
        int q = (lo | (hi << 4)) - 32;
        float dl = d * (float)(int8_t)b[192 + i / 16];
        y[i] = dl * (float)q;
    }
}

/* Q8_K, 256 elements in 292 bytes:
 *   [0..3]     d (f32, not f16)
 *   [4..259]   qs (int8)
 *   [260..291] bsums (16 x int16, sums of groups of 16 q; used by dot products only)
 * x = d * q. */
static void dq_q8_k(const uint8_t *b, float *y) {
    float d = f32_from_bits(rd_u32(b));
    for (int i = 0; i < QK_K; i++) y[i] = d * (float)(int8_t)b[4 + i];
}

void dequantize_row(int t, const void *src, float *dst, int64_t n) {
    const dtype_info *info = dtype_get(t);
    assert(info && info->can_dequantize && n >= 0 && n % info->block_elems == 0);
    if (!info || !info->can_dequantize || n <= 0) return;
    const uint8_t *p = src;
    int64_t nb = n / info->block_elems;
    size_t bb = info->block_bytes;
    int64_t be = info->block_elems;
    for (int64_t i = 0; i < nb; i++, p += bb) {
        float *y = dst + i * be;
        switch (t) {
        case WHALE_DTYPE_F32:
            *y = f32_from_bits(rd_u32(p));
            break;
        case WHALE_DTYPE_F16:
            *y = rd_f16(p);
            break;
        case WHALE_DTYPE_BF16:
            *y = bf16_to_f32((uint16_t)(p[0] | (p[1] << 8)));
            break;
        case WHALE_DTYPE_F8_E4M3:
            *y = fp8_e4m3_to_f32(*p);
            break;
        case WHALE_DTYPE_F8_E5M2:
            *y = fp8_e5m2_to_f32(*p);
            break;
        case WHALE_DTYPE_Q4_0:
            dq_q4_0(p, y);
            break;
        case WHALE_DTYPE_Q4_1:
            dq_q4_1(p, y);
            break;
        case WHALE_DTYPE_Q5_0:
            dq_q5_0(p, y);
            break;
        case WHALE_DTYPE_Q5_1:
            dq_q5_1(p, y);
            break;
        case WHALE_DTYPE_Q8_0:
            dq_q8(p, p + 2, y);
            break;
        case WHALE_DTYPE_Q8_1:
            dq_q8(p, p + 4, y);
            break;
        case WHALE_DTYPE_Q2_K:
            dq_q2_k(p, y);
            break;
        case WHALE_DTYPE_Q3_K:
            dq_q3_k(p, y);
            break;
        case WHALE_DTYPE_Q4_K:
            dq_q4_k(p, y);
            break;
        case WHALE_DTYPE_Q5_K:
            dq_q5_k(p, y);
            break;
        case WHALE_DTYPE_Q6_K:
            dq_q6_k(p, y);
            break;
        case WHALE_DTYPE_Q8_K:
            dq_q8_k(p, y);
            break;
        default:
            assert(!"can_dequantize set for a type with no dequantizer");
            return;
        }
    }
}
