/* fuzz_model.h — the model the service fuzzers run: a tiny random-weight GGUF with DeepSeek-V3's
 * vocabulary (R1 chat format), made by scripts/test with `whale synth` and named by
 * $WHALE_FUZZ_MODEL. Loaded once per process. */
#ifndef WHALE_FUZZ_MODEL_H
#define WHALE_FUZZ_MODEL_H

#include <stdio.h>
#include <stdlib.h>

#include "whale.h"

/* The model's path ($WHALE_FUZZ_MODEL); aborts with what to do when it is not set. */
static inline const char *fuzz_model_path(const char *who) {
    const char *path = getenv("WHALE_FUZZ_MODEL");
    if (!path) {
        fprintf(stderr, "%s: set WHALE_FUZZ_MODEL to a GGUF made by `whale synth --shape test-qwen2 --vocab "
                        "<DeepSeek-V3 tokenizer.json>` (scripts/test does)\n", who);
        abort();
    }
    return path;
}

static inline whale_model *fuzz_model_load(const char *who) {
    const char *path = fuzz_model_path(who);
    whale_model *m = NULL;
    whale_model_params mp = {.n_threads = 1};
    whale_err err = {0};
    if (whale_model_open(&m, path, &mp, &err)) {
        fprintf(stderr, "%s: %s\n", who, err.msg);
        abort();
    }
    return m;
}

#endif
