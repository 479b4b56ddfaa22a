/* fuzz_api_json.c — arbitrary bytes as the body of a chat completion and of a completion: the
 * decoder must accept or refuse them (a status and an error body) without crashing or leaking,
 * and an accepted request must yield the constraints (JSON mode, tools) it calls for. */
#include <stdlib.h>
#include <string.h>

#include "engine/constraint.h"
#include "formats/gguf.h"
#include "fuzz_model.h"
#include "service/api.h"

static whale_model *m;
static api_ctx a;
static tokenizer *tok;       /* the same vocabulary, for the constraints the engine would make */
static constraint_vocab *cv;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    m = fuzz_model_load("fuzz_api_json");
    a.m = m;
    a.fmt = whale_chat_format(m, NULL);
    a.reasoning = a.fmt && !strcmp(a.fmt, "deepseek-r1");
    a.alias = a.reasoning ? "deepseek-reasoner" : "deepseek-chat";
    a.model_name = "fuzz";
    a.n_ctx = 256;
    if (!a.fmt) abort();
    api_ctx_tokens(&a);
    gguf_file f;
    whale_err err = {0};
    if (gguf_open(&f, getenv("WHALE_FUZZ_MODEL"), GGUF_OPEN_METADATA_ONLY, &err) || tokenizer_load_gguf(&tok, &f, &err)) abort();
    gguf_close(&f);
    if (!(cv = constraint_vocab_new(tok))) abort();
    return 0;
}

static void one(int kind, const char *body, size_t n) {
    api_req q;
    char *err = NULL;
    int status = (kind ? api_parse_completion : api_parse_chat)(&a, body, n, &q, &err);
    if (status) {
        if (status < 400 || status > 499 || !err || !strstr(err, "\"error\"")) abort(); /* a client error, said */
        free(err);
        return;
    }
    if (err) abort();
    sched_constraint *con = q.json ? constraint_json(cv, a.reasoning && kind == API_CHAT && !q.prefix) : NULL;
    if (!con && q.n_tools) con = constraint_tools(cv, q.tool_force, q.tool_force_name);
    if (con) {
        con->free(con->ctx);
        free(con);
    }
    api_req_free(&q);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    one(0, (const char *)data, size);
    one(1, (const char *)data, size);
    return 0;
}
