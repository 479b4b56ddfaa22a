/* fuzz_safetensors.c — libFuzzer target for the safetensors header parser.
 *
 * Feeds arbitrary bytes to st_open_memory; every input must be either accepted (then every
 * tensor view must lie inside the buffer and be findable by name) or rejected with a message.
 * ASan/UBSan turn any out-of-bounds read, leak or overflow into a crash.
 * Seeds: tests/fuzz/corpus/safetensors/. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_model m;
    whale_err err = {0};
    if (st_open_memory(&m, data, size, &err) != 0) {
        if (!err.msg[0]) abort(); /* every rejection says why */
        st_close(&m);
        return 0;
    }
    const unsigned char *lo = m.shards[0].data, *hi = lo + m.shards[0].size;
    for (size_t i = 0; i < m.n_tensors; i++) {
        const st_tensor *t = &m.tensors[i];
        const unsigned char *p = t->data;
        if (p < lo || p > hi || t->nbytes > (size_t)(hi - p)) abort();
        if (st_find(&m, t->name) != t) abort();
        volatile unsigned char sink = 0;
        for (size_t k = 0; k < t->nbytes; k++) sink ^= p[k]; /* touch every byte */
        (void)sink;
    }
    for (size_t i = 0; i < m.n_metadata; i++)
        if (st_metadata(&m, m.metadata[i].key) != m.metadata[i].value) abort();
    st_close(&m);
    return 0;
}
