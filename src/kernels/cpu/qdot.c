/* qdot.c — activations quantized to 8 bits and integer dot products against quantized weight
 * rows (kernels/qdot.h): the quantizer, the portable reference of every kernel, and the driver
 * that runs a row range over tokens in groups of four with the best kernel the CPU has. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/qdot.h"

int op_qdot_supported(whale_dtype t) {
    return t == WHALE_DTYPE_Q8_0 || t == WHALE_DTYPE_Q4_0 || t == WHALE_DTYPE_Q5_0 || t == WHALE_DTYPE_Q4_K ||
           t == WHALE_DTYPE_Q5_K || t == WHALE_DTYPE_Q6_K;
}

void op_quantize_act(qact_block *out, const float *x, int64_t n) {
    for (int64_t b = 0; b < n / QACT_BLOCK; b++, x += QACT_BLOCK) {
        float amax = 0;
        for (int i = 0; i < QACT_BLOCK; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
        float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
        int s0 = 0, s1 = 0;
        for (int i = 0; i < QACT_BLOCK; i++) {
            int q = (int)lrintf(x[i] * id);
            q = q > 127 ? 127 : q < -127 ? -127 : q;
            out[b].q[i] = (int8_t)q;
            if (i < 16) s0 += q;
            else s1 += q;
        }
        out[b].d = d;
        out[b].s16[0] = (int16_t)s0;
        out[b].s16[1] = (int16_t)s1;
    }
}

/* ---- portable reference ------------------------------------------------------------------ */

static float rd_f16(const uint8_t *p) { return fp16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

static int32_t idot(const int8_t *w, const int8_t *x, int n) {
    int32_t s = 0;
    for (int i = 0; i < n; i++) s += (int32_t)w[i] * x[i];
    return s;
}

static void k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* dot(row, x) for n elements: integer products per block, float scales per block. */
static float dot_portable(whale_dtype t, const uint8_t *w, const qact_block *x, int64_t n) {
    double s = 0;
    int8_t q[32];
    switch (t) {
    case WHALE_DTYPE_Q8_0:
        for (int64_t i = 0; i < n / 32; i++, w += 34) s += (double)rd_f16(w) * x[i].d * idot((const int8_t *)w + 2, x[i].q, 32);
        break;
    case WHALE_DTYPE_Q4_0:
    case WHALE_DTYPE_Q5_0: {
        int q5 = t == WHALE_DTYPE_Q5_0;
        for (int64_t i = 0; i < n / 32; i++, w += q5 ? 22 : 18) {
            const uint8_t *qs = w + (q5 ? 6 : 2);
            uint32_t qh = 0;
            if (q5) memcpy(&qh, w + 2, 4);
            for (int j = 0; j < 32; j++) {
                int v = j < 16 ? (qs[j] & 0xf) : (qs[j - 16] >> 4);
                if (q5) v |= ((qh >> j) & 1) << 4;
                q[j] = (int8_t)(v - (q5 ? 16 : 8));
            }
            s += (double)rd_f16(w) * x[i].d * idot(q, x[i].q, 32);
        }
        break;
    }
    case WHALE_DTYPE_Q4_K:
    case WHALE_DTYPE_Q5_K: {
        int q5 = t == WHALE_DTYPE_Q5_K;
        for (int64_t b = 0; b < n / 256; b++, w += q5 ? 176 : 144) {
            float d = rd_f16(w), dmin = rd_f16(w + 2);
            const uint8_t *qs = w + (q5 ? 48 : 16), *qh = w + 16;
            for (int j = 0; j < 8; j++) {
                int sc, m, sum = 0;
                k_scale_min(w + 4, j, &sc, &m);
                for (int l = 0; l < 32; l++) {
                    int v = j % 2 ? qs[32 * (j / 2) + l] >> 4 : qs[32 * (j / 2) + l] & 0xf;
                    if (q5) v |= ((qh[l] >> j) & 1) << 4;
                    q[l] = (int8_t)v;
                    sum += x[b * 8 + j].q[l];
                }
                const qact_block *xb = x + b * 8 + j;
                s += (double)xb->d * ((double)d * sc * idot(q, xb->q, 32) - (double)dmin * m * sum);
            }
        }
        break;
    }
    case WHALE_DTYPE_Q6_K:
        for (int64_t b = 0; b < n / 256; b++, w += 210) {
            const int8_t *scales = (const int8_t *)(w + 192);
            float d = rd_f16(w + 208);
            for (int j = 0; j < 8; j++) { /* 32-element group j = 128h + 32k */
                int h = j / 4, k = j % 4;
                for (int l = 0; l < 32; l++) {
                    uint8_t lb = w[64 * h + 32 * (k % 2) + l];
                    int lo = k < 2 ? lb & 0xf : lb >> 4, hi = (w[128 + 32 * h + l] >> (2 * k)) & 3;
                    q[l] = (int8_t)((lo | hi << 4) - 32);
                }
                const qact_block *xb = x + b * 8 + j;
                int64_t si = 8 * h + 2 * k;
                s += (double)d * xb->d * ((double)scales[si] * idot(q, xb->q, 16) + (double)scales[si + 1] * idot(q + 16, xb->q + 16, 16));
            }
        }
        break;
    default: break;
    }
    return (float)s;
}

/* ---- dispatch and driver ------------------------------------------------------------------- */

#if defined(__x86_64__)
int qdot_avx2_row(whale_dtype t, const uint8_t *w, const qact_block *const *xs, int g, int64_t n_in, float *out);
int qdot_vnni_row(whale_dtype t, const uint8_t *w, const qact_block *const *xs, int g, int64_t n_in, float *out);
#endif

static int g_cap = -1;

void op_qdot_force(int level) { g_cap = level; }

int op_qdot_level(void) {
    static int have = -1;
    if (have < 0) {
        have = 0;
#if defined(__x86_64__)
        const char *e = getenv("WHALE_NO_SIMD");
        /* F16C is not asked: every CPU with AVX2 has it, and clang cannot name it here */
        if (!(e && *e && strcmp(e, "0")) && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
            have = 1;
            if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni"))
                have = 2;
        }
#endif
    }
    return g_cap >= 0 && g_cap < have ? g_cap : have;
}

void op_matmul_rows_q(float *Y, int64_t ldy, const void *W, whale_dtype t, const qact_block *X, int64_t n_in,
                      int64_t n_tok, int64_t r0, int64_t r1) {
    size_t rb = 0;
    dtype_bytes(t, n_in, &rb);
    int64_t nb = n_in / QACT_BLOCK;
    int level = op_qdot_level();
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *w = (const uint8_t *)W + (size_t)r * rb;
        for (int64_t b0 = 0; b0 < n_tok; b0 += 4) {
            int g = n_tok - b0 < 4 ? (int)(n_tok - b0) : 4;
            const qact_block *xs[4];
            float out[4];
            for (int k = 0; k < g; k++) xs[k] = X + (b0 + k) * nb;
            int rc = -1;
#if defined(__x86_64__)
            if (level == 2) rc = qdot_vnni_row(t, w, xs, g, n_in, out);
            else if (level == 1) rc = qdot_avx2_row(t, w, xs, g, n_in, out);
#endif
            if (rc)
                for (int k = 0; k < g; k++) out[k] = dot_portable(t, w, xs[k], n_in);
            for (int k = 0; k < g; k++) Y[(b0 + k) * ldy + r] = out[k];
        }
    }
}
