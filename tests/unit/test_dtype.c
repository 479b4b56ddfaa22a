/* test_dtype.c — the dtype table, byte sizes, scalar conversions and hand-built blocks.
 *
 * Each block test packs known quantized values into the documented byte map (element by
 * element, the packing written independently of the dequantizer's loops) and checks that
 * dequantize_row gives back scale * q - min exactly. tests/py/test_dequant.py compares the
 * same code against gguf-py on random blocks and on real model tensors. */
#include "base/rng.h"
#include "check.h"
#include "formats/dtype.h"

#include <float.h>
#include <math.h>
#include <stdint.h>

#define GUARD     8          /* floats after each output row that must stay untouched */
#define GUARD_VAL -12345.25f /* a value no test block produces */

static uint64_t rng_state = 0x12345678u;
static uint32_t rng(void) { return (uint32_t)(rng_xorshift64(&rng_state) >> 32); } /* fixed seed */

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

/* Dequantize n elements of t from src into out[0..n) and check the guard after it. */
static void dq_guarded(int t, const void *src, float *out, int64_t n) {
    for (int i = 0; i < GUARD; i++) out[n + i] = GUARD_VAL;
    dequantize_row(t, src, out, n);
    for (int i = 0; i < GUARD; i++)
        CHECKF(out[n + i] == GUARD_VAL, "%s wrote past n", dtype_name(t));
}

/* ---- table ---------------------------------------------------------------------------- */

static void test_table(void) {
    static const struct {
        int t;
        const char *name;
        int64_t be;
        size_t bb;
    } want[] = {
        {WHALE_DTYPE_F32, "F32", 1, 4},         {WHALE_DTYPE_F16, "F16", 1, 2},
        {WHALE_DTYPE_BF16, "BF16", 1, 2},       {WHALE_DTYPE_Q4_0, "Q4_0", 32, 18},
        {WHALE_DTYPE_Q4_1, "Q4_1", 32, 20},     {WHALE_DTYPE_Q5_0, "Q5_0", 32, 22},
        {WHALE_DTYPE_Q5_1, "Q5_1", 32, 24},     {WHALE_DTYPE_Q8_0, "Q8_0", 32, 34},
        {WHALE_DTYPE_Q8_1, "Q8_1", 32, 36},     {WHALE_DTYPE_Q2_K, "Q2_K", 256, 84},
        {WHALE_DTYPE_Q3_K, "Q3_K", 256, 110},   {WHALE_DTYPE_Q4_K, "Q4_K", 256, 144},
        {WHALE_DTYPE_Q5_K, "Q5_K", 256, 176},   {WHALE_DTYPE_Q6_K, "Q6_K", 256, 210},
        {WHALE_DTYPE_Q8_K, "Q8_K", 256, 292},   {WHALE_DTYPE_I8, "I8", 1, 1},
        {WHALE_DTYPE_I16, "I16", 1, 2},         {WHALE_DTYPE_I32, "I32", 1, 4},
        {WHALE_DTYPE_I64, "I64", 1, 8},         {WHALE_DTYPE_F64, "F64", 1, 8},
        {WHALE_DTYPE_F8_E4M3, "F8_E4M3", 1, 1}, {WHALE_DTYPE_F8_E5M2, "F8_E5M2", 1, 1},
        {WHALE_DTYPE_U8, "U8", 1, 1},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const dtype_info *d = dtype_get(want[i].t);
        CHECKF(d != NULL, "type %d missing", want[i].t);
        if (!d) continue;
        CHECK((int)d->type == want[i].t);
        CHECKF(strcmp(d->name, want[i].name) == 0, "%s vs %s", d->name, want[i].name);
        CHECK(strcmp(dtype_name(want[i].t), want[i].name) == 0);
        CHECKF(d->block_elems == want[i].be && d->block_bytes == want[i].bb, "%s", d->name);
    }
    /* what the brief requires to dequantize */
    static const int deq[] = {
        WHALE_DTYPE_F32,  WHALE_DTYPE_F16,  WHALE_DTYPE_BF16,    WHALE_DTYPE_Q4_0,
        WHALE_DTYPE_Q4_1, WHALE_DTYPE_Q5_0, WHALE_DTYPE_Q5_1,    WHALE_DTYPE_Q8_0,
        WHALE_DTYPE_Q2_K, WHALE_DTYPE_Q3_K, WHALE_DTYPE_Q4_K,    WHALE_DTYPE_Q5_K,
        WHALE_DTYPE_Q6_K, WHALE_DTYPE_Q8_K, WHALE_DTYPE_F8_E4M3, WHALE_DTYPE_F8_E5M2};
    for (size_t i = 0; i < sizeof deq / sizeof deq[0]; i++)
        CHECKF(dtype_get(deq[i])->can_dequantize, "%s", dtype_name(deq[i]));
    CHECK(!dtype_get(WHALE_DTYPE_I32)->can_dequantize);
    /* ids GGUF retired (4, 5), newer types, negatives */
    static const int unknown[] = {-1, 4, 5, 16, 23, 29, 31, 39, 999, 1003, 1 << 30};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        CHECKF(dtype_get(unknown[i]) == NULL, "%d", unknown[i]);
        CHECK(strcmp(dtype_name(unknown[i]), "?") == 0);
    }
}

