/* fuzz_gguf.c — libFuzzer target for the GGUF reader.
 *
 * Opens arbitrary bytes with gguf_open_memory, both strictly and with GGUF_OPEN_METADATA_ONLY.
 * A rejection must carry a message; an accepted file must be safe to use in every way the
 * API allows: every kv through the typed getters, every array element (string arrays through
 * gguf_arr_str), every tensor's first and last data byte, lookups by name. ASan/UBSan turn
 * any out-of-bounds read, leak, overflow or bad cast into a crash.
 * Seeds: tests/fuzz/corpus/gguf/ (small files made with gguf_writer). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

/* Elements touched per array: enough to reach both ends, bounded so a large (valid) array
 * does not slow the fuzzer down. */
#define FUZZ_MAX_ELEMS 4096

static void touch_file(const gguf_file *f, int flags) {
    const unsigned char *lo = f->map.data, *hi = lo + f->map.size;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        static char key[GGUF_MAX_KEY_LEN + 1];
        if (kv->key.n > GGUF_MAX_KEY_LEN || memchr(kv->key.s, 0, (size_t)kv->key.n)) abort();
        memcpy(key, kv->key.s, (size_t)kv->key.n);
        key[kv->key.n] = 0;
        if (gguf_find(f, key) != kv) abort(); /* keys are unique */
        whale_err err = {0};
        int64_t iv;
        float fv;
        int bv;
        gguf_str sv;
        if (gguf_get_i64(f, key, &iv, &err) == 0) sink += (uint64_t)iv;
        if (gguf_get_f32(f, key, &fv, &err) == 0) sink += (uint64_t)(fv == fv);
        if (gguf_get_bool(f, key, &bv, &err) == 0) sink += (uint64_t)bv;
        if (gguf_get_str(f, key, &sv, &err) == 0) {
            if ((const unsigned char *)sv.s < lo || sv.n > (uint64_t)(hi - (const unsigned char *)sv.s)) abort();
            if (sv.n) sink += (unsigned char)sv.s[0] + (unsigned char)sv.s[sv.n - 1];
        }
        sink += strlen(gguf_type_name(kv->type));
        if (kv->type != GGUF_TYPE_ARRAY) continue;
        uint64_t n = kv->arr_n;
        for (uint64_t j = 0; j < n; j++) {
            if (j == FUZZ_MAX_ELEMS && n > 2 * FUZZ_MAX_ELEMS) j = n - FUZZ_MAX_ELEMS;
            if (kv->arr_type == GGUF_TYPE_STRING) {
                gguf_str s = gguf_arr_str(kv, j);
                if ((const unsigned char *)s.s < lo || s.n > (uint64_t)(hi - (const unsigned char *)s.s)) abort();
                if (s.n) sink += (unsigned char)s.s[0] + (unsigned char)s.s[s.n - 1];
            } else if (kv->arr_type != GGUF_TYPE_ARRAY) {
                sink += (uint64_t)gguf_arr_i64(kv, j);
                double d = gguf_arr_f64(kv, j);
                sink += (uint64_t)(d == d);
            }
        }
    }
    uint64_t missing = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS || t->offset % f->alignment) abort();
        static char name[GGUF_MAX_KEY_LEN + 1];
        memcpy(name, t->name.s, (size_t)t->name.n);
        name[t->name.n] = 0;
        if (gguf_find_tensor(f, name) != t) abort(); /* names are unique */
        if (!t->data) {
            if (!(flags & GGUF_OPEN_METADATA_ONLY)) abort();
            missing++;
            continue;
        }
        const unsigned char *p = t->data;
        if (p < lo || t->nbytes > (size_t)(hi - p)) abort();
        if (t->nbytes) sink += p[0] + p[t->nbytes - 1];
    }
    if (missing != f->n_missing) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const int flag_sets[2] = {0, GGUF_OPEN_METADATA_ONLY};
    for (int k = 0; k < 2; k++) {
        gguf_file f;
        whale_err err = {0};
        if (gguf_open_memory(&f, data, size, flag_sets[k], &err) != 0) {
            if (!err.msg[0]) abort(); /* every rejection says why */
            gguf_close(&f);
            continue;
        }
        touch_file(&f, flag_sets[k]);
        gguf_close(&f);
    }
    return 0;
}
