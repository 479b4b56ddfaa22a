/* fuzz_api_json.c — arbitrary bytes as the body of a chat completion and of a completion: the
 * decoder must accept or refuse them (a status and an error body) without crashing or leaking,
 * and an accepted request must yield the constraints (JSON mode, tools) it calls for. */
#include <stdlib.h>
#include <string.h>

#include "engine/constraint.h"
#include "fuzz_model.h"
#include "service/api.h"

static model *m;
static api_ctx a;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    m = fuzz_model_load("fuzz_api_json");
    a.tok = model_tokenizer(m);
    a.fmt = chat_format_detect(model_chat_template(m), a.tok, NULL);
    a.reasoning = a.fmt == CHAT_FORMAT_DEEPSEEK_R1;
    a.alias = a.reasoning ? "deepseek-reasoner" : "deepseek-chat";
    a.model_name = "fuzz";
    a.n_ctx = 256;
    if (a.fmt == CHAT_FORMAT_NONE || api_ctx_tokens(&a)) abort();
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
    sched_constraint *con = q.json ? constraint_json(a.cv, a.reasoning && kind == API_CHAT && !q.prefix) : NULL;
    if (!con && q.n_tools) con = constraint_tools(a.cv, q.tool_force, q.tool_force_name);
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