static void test_bytes(void) {
    size_t out = 77;
    CHECK(dtype_bytes(WHALE_DTYPE_Q4_K, 256, &out) == 0 && out == 144);
    CHECK(dtype_bytes(WHALE_DTYPE_Q4_K, 256 * 3, &out) == 0 && out == 432);
    CHECK(dtype_bytes(WHALE_DTYPE_Q8_0, 4096, &out) == 0 && out == 4096 / 32 * 34);
    CHECK(dtype_bytes(WHALE_DTYPE_F32, 0, &out) == 0 && out == 0);
    CHECK(dtype_bytes(WHALE_DTYPE_Q6_K, 0, &out) == 0 && out == 0);
    CHECK(dtype_bytes(WHALE_DTYPE_BF16, 7, &out) == 0 && out == 14);
    CHECK(dtype_bytes(WHALE_DTYPE_I64, 3, &out) == 0 && out == 24);

    out = 77; /* failures leave *out alone */
    CHECK(dtype_bytes(WHALE_DTYPE_F32, -1, &out) == -1);
    CHECK(dtype_bytes(WHALE_DTYPE_F32, INT64_MIN, &out) == -1);
    CHECK(dtype_bytes(WHALE_DTYPE_Q4_K, 255, &out) == -1);
    CHECK(dtype_bytes(WHALE_DTYPE_Q4_K, 257, &out) == -1);
    CHECK(dtype_bytes(WHALE_DTYPE_Q4_0, 16, &out) == -1);
    CHECK(dtype_bytes(WHALE_DTYPE_Q4_K, -256, &out) == -1);
    CHECK(dtype_bytes(4, 32, &out) == -1);
    CHECK(dtype_bytes(-7, 32, &out) == -1);
    CHECK(out == 77);

    /* overflow: 4 bytes per element overflows a 64-bit size_t at exactly 2^62 elements */
    if (SIZE_MAX == UINT64_MAX) {
        CHECK(dtype_bytes(WHALE_DTYPE_F32, INT64_MAX, &out) == -1);
        CHECK(dtype_bytes(WHALE_DTYPE_F32, (int64_t)1 << 62, &out) == -1);
        CHECK(dtype_bytes(WHALE_DTYPE_F32, ((int64_t)1 << 62) - 1, &out) == 0 &&
              out == SIZE_MAX - 3);
        CHECK(dtype_bytes(WHALE_DTYPE_F64, ((int64_t)1 << 61), &out) == -1);
        CHECK(dtype_bytes(WHALE_DTYPE_I64, INT64_MAX, &out) == -1);
        CHECK(dtype_bytes(WHALE_DTYPE_U8, INT64_MAX, &out) == 0 && out == (size_t)INT64_MAX);
        CHECK(dtype_bytes(WHALE_DTYPE_F16, INT64_MAX, &out) == 0 && out == (size_t)INT64_MAX * 2);
        /* largest whole number of Q8_0 blocks: fits (34/32 bytes per element) */
        int64_t n = INT64_MAX / 32 * 32;
        CHECK(dtype_bytes(WHALE_DTYPE_Q8_0, n, &out) == 0 && out == (size_t)(n / 32) * 34);
    } else {
        CHECK(dtype_bytes(WHALE_DTYPE_F32, (int64_t)SIZE_MAX / 4 + 1, &out) == -1);
    }
}

/* ---- conversions ---------------------------------------------------------------------- */

