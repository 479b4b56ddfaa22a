/* fuzz_peft.c — libFuzzer target for the LoRA adapter reader (formats/peft.c).
 *
 * Input: a 2-byte little-endian length n, then n bytes of adapter_config.json, then the rest as
 * adapter_model.safetensors; both are written into a directory of this process and read with
 * peft_load. Every input must be accepted (then every module has both matrices, shapes that
 * agree with the rank, and a finite scale) or rejected with a message. ASan/UBSan turn any
 * out-of-bounds read, leak or overflow into a crash. Seeds: tests/fuzz/corpus/peft/. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/peft.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int put(const char *dir, const char *name, const uint8_t *p, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, n, f);
    return fclose(f) || w != n ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char dir[256];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/whale-fuzz-peft-%d", (int)getpid());
        mkdir(dir, 0700);
    }
    if (size < 2) return 0;
    size_t n = (size_t)data[0] | (size_t)data[1] << 8;
    if (n > size - 2) n = size - 2;
    if (put(dir, "adapter_config.json", data + 2, n) ||
        put(dir, "adapter_model.safetensors", data + 2 + n, size - 2 - n))
        return 0;
    peft_adapter a;
    whale_err err = {0};
    if (peft_load(&a, dir, &err) != 0) {
        if (!err.msg[0] || a.mods) abort(); /* every rejection says why and leaves nothing */
        peft_free(&a);
        return 0;
    }
    if (a.r < 1 || a.r > PEFT_MAX_RANK || a.n_mods < 1 || !isfinite(a.scale)) abort();
    for (int i = 0; i < a.n_mods; i++) {
        const peft_module *m = &a.mods[i];
        if (!m->a || !m->b || m->n_in < 1 || m->n_out < 1) abort();
        volatile float sink = 0; /* touch every element */
        for (int64_t k = 0; k < a.r * m->n_in; k++) sink += m->a[k];
        for (int64_t k = 0; k < a.r * m->n_out; k++) sink += m->b[k];
        (void)sink;
    }
    peft_free(&a);
    return 0;
}
