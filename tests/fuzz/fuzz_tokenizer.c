/* fuzz_tokenizer.c — arbitrary bytes into the tokenizer (DeepSeek LLM vocabulary from
 * ../shared): invalid UTF-8 must be refused cleanly; valid text must encode, and decode back
 * to itself, in both plain and special modes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

static tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *root = getenv("WHALE_SHARED");
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-deepseek-llm.gguf", root ? root : "../shared");
    gguf_file f;
    whale_err err = {0};
    if (gguf_open(&f, path, 0, &err) || tokenizer_load_gguf(&tok, &f, &err)) {
        fprintf(stderr, "fuzz_tokenizer: %s (set WHALE_SHARED)\n", err.msg);
        abort();
    }
    gguf_close(&f);
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    int valid = utf8_valid((const char *)data, size);
    for (int flags = 0; flags <= TOK_PARSE_SPECIAL; flags += TOK_PARSE_SPECIAL) {
        tok_ids ids = {0};
        int rc = tokenizer_encode(tok, (const char *)data, size, flags, &ids, NULL);
        if (valid != (rc == 0)) abort();
        if (rc == 0) {
            size_t n;
            char *back = tokenizer_decode(tok, ids.v, ids.n, &n);
            if (!back || n != size || memcmp(back, data, size)) abort();
            free(back);
        }
        tok_ids_free(&ids);
    }
    return 0;
}