static void test_fp16(void) {
    CHECK(fp16_to_f32(0x0000) == 0.0f && !signbit(fp16_to_f32(0x0000)));
    CHECK(fp16_to_f32(0x8000) == 0.0f && signbit(fp16_to_f32(0x8000)));
    CHECK(fp16_to_f32(0x3c00) == 1.0f);
    CHECK(fp16_to_f32(0xc000) == -2.0f);
    CHECK(fp16_to_f32(0x3555) == 0x1.554p-2f);
    CHECK(fp16_to_f32(0x7bff) == 65504.0f);
    CHECK(fp16_to_f32(0x0400) == 0x1p-14f);   /* smallest normal */
    CHECK(fp16_to_f32(0x0001) == 0x1p-24f);   /* smallest subnormal */
    CHECK(fp16_to_f32(0x03ff) == 0x3ffp-24f); /* largest subnormal */
    CHECK(fp16_to_f32(0x8001) == -0x1p-24f);
    CHECK(isinf(fp16_to_f32(0x7c00)) && fp16_to_f32(0x7c00) > 0);
    CHECK(isinf(fp16_to_f32(0xfc00)) && fp16_to_f32(0xfc00) < 0);
    CHECK(isnan(fp16_to_f32(0x7c01)) && isnan(fp16_to_f32(0x7e00)) && isnan(fp16_to_f32(0xffff)));

    /* every half survives the round trip bit for bit; NaNs stay NaN */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = fp16_to_f32((uint16_t)h);
        uint16_t back = f32_to_fp16(f);
        int nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (nan) {
            if (!isnan(f) || !isnan(fp16_to_f32(back)) || (back & 0x8000) != (h & 0x8000)) bad++;
        } else if (back != h) {
            bad++;
        }
    }
    CHECKF(bad == 0, "%d halves fail the round trip", bad);

    /* rounding: midpoints between neighbouring finite halves go to the even one */
    bad = 0;
    for (uint32_t h = 0; h < 0x7bff; h++) {
        float lo = fp16_to_f32((uint16_t)h), hi = fp16_to_f32((uint16_t)(h + 1));
        float mid = lo + (hi - lo) / 2; /* exact: a half's midpoint has few enough bits */
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        if (f32_to_fp16(mid) != even) bad++;
        if (f32_to_fp16(nextafterf(mid, 0)) != h) bad++;
        if (f32_to_fp16(nextafterf(mid, INFINITY)) != h + 1) bad++;
        if (f32_to_fp16(-mid) != (even | 0x8000)) bad++;
    }
    CHECKF(bad == 0, "%d rounding cases wrong", bad);

    CHECK(f32_to_fp16(65519.0f) == 0x7bff);
    CHECK(f32_to_fp16(65520.0f) == 0x7c00); /* halfway to 2^16: even is inf */
    CHECK(f32_to_fp16(1e30f) == 0x7c00 && f32_to_fp16(-1e30f) == 0xfc00);
    CHECK(f32_to_fp16(FLT_MAX) == 0x7c00);
    CHECK(f32_to_fp16(INFINITY) == 0x7c00 && f32_to_fp16(-INFINITY) == 0xfc00);
    CHECK(f32_to_fp16(0x1p-25f) == 0x0000);                /* half the smallest: even */
    CHECK(f32_to_fp16(nextafterf(0x1p-25f, 1)) == 0x0001); /* just above: rounds up */
    CHECK(f32_to_fp16(0x1.8p-24f) == 0x0002);              /* 1.5 ulp: even is 2 */
    CHECK(f32_to_fp16(0x1p-26f) == 0x0000 && f32_to_fp16(-0x1p-26f) == 0x8000);
    CHECK(f32_to_fp16(FLT_MIN) == 0x0000);
    CHECK(f32_to_fp16(FLT_TRUE_MIN) == 0x0000);
    CHECK(f32_to_fp16(-0.0f) == 0x8000);
    CHECK(f32_to_fp16(0x3ff.8p-24f) == 0x0400); /* largest subnormal + half: carries */
    CHECK(f32_to_fp16(1.0f + 0x1p-11f) == 0x3c00);
    CHECK(f32_to_fp16(1.0f + 0x3p-11f) == 0x3c02);
    uint16_t qn = f32_to_fp16(float_of(0x7f800001u)); /* payload only in low bits */
    CHECK((qn & 0x7c00) == 0x7c00 && (qn & 0x3ff) != 0);
    qn = f32_to_fp16(float_of(0xffc00000u));
    CHECK((qn & 0xfc00) == 0xfc00 && (qn & 0x3ff) != 0);
}

static void test_bf16(void) {
    CHECK(bf16_to_f32(0x3f80) == 1.0f);
    CHECK(bf16_to_f32(0xc040) == -3.0f);
    CHECK(bf16_to_f32(0x0001) == 0x1p-133f); /* subnormal */
    CHECK(isinf(bf16_to_f32(0x7f80)) && isinf(bf16_to_f32(0xff80)));
    CHECK(isnan(bf16_to_f32(0x7fc0)) && isnan(bf16_to_f32(0x7f81)));

    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = bf16_to_f32((uint16_t)h);
        uint16_t back = f32_to_bf16(f);
        if (isnan(f) ? !isnan(bf16_to_f32(back)) : back != h) bad++;
    }
    CHECKF(bad == 0, "%d bfloat16 fail the round trip", bad);

    CHECK(f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80);    /* halfway, even below */
    CHECK(f32_to_bf16(1.0f + 0x3p-8f) == 0x3f82);    /* halfway, even above */
    CHECK(f32_to_bf16(1.0f + 0x1.02p-8f) == 0x3f81); /* above halfway */
    CHECK(f32_to_bf16(-(1.0f + 0x1p-8f)) == 0xbf80);
    CHECK(f32_to_bf16(FLT_MAX) == 0x7f80); /* rounds up to inf */
    CHECK(f32_to_bf16(INFINITY) == 0x7f80 && f32_to_bf16(-INFINITY) == 0xff80);
    CHECK(f32_to_bf16(FLT_TRUE_MIN) == 0x0000);
    CHECK(f32_to_bf16(float_of(0x00018000u)) == 0x0002); /* subnormal, halfway, even above */
    /* NaNs whose payload sits below bit 16, or would round into the exponent, stay NaN */
    static const uint32_t nans[] = {0x7f800001u, 0x7fffffffu, 0xff800001u, 0x7fc00000u,
                                    0x7f80ffffu};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        uint16_t b = f32_to_bf16(float_of(nans[i]));
        CHECKF(isnan(bf16_to_f32(b)) && (b & 0x8000) == ((nans[i] >> 16) & 0x8000), "%08x -> %04x",
               (unsigned)nans[i], b);
    }
    /* random floats: the result is one of the two neighbours, the nearer one */
    bad = 0;
    for (int i = 0; i < 100000; i++) {
        uint32_t u = rng();
        float f = float_of(u);
        if (isnan(f) || isinf(f)) continue;
        float lo = float_of(u & 0xffff0000u), hi = float_of((u & 0xffff0000u) + 0x10000u);
        float r = bf16_to_f32(f32_to_bf16(f));
        /* rounding treats the step past FLT_MAX as landing on 2^128, then gives inf */
        double hid = isinf(hi) ? copysign(0x1p128, hi) : hi;
        double dl = fabs((double)f - lo), dh = fabs(hid - f);
        if (!(r == lo || r == hi) || (dl < dh && r != lo) || (dh < dl && r != hi)) bad++;
    }
    CHECKF(bad == 0, "%d random bfloat16 roundings wrong", bad);
}

