/* simple.c — the smallest program on libwhale: open the default model, ask it one question,
 * stream the answer to standard output.
 *
 *   cc simple.c $(pkg-config --cflags --libs whale) -o simple && ./simple
 *
 * (with libwhale installed by `make install PREFIX=DIR`: PKG_CONFIG_PATH=DIR/lib/pkgconfig, and
 * LD_LIBRARY_PATH=DIR/lib to run against the shared library). */
#include <stdio.h>
#include <string.h>

#include <whale.h>

static void print_text(void *ctx, whale_text_kind kind, const char *text, size_t n) {
    (void)ctx;
    if (kind == WHALE_TEXT_ANSWER) fwrite(text, 1, n, stdout); /* reasoning, if any, is left out */
    fflush(stdout);
}

static int on_token(void *ctx, int32_t id) {
    whale_text_feed(ctx, &id, 1);
    return 0; /* nonzero would stop the answer here */
}

int main(void) {
    const char *question = "What is the capital of France? Answer in one sentence.";
    whale_err err = {0};
    whale_model *m = NULL;
    whale_engine *e = NULL;
    whale_ids ids = {0};
    int rc = 1;
    if (whale_model_open(&m, "default", NULL, &err) || whale_engine_new(&e, m, NULL, &err)) goto fail;
    whale_msg msg = {.role = WHALE_ROLE_USER, .content = question};
    if (whale_chat_apply(m, NULL, &msg, 1, NULL, 0, WHALE_CHAT_GENERATION_PROMPT, &ids, &err)) goto fail;

    whale_request req;
    whale_request_default(&req);
    req.prompt = ids.v;
    req.n_prompt = ids.n;
    req.sampling.temperature = 0; /* greedy: the same answer every time */
    req.max_tokens = 64;
    whale_model_info info;
    whale_model_info_get(m, &info);
    whale_text *text = whale_text_new(m, info.reasoning ? WHALE_TEXT_START_IN_THINK : 0, print_text, NULL);
    whale_result res;
    printf("Q: %s\nA: ", question);
    if (!text || whale_generate(e, &req, on_token, text, &res, &err)) {
        whale_text_free(text);
        goto fail;
    }
    whale_text_end(text);
    whale_text_free(text);
    printf("\n(%zu prompt tokens, %zu generated, finish: %s; libwhale %s)\n", res.n_prompt, res.n_gen, res.finish,
           whale_version());
    rc = 0;
fail:
    if (rc) fprintf(stderr, "simple: %s\n", err.msg[0] ? err.msg : "out of memory");
    whale_ids_free(&ids);
    whale_engine_free(e);
    whale_model_close(m);
    return rc;
}
