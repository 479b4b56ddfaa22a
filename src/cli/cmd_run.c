/* cmd_run.c — `whale run`: one prompt, one reply, for scripts and pipes. The prompt is sent as
 * one user message in the model's chat format (--raw: as plain text, no format). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "base/readall.h"
#include "cli/gen.h"

/* A prompt from standard input larger than this is a mistake, not a question. */
#define RUN_MAX_PROMPT (64u << 20)

static void usage(FILE *f) {
    fprintf(f, "usage: whale run [-m MODEL] -p TEXT [options]\n\n"
               "Answer one prompt. Reasoning (between <think> and </think>) is printed dimmed on a\n"
               "terminal, then the answer.\n"
               "  -p TEXT               the prompt (-p - reads standard input)\n"
               "  --system TEXT         a system prompt\n"
               "  --json                print one JSON object and nothing else: reasoning, answer,\n"
               "                        finish_reason, prompt_tokens, completion_tokens, timings\n"
               "  --raw                 no chat format: continue the text as given\n"
               "  --ids LIST            the prompt as token ids (\"1 17 200\"), no chat format; works for a\n"
               "                        model without a tokenizer (--json then lists the generated ids)\n%s",
               gen_flags_help);
}

typedef struct outbuf {
    char *s[2];
    size_t n[2], cap[2];
    int stream, tty, last_kind;
} outbuf;

static void sink(void *ctx, reasoning_kind kind, const char *text, size_t n) {
    outbuf *o = ctx;
    int k = kind == REASONING_ANSWER;
    if (o->n[k] + n + 1 > o->cap[k]) {
        size_t cap = (o->cap[k] + n + 1) * 2;
        char *p = realloc(o->s[k], cap);
        if (!p) return;
        o->s[k] = p;
        o->cap[k] = cap;
    }
    memcpy(o->s[k] + o->n[k], text, n);
    o->n[k] += n;
    o->s[k][o->n[k]] = 0;
    if (!o->stream) return;
    if (o->last_kind == REASONING_THINK && kind == REASONING_ANSWER) fputs(o->tty ? "\033[0m\n\n" : "\n\n", stdout);
    if (o->last_kind != REASONING_THINK && kind == REASONING_THINK && o->tty) fputs("\033[2m", stdout);
    o->last_kind = kind;
    fwrite(text, 1, n, stdout);
    fflush(stdout);
}