static void test_fp8(void) {
    /* E4M3 "fn": bias 7, no inf, S.1111.111 NaN, max 448 */
    CHECK(fp8_e4m3_to_f32(0x00) == 0.0f && !signbit(fp8_e4m3_to_f32(0x00)));
    CHECK(fp8_e4m3_to_f32(0x80) == 0.0f && signbit(fp8_e4m3_to_f32(0x80)));
    CHECK(fp8_e4m3_to_f32(0x38) == 1.0f);
    CHECK(fp8_e4m3_to_f32(0x3c) == 1.5f);
    CHECK(fp8_e4m3_to_f32(0xc0) == -2.0f);
    CHECK(fp8_e4m3_to_f32(0x7e) == 448.0f);
    CHECK(fp8_e4m3_to_f32(0xfe) == -448.0f);
    CHECK(fp8_e4m3_to_f32(0x78) == 256.0f);  /* top exponent is finite in the fn variant */
    CHECK(fp8_e4m3_to_f32(0x08) == 0x1p-6f); /* smallest normal */
    CHECK(fp8_e4m3_to_f32(0x01) == 0x1p-9f); /* smallest subnormal */
    CHECK(fp8_e4m3_to_f32(0x07) == 0x7p-9f); /* largest subnormal */
    CHECK(fp8_e4m3_to_f32(0x81) == -0x1p-9f);
    CHECK(isnan(fp8_e4m3_to_f32(0x7f)) && isnan(fp8_e4m3_to_f32(0xff)));
    int bad = 0;
    for (int v = 0; v < 0x7e; v++) {
        float a = fp8_e4m3_to_f32((uint8_t)v), b = fp8_e4m3_to_f32((uint8_t)(v + 1));
        if (!(a < b) || isinf(a) || fp8_e4m3_to_f32((uint8_t)(v | 0x80)) != -a) bad++;
    }
    CHECKF(bad == 0, "E4M3 not monotonic/symmetric in %d places", bad);
    /* E4M3 codes are exactly representable in fp16: check through an independent path */
    for (int v = 0; v < 0x7f; v++) {
        float f = fp8_e4m3_to_f32((uint8_t)v);
        CHECKF(fp16_to_f32(f32_to_fp16(f)) == f, "0x%02x", v);
    }

    /* E5M2: IEEE-like, bias 15, with inf and NaN */
    CHECK(fp8_e5m2_to_f32(0x3c) == 1.0f);
    CHECK(fp8_e5m2_to_f32(0x7b) == 57344.0f);
    CHECK(fp8_e5m2_to_f32(0x01) == 0x1p-16f);
    CHECK(fp8_e5m2_to_f32(0x04) == 0x1p-14f);
    CHECK(isinf(fp8_e5m2_to_f32(0x7c)) && isinf(fp8_e5m2_to_f32(0xfc)) &&
          fp8_e5m2_to_f32(0xfc) < 0);
    CHECK(isnan(fp8_e5m2_to_f32(0x7d)) && isnan(fp8_e5m2_to_f32(0xff)));
}

/* ---- plain types through dequantize_row ------------------------------------------------ */

static void test_plain_rows(void) {
    float out[8 + GUARD];
    const float fv[5] = {1.5f, -0.0f, 0x1p-140f, -3e38f, 7.0f};
    uint8_t b[40];
    for (int i = 0; i < 5; i++) {
        uint32_t u = bits_of(fv[i]);
        for (int k = 0; k < 4; k++) b[4 * i + k] = (uint8_t)(u >> (8 * k)); /* little-endian */
    }
    dq_guarded(WHALE_DTYPE_F32, b, out, 5);
    for (int i = 0; i < 5; i++) CHECK(bits_of(out[i]) == bits_of(fv[i]));
    /* an odd start address: rows need not be aligned */
    uint8_t shifted[41];
    memcpy(shifted + 1, b, 20);
    dq_guarded(WHALE_DTYPE_F32, shifted + 1, out, 5);
    for (int i = 0; i < 5; i++) CHECK(bits_of(out[i]) == bits_of(fv[i]));

    const uint16_t hv[4] = {0x3c00, 0x0001, 0xfbff, 0x7c00};
    for (int i = 0; i < 4; i++) put16(shifted + 1 + 2 * i, hv[i]);
    dq_guarded(WHALE_DTYPE_F16, shifted + 1, out, 4);
    CHECK(out[0] == 1.0f && out[1] == 0x1p-24f && out[2] == -65504.0f && isinf(out[3]));

    const uint16_t bv[3] = {0x3f80, 0xc040, 0x0001};
    for (int i = 0; i < 3; i++) put16(b + 2 * i, bv[i]);
    dq_guarded(WHALE_DTYPE_BF16, b, out, 3);
    CHECK(out[0] == 1.0f && out[1] == -3.0f && out[2] == 0x1p-133f);

    const uint8_t e4[4] = {0x38, 0x7e, 0x01, 0xc0};
    dq_guarded(WHALE_DTYPE_F8_E4M3, e4, out, 4);
    CHECK(out[0] == 1.0f && out[1] == 448.0f && out[2] == 0x1p-9f && out[3] == -2.0f);
    const uint8_t e5[2] = {0x3c, 0xc0};
    dq_guarded(WHALE_DTYPE_F8_E5M2, e5, out, 2);
    CHECK(out[0] == 1.0f && out[1] == -2.0f);

    dq_guarded(WHALE_DTYPE_F32, b, out, 0); /* n = 0 writes nothing */
}

/* ---- 32-element blocks --------------------------------------------------------------- */

static void test_q8_0(void) {
    /* 8 blocks hold q = -128..127 once each; d = 0.5 in block 0, then 1, 2, ... */
    uint8_t blk[8 * 34];
    float out[256 + GUARD];
    for (int b = 0; b < 8; b++) {
        put16(blk + 34 * b, f32_to_fp16(b == 0 ? 0.5f : (float)b));
        for (int j = 0; j < 32; j++) blk[34 * b + 2 + j] = (uint8_t)(int8_t)(-128 + 32 * b + j);
    }
    dq_guarded(WHALE_DTYPE_Q8_0, blk, out, 256);
    int bad = 0;
    for (int i = 0; i < 256; i++) {
        float d = i < 32 ? 0.5f : (float)(i / 32);
        if (out[i] != d * (float)(-128 + i)) bad++;
    }
    CHECKF(bad == 0, "%d Q8_0 values wrong", bad);
    CHECK(out[0] == -64.0f && out[31] == -48.5f && out[255] == 7.0f * 127.0f);
}

static void test_q8_1(void) {
    uint8_t blk[36];
    float out[32 + GUARD];
    put16(blk, 0x3400);     /* d = 0.25 */
    put16(blk + 2, 0x7bff); /* s: ignored by dequantize */
    for (int j = 0; j < 32; j++) blk[4 + j] = (uint8_t)(int8_t)(j * 8 - 128);
    dq_guarded(WHALE_DTYPE_Q8_1, blk, out, 32);
    for (int j = 0; j < 32; j++) CHECK(out[j] == 0.25f * (float)(j * 8 - 128));
}

/* q[0..31] in 0..15 into Q4_0/Q4_1's 16 qs bytes: element j low nibble, j+16 high. */
static void pack_nibbles(uint8_t *qs, const int *q) {
    memset(qs, 0, 16);
    for (int i = 0; i < 32; i++) qs[i % 16] |= (uint8_t)((q[i] & 0xf) << (i < 16 ? 0 : 4));
}

static void test_q4_0(void) {
    /* nibble order: qs[j] = j | (15 - j) << 4 gives elements j = j - 8, j + 16 = 7 - j */
    uint8_t blk[2 * 18];
    float out[64 + GUARD];
    put16(blk, 0x3c00); /* d = 1 */
    for (int j = 0; j < 16; j++) blk[2 + j] = (uint8_t)(j | ((15 - j) << 4));
    put16(blk + 18, 0xc100); /* d = -2.5 */
    int q[32];
    for (int i = 0; i < 32; i++) q[i] = (i * 7 + 3) % 16;
    pack_nibbles(blk + 20, q);
    dq_guarded(WHALE_DTYPE_Q4_0, blk, out, 64);
    for (int j = 0; j < 16; j++) {
        CHECK(out[j] == (float)(j - 8));
        CHECK(out[j + 16] == (float)(7 - j));
    }
    for (int i = 0; i < 32; i++) CHECK(out[32 + i] == -2.5f * (float)(q[i] - 8));
}

static void test_q4_1(void) {
    uint8_t blk[20];
    float out[32 + GUARD];
    put16(blk, f32_to_fp16(2.0f));
    put16(blk + 2, f32_to_fp16(-1.0f));
    int q[32];
    for (int i = 0; i < 32; i++) q[i] = (i * 5) % 16;
    pack_nibbles(blk + 4, q);
    dq_guarded(WHALE_DTYPE_Q4_1, blk, out, 32);
    for (int i = 0; i < 32; i++) CHECK(out[i] == 2.0f * (float)q[i] - 1.0f);
}