int cmd_run(int argc, char **argv) {
    gen_opts o;
    gen_opts_default(&o);
    const char *prompt = NULL, *system = NULL, *ids_arg = NULL;
    int json = 0, raw = 0;
    for (int i = 1; i < argc; i++) {
        int r = gen_parse_flag(&o, argc, argv, &i, "run");
        if (r < 0) return 2;
        if (r) continue;
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--raw")) raw = 1;
        else if (v && !strcmp(a, "-p")) { prompt = v; i++; }
        else if (v && !strcmp(a, "--system")) { system = v; i++; }
        else if (v && !strcmp(a, "--ids")) { ids_arg = v; raw = 1; i++; }
        else { fprintf(stderr, "whale run: bad option '%s' (see whale run --help)\n", a); return 2; }
    }
    if (!prompt == !ids_arg) {
        fprintf(stderr, "whale run: give -p TEXT (-p - reads standard input) or --ids LIST\n");
        return 2;
    }
    char *owned = NULL;
    if (prompt && !strcmp(prompt, "-")) {
        size_t n;
        prompt = owned = read_all(stdin, RUN_MAX_PROMPT, &n, NULL);
        if (!owned) { fprintf(stderr, "whale run: cannot read standard input\n"); return 1; }
        if (!*owned) { fprintf(stderr, "whale run: standard input is empty: nothing to answer\n"); free(owned); return 1; }
    }
    whale_err err = {0};
    model *m = NULL;
    session *s = NULL;
    tok_ids ids = {0};
    outbuf out = {0};
    int rc = 1;
    model_opts mo = {.n_threads = o.threads, .progress = !json && isatty(2), .kv_f16 = o.kv_f16};
    if (model_load(&m, cli_model_path(o.model), &mo, &err)) { fprintf(stderr, "whale: %s\n", err.msg); goto done; }
    const tokenizer *t = model_tokenizer(m);
    if (!t && !ids_arg) { fprintf(stderr, "whale run: the model has no tokenizer (give the prompt as --ids)\n"); goto done; }
    chat_format_kind fmt = raw ? CHAT_FORMAT_NONE : chat_format_detect(model_chat_template(m), t, o.chat_format);
    if (ids_arg && cli_parse_ids("run", ids_arg, &ids)) goto done;
    if (ids_arg && !ids.n) { fprintf(stderr, "whale run: --ids is empty\n"); goto done; }
    if (!raw && fmt == CHAT_FORMAT_NONE) {
        fprintf(stderr, "whale run: no chat format %s (use --chat-format deepseek-r1|chatml, or --raw)\n",
                o.chat_format ? "by that name" : "known for this model");
        goto done;
    }
    int in_think = fmt == CHAT_FORMAT_DEEPSEEK_R1 && o.think;
    if (ids_arg) {
    } else if (raw) {
        if (tokenizer_encode(t, prompt, strlen(prompt), TOK_ADD_BOS, &ids, &err)) { fprintf(stderr, "whale: %s\n", err.msg); goto done; }
    } else {
        chat_msg msgs[2];
        size_t n = 0;
        if (system) msgs[n++] = (chat_msg){.role = CHAT_SYSTEM, .content = system};
        msgs[n++] = (chat_msg){.role = CHAT_USER, .content = prompt};
        int flags = CHAT_GENERATION_PROMPT | (o.think ? 0 : CHAT_NO_FORCED_THINK);
        if (chat_format_encode(t, fmt, msgs, n, flags, &ids, &err)) { fprintf(stderr, "whale: %s\n", err.msg); goto done; }
    }
    int64_t ctx = o.n_ctx;
    if (!ctx) { /* enough for the prompt and the reply, within the model's limit */
        const model_hparams *hp = model_hparams_get(m);
        ctx = (int64_t)ids.n + (o.max_tokens > 0 ? o.max_tokens : 4096) + 1;
        if (hp->n_ctx_train > 0 && ctx > hp->n_ctx_train) ctx = hp->n_ctx_train;
    }
    if (!(s = session_new(m, ctx, &o.sp, &err))) { fprintf(stderr, "whale: %s\n", err.msg); goto done; }
    if (gen_session_setup(s, &o, "run")) goto done;
    out.stream = !json;
    out.tty = isatty(1);
    out.last_kind = -1;
    gen_stats st;
    if (gen_run(s, t, ids.v, ids.n, o.max_tokens, in_think, NULL, sink, &out, &st, &err)) {
        fprintf(stderr, "\nwhale: %s\n", err.msg);
        goto done;
    }
    if (json) {
        cJSON *j = cJSON_CreateObject(), *tm = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "reasoning", out.s[0] ? out.s[0] : "");
        cJSON_AddStringToObject(j, "answer", out.s[1] ? out.s[1] : "");
        cJSON_AddStringToObject(j, "finish_reason", st.finish);
        cJSON_AddNumberToObject(j, "prompt_tokens", (double)st.n_prompt);
        cJSON_AddNumberToObject(j, "completion_tokens", (double)st.n_gen);
        cJSON *gt = cJSON_CreateArray();
        for (size_t i = ids.n; i < session_n_tokens(s); i++)
            cJSON_AddItemToArray(gt, cJSON_CreateNumber(session_tokens(s)[i]));
        cJSON_AddItemToObject(j, "tokens", gt);
        cJSON_AddNumberToObject(tm, "prefill_tokens_per_s", st.t_prefill > 0 ? (double)st.n_prefill / st.t_prefill : 0);
        cJSON_AddNumberToObject(tm, "decode_tokens_per_s", st.t_decode > 0 ? (double)st.n_gen / st.t_decode : 0);
        cJSON_AddNumberToObject(tm, "prefill_s", st.t_prefill);
        cJSON_AddNumberToObject(tm, "decode_s", st.t_decode);
        if (o.spec_mtp) {
            cJSON *sp = cJSON_CreateObject();
            cJSON_AddNumberToObject(sp, "drafted", (double)st.drafted);
            cJSON_AddNumberToObject(sp, "accepted", (double)st.accepted);
            cJSON_AddNumberToObject(sp, "acceptance_rate", st.drafted ? (double)st.accepted / (double)st.drafted : 0);
            cJSON_AddItemToObject(j, "speculative", sp);
        }
        cJSON_AddItemToObject(j, "timings", tm);
        char *txt = cJSON_PrintUnformatted(j);
        if (txt) puts(txt);
        free(txt);
        cJSON_Delete(j);
    } else {
        if (out.tty && out.last_kind == REASONING_THINK) fputs("\033[0m", stdout);
        printf("\n");
        fprintf(stderr, "[%zu prompt tokens at %.1f t/s, %zu generated at %.1f t/s, %s]\n", st.n_prefill,
                st.t_prefill > 0 ? st.n_prefill / st.t_prefill : 0.0, st.n_gen,
                st.t_decode > 0 ? st.n_gen / st.t_decode : 0.0, st.finish);
        if (o.spec_mtp)
            fprintf(stderr, "[MTP speculation: %llu of %llu drafts accepted (%.1f%%)]\n", (unsigned long long)st.accepted,
                    (unsigned long long)st.drafted, st.drafted ? 100.0 * (double)st.accepted / (double)st.drafted : 0.0);
    }
    rc = 0;
done:
    free(out.s[0]);
    free(out.s[1]);
    tok_ids_free(&ids);
    session_free(s);
    model_free(m);
    free(owned);
    return rc;
}