/* q[0..31] in 0..31: 5th bits into qh (u32 LE, bit i for element i), low bits as Q4_0 */
static void pack_q5(uint8_t *qh, uint8_t *qs, const int *q) {
    uint32_t h = 0;
    int lo[32];
    for (int i = 0; i < 32; i++) {
        h |= (uint32_t)((q[i] >> 4) & 1) << i;
        lo[i] = q[i] & 0xf;
    }
    for (int k = 0; k < 4; k++) qh[k] = (uint8_t)(h >> (8 * k));
    pack_nibbles(qs, lo);
}

static void test_q5_0(void) {
    uint8_t blk[22];
    float out[32 + GUARD];
    int q[32];
    for (int i = 0; i < 32; i++) q[i] = (i * 13 + 7) % 32;
    q[0] = 0, q[31] = 31, q[16] = 16, q[15] = 15;
    put16(blk, f32_to_fp16(0.125f));
    pack_q5(blk + 2, blk + 6, q);
    dq_guarded(WHALE_DTYPE_Q5_0, blk, out, 32);
    for (int i = 0; i < 32; i++) CHECKF(out[i] == 0.125f * (float)(q[i] - 16), "i=%d", i);
    CHECK(out[0] == -2.0f && out[31] == 1.875f);
}

static void test_q5_1(void) {
    uint8_t blk[24];
    float out[32 + GUARD];
    int q[32];
    for (int i = 0; i < 32; i++) q[i] = (i * 11 + 5) % 32;
    put16(blk, f32_to_fp16(0.25f));
    put16(blk + 2, f32_to_fp16(3.0f));
    pack_q5(blk + 4, blk + 8, q);
    dq_guarded(WHALE_DTYPE_Q5_1, blk, out, 32);
    for (int i = 0; i < 32; i++) CHECKF(out[i] == 0.25f * (float)q[i] + 3.0f, "i=%d", i);
}

/* ---- 256-element super-blocks ---------------------------------------------------------
 * Element i = 128h + 32s + l (h = half, s = 0..3, l = 0..31). The packers below place each
 * element's bits where the byte maps in dtype.c say they go. */

static void test_q2_k(void) {
    uint8_t blk[2 * 84];
    float out[512 + GUARD];
    for (int b = 0; b < 2; b++) {
        uint8_t *p = blk + 84 * b;
        memset(p, 0, 84);
        int q[256];
        for (int i = 0; i < 256; i++) q[i] = (int)(rng() % 4);
        for (int j = 0; j < 16; j++) p[j] = (uint8_t)((j + b) % 16 | ((15 - j) << 4));
        for (int i = 0; i < 256; i++) {
            int h = i / 128, s = (i % 128) / 32, l = i % 32;
            p[16 + 32 * h + l] |= (uint8_t)(q[i] << (2 * s));
        }
        float d = b ? 0.5f : 0.25f, dmin = b ? 0.0625f : 1.0f;
        put16(p + 80, f32_to_fp16(d));
        put16(p + 82, f32_to_fp16(dmin));
        dq_guarded(WHALE_DTYPE_Q2_K, blk, out, 512);
        int bad = 0;
        for (int i = 0; i < 256; i++) {
            int sc = (i / 16 + b) % 16, m = 15 - i / 16;
            float want = (d * (float)sc) * (float)q[i] - dmin * (float)m;
            if (out[256 * b + i] != want) bad++;
        }
        CHECKF(bad == 0, "block %d: %d Q2_K values wrong", b, bad);
    }
    /* spot value: block 0, element 0: sc 0 -> -dmin*15 */
    CHECK(out[0] == -15.0f);
}

static void test_q3_k(void) {
    uint8_t blk[110];
    float out[256 + GUARD];
    memset(blk, 0, sizeof blk);
    int q[256], sc[16]; /* q in -4..3, sc in -32..31 */
    for (int i = 0; i < 256; i++) q[i] = (int)(rng() % 8) - 4;
    for (int j = 0; j < 16; j++) sc[j] = (j * 23 + 5) % 64 - 32;
    sc[0] = -32, sc[15] = 31;
    for (int i = 0; i < 256; i++) {
        int h = i / 128, s = (i % 128) / 32, l = i % 32, g = i / 32;
        int low = q[i] & 3, high = q[i] >= 0; /* high bit set means no -4 offset */
        blk[32 + 32 * h + l] |= (uint8_t)(low << (2 * s));
        blk[l] |= (uint8_t)(high << g);
    }
    for (int j = 0; j < 16; j++) {
        int u = sc[j] + 32; /* 6 bits */
        if (j < 8)
            blk[96 + j] |= (uint8_t)(u & 0xf);
        else
            blk[96 + j - 8] |= (uint8_t)((u & 0xf) << 4);
        blk[96 + 8 + j % 4] |= (uint8_t)((u >> 4) << (2 * (j / 4)));
    }
    put16(blk + 108, f32_to_fp16(0.75f));
    dq_guarded(WHALE_DTYPE_Q3_K, blk, out, 256);
    int bad = 0;
    for (int i = 0; i < 256; i++)
        if (out[i] != (0.75f * (float)sc[i / 16]) * (float)q[i]) bad++;
    CHECKF(bad == 0, "%d Q3_K values wrong", bad);
}

/* 8 (scale, min) 6-bit pairs into Q4_K/Q5_K's 12 scale bytes */
static void pack_k_scales(uint8_t *s, const int *sc, const int *m) {
    memset(s, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s[j] |= (uint8_t)(sc[j] & 63);
            s[j + 4] |= (uint8_t)(m[j] & 63);
        } else {
            s[j + 4] |= (uint8_t)((sc[j] & 15) | ((m[j] & 15) << 4));
            s[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
            s[j] |= (uint8_t)((m[j] >> 4) << 6);
        }
    }
}

static void test_q4_k(void) {
    uint8_t blk[144];
    float out[256 + GUARD];
    memset(blk, 0, sizeof blk);
    int q[256], sc[8] = {1, 63, 17, 40, 62, 33, 5, 48}, m[8] = {0, 9, 63, 31, 50, 2, 61, 16};
    for (int i = 0; i < 256; i++) q[i] = (int)(rng() % 16);
    put16(blk, f32_to_fp16(0.5f));
    put16(blk + 2, f32_to_fp16(0.125f));
    pack_k_scales(blk + 4, sc, m);
    for (int i = 0; i < 256; i++) {
        int c = i / 64, hi = (i % 64) >= 32, l = i % 32;
        blk[16 + 32 * c + l] |= (uint8_t)(q[i] << (hi ? 4 : 0));
    }
    dq_guarded(WHALE_DTYPE_Q4_K, blk, out, 256);
    int bad = 0;
    for (int i = 0; i < 256; i++) {
        int g = i / 32;
        if (out[i] != (0.5f * (float)sc[g]) * (float)q[i] - 0.125f * (float)m[g]) bad++;
    }
    CHECKF(bad == 0, "%d Q4_K values wrong", bad);
}

static void test_q5_k(void) {
    uint8_t blk[176];
    float out[256 + GUARD];
    memset(blk, 0, sizeof blk);
    int q[256], sc[8] = {63, 0, 21, 42, 16, 47, 32, 15}, m[8] = {7, 63, 48, 1, 30, 59, 14, 22};
    for (int i = 0; i < 256; i++) q[i] = (int)(rng() % 32);
    put16(blk, f32_to_fp16(0.0625f));
    put16(blk + 2, f32_to_fp16(-0.5f));
    pack_k_scales(blk + 4, sc, m);
    for (int i = 0; i < 256; i++) {
        int c = i / 64, hi = (i % 64) >= 32, l = i % 32, g = i / 32;
        blk[48 + 32 * c + l] |= (uint8_t)((q[i] & 15) << (hi ? 4 : 0));
        blk[16 + l] |= (uint8_t)((q[i] >> 4) << g);
    }
    dq_guarded(WHALE_DTYPE_Q5_K, blk, out, 256);
    int bad = 0;
    for (int i = 0; i < 256; i++) {
        int g = i / 32;
        if (out[i] != (0.0625f * (float)sc[g]) * (float)q[i] - (-0.5f) * (float)m[g]) bad++;
    }
    CHECKF(bad == 0, "%d Q5_K values wrong", bad);
}

static void test_q6_k(void) {
    uint8_t blk[2 * 210];
    float out[512 + GUARD];
    memset(blk, 0, sizeof blk);
    int q[512], sc[32]; /* q in -32..31, sc int8 */
    for (int i = 0; i < 512; i++) q[i] = (int)(rng() % 64) - 32;
    for (int j = 0; j < 32; j++) sc[j] = (j * 37) % 256 - 128;
    for (int b = 0; b < 2; b++) {
        uint8_t *p = blk + 210 * b;
        for (int i = 0; i < 256; i++) {
            int u = q[256 * b + i] + 32;
            int h = i / 128, s = (i % 128) / 32, l = i % 32;
            /* s = 0: low nibble of ql[64h + l]; 1: low of ql[64h + 32 + l];
             * 2: high of ql[64h + l]; 3: high of ql[64h + 32 + l] */
            int byte = 64 * h + (s == 1 || s == 3 ? 32 : 0) + l;
            p[byte] |= (uint8_t)((u & 15) << (s >= 2 ? 4 : 0));
            p[128 + 32 * h + l] |= (uint8_t)((u >> 4) << (2 * s));
        }
        for (int j = 0; j < 16; j++) p[192 + j] = (uint8_t)(int8_t)sc[16 * b + j];
        put16(p + 208, f32_to_fp16(b ? -0.25f : 0.03125f));
    }
    dq_guarded(WHALE_DTYPE_Q6_K, blk, out, 512);
    int bad = 0;
    for (int i = 0; i < 512; i++) {
        float d = i < 256 ? 0.03125f : -0.25f;
        if (out[i] != (d * (float)sc[i / 16]) * (float)q[i]) bad++;
    }
    CHECKF(bad == 0, "%d Q6_K values wrong", bad);
}

static void test_q8_k(void) {
    uint8_t blk[292];
    float out[256 + GUARD];
    uint32_t u = bits_of(0.1f); /* Q8_K's d is a full f32 */
    for (int k = 0; k < 4; k++) blk[k] = (uint8_t)(u >> (8 * k));
    for (int i = 0; i < 256; i++) blk[4 + i] = (uint8_t)(int8_t)(i - 128);
    memset(blk + 260, 0xab, 32); /* bsums: not read */
    dq_guarded(WHALE_DTYPE_Q8_K, blk, out, 256);
    for (int i = 0; i < 256; i++) CHECK(out[i] == 0.1f * (float)(i - 128));
}

/* A row of several blocks equals its blocks dequantized one at a time (offsets right). */
static void test_multi_block_offsets(void) {
    static const int types[] = {WHALE_DTYPE_Q4_0, WHALE_DTYPE_Q4_1, WHALE_DTYPE_Q5_0,
                                WHALE_DTYPE_Q5_1, WHALE_DTYPE_Q8_0, WHALE_DTYPE_Q8_1,
                                WHALE_DTYPE_Q2_K, WHALE_DTYPE_Q3_K, WHALE_DTYPE_Q4_K,
                                WHALE_DTYPE_Q5_K, WHALE_DTYPE_Q6_K, WHALE_DTYPE_Q8_K};
    enum { NB = 5 };
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const dtype_info *d = dtype_get(types[k]);
        uint8_t *src = malloc(NB * d->block_bytes + 1);
        float *row = malloc(sizeof(float) * (size_t)(NB * d->block_elems + GUARD));
        float *one = malloc(sizeof(float) * (size_t)(d->block_elems + GUARD));
        if (!src || !row || !one) {
            CHECK(!"malloc");
            free(src), free(row), free(one);
            return;
        }
        uint8_t *p = src + 1; /* deliberately misaligned */
        for (size_t i = 0; i < NB * d->block_bytes; i++) p[i] = (uint8_t)rng();
        /* random quants, but every f16 scale made finite: clear the sign, the exponent's
         * top bit and its lowest bit in the scale's high byte, so 0 <= d < 1 */
        for (int b = 0; b < NB; b++) {
            uint8_t *blk = p + (size_t)b * d->block_bytes;
            size_t offs[2] = {0, 2};
            size_t n_off = 0;
            switch (types[k]) {
            case WHALE_DTYPE_Q4_0:
            case WHALE_DTYPE_Q5_0:
            case WHALE_DTYPE_Q8_0:
                n_off = 1;
                break;
            case WHALE_DTYPE_Q4_1:
            case WHALE_DTYPE_Q5_1:
            case WHALE_DTYPE_Q8_1:
            case WHALE_DTYPE_Q4_K:
            case WHALE_DTYPE_Q5_K:
                n_off = 2;
                break;
            case WHALE_DTYPE_Q2_K:
                offs[0] = 80, offs[1] = 82, n_off = 2;
                break;
            case WHALE_DTYPE_Q3_K:
                offs[0] = 108, n_off = 1;
                break;
            case WHALE_DTYPE_Q6_K:
                offs[0] = 208, n_off = 1;
                break;
            case WHALE_DTYPE_Q8_K:
                put16(blk, 0), put16(blk + 2, 0x3c00);
                break; /* f32 d = 2^-7 */
            default:
                break;
            }
            for (size_t o = 0; o < n_off; o++) blk[offs[o] + 1] &= 0x3b;
        }
        dq_guarded(types[k], p, row, NB * d->block_elems);
        int bad = 0;
        for (int b = 0; b < NB; b++) {
            dq_guarded(types[k], p + (size_t)b * d->block_bytes, one, d->block_elems);
            for (int64_t i = 0; i < d->block_elems; i++)
                if (bits_of(one[i]) != bits_of(row[b * d->block_elems + i]) || !isfinite(one[i]))
                    bad++;
        }
        CHECKF(bad == 0, "%s: %d values differ between row and single blocks", d->name, bad);
        free(src), free(row), free(one);
    }
}

int main(void) {
    RUN(test_table);
    RUN(test_bytes);
    RUN(test_fp16);
    RUN(test_bf16);
    RUN(test_fp8);
    RUN(test_plain_rows);
    RUN(test_q8_0);
    RUN(test_q8_1);
    RUN(test_q4_0);
    RUN(test_q4_1);
    RUN(test_q5_0);
    RUN(test_q5_1);
    RUN(test_q2_k);
    RUN(test_q3_k);
    RUN(test_q4_k);
    RUN(test_q5_k);
    RUN(test_q6_k);
    RUN(test_q8_k);
    RUN(test_multi_block_offsets);
    return check_report("test_dtype");
}
