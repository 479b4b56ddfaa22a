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
               "                        finish_reason, prompt_tokens, completion_tokens, tokens,\n"
               "                        prompt_cache_hit_tokens, prompt_cache_miss_tokens, timings\n"
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

static void sink(void *ctx, whale_text_kind kind, const char *text, size_t n) {
    outbuf *o = ctx;
    int k = kind == WHALE_TEXT_ANSWER;
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
    if (o->last_kind == WHALE_TEXT_THINK && kind == WHALE_TEXT_ANSWER) fputs(o->tty ? "\033[0m\n\n" : "\n\n", stdout);
    if (o->last_kind != WHALE_TEXT_THINK && kind == WHALE_TEXT_THINK && o->tty) fputs("\033[2m", stdout);
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
    whale_model *m = NULL;
    whale_engine *e = NULL;
    whale_model *draft = NULL;
    whale_ids ids = {0};
    outbuf out = {0};
    gen_stats st = {0};
    int rc = 1;
    if (gen_open_model(&o, !json && isatty(2), &m)) goto done;
    whale_model_info mi;
    whale_model_info_get(m, &mi);
    if (!mi.has_tokenizer && !ids_arg) { fprintf(stderr, "whale run: the model has no tokenizer (give the prompt as --ids)\n"); goto done; }
    const char *fmt = raw ? NULL : whale_chat_format(m, o.chat_format);
    if (ids_arg && cli_parse_ids("run", ids_arg, &ids)) goto done;
    if (ids_arg && !ids.n) { fprintf(stderr, "whale run: --ids is empty\n"); goto done; }
    if (!raw && !fmt) {
        fprintf(stderr, "whale run: no chat format %s (use --chat-format deepseek-r1|chatml|chatml-think, or --raw)\n",
                o.chat_format ? "by that name" : "known for this model");
        goto done;
    }
    int in_think = whale_chat_format_thinks(fmt) && o.think;
    if (ids_arg) {
    } else if (raw) {
        if (whale_tokenize(m, prompt, strlen(prompt), WHALE_TOK_ADD_BOS, &ids, &err)) { fprintf(stderr, "whale: %s\n", err.msg); goto done; }
    } else {
        whale_msg msgs[2];
        size_t n = 0;
        if (system) msgs[n++] = (whale_msg){.role = WHALE_ROLE_SYSTEM, .content = system};
        msgs[n++] = (whale_msg){.role = WHALE_ROLE_USER, .content = prompt};
        int flags = WHALE_CHAT_GENERATION_PROMPT | (o.think ? 0 : WHALE_CHAT_NO_FORCED_THINK);
        if (whale_chat_apply(m, fmt, msgs, n, NULL, 0, flags, &ids, &err)) { fprintf(stderr, "whale: %s\n", err.msg); goto done; }
    }
    int64_t ctx = o.n_ctx;
    if (!ctx) { /* enough for the prompt and the reply, within the model's limit */
        ctx = (int64_t)ids.n + (o.max_tokens > 0 ? o.max_tokens : 4096) + 1;
        if (mi.n_ctx_train > 0 && ctx > mi.n_ctx_train) ctx = mi.n_ctx_train;
    }
    if ((int64_t)ids.n >= ctx) {
        fprintf(stderr, "whale run: the prompt is %zu tokens, the context holds %lld (shorten it by %lld or raise --ctx)\n",
                ids.n, (long long)ctx, (long long)((int64_t)ids.n - ctx + 1));
        goto done;
    }
    if (gen_open_engine(&o, m, ctx, &e, &draft, "run")) goto done;
    out.stream = !json;
    out.tty = isatty(1);
    out.last_kind = -1;
    if (gen_run(e, m, &o, ids.v, ids.n, in_think, NULL, sink, &out, &st, &err)) {
        fprintf(stderr, "\nwhale: %s\n", err.msg);
        goto done;
    }
    double decode_rate = st.n_gen > 1 && st.t_decode > 0 ? (double)(st.n_gen - 1) / st.t_decode : 0;
    size_t n_miss = st.n_prompt - st.n_cached;
    if (json) {
        cJSON *j = cJSON_CreateObject(), *tm = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "reasoning", out.s[0] ? out.s[0] : "");
        cJSON_AddStringToObject(j, "answer", out.s[1] ? out.s[1] : "");
        cJSON_AddStringToObject(j, "finish_reason", st.finish);
        cJSON_AddNumberToObject(j, "prompt_tokens", (double)st.n_prompt);
        cJSON_AddNumberToObject(j, "completion_tokens", (double)st.n_gen);
        cJSON_AddNumberToObject(j, "prompt_cache_hit_tokens", (double)st.n_cached);
        cJSON_AddNumberToObject(j, "prompt_cache_miss_tokens", (double)n_miss);
        cJSON *gt = cJSON_CreateArray();
        for (size_t i = 0; i < st.tokens.n; i++) cJSON_AddItemToArray(gt, cJSON_CreateNumber(st.tokens.v[i]));
        cJSON_AddItemToObject(j, "tokens", gt);
        if (st.lp) {
            cJSON *la = cJSON_AddArrayToObject(j, "logprobs");
            for (size_t i = 0; i < st.n_gen; i++) {
                cJSON *e1 = cJSON_CreateObject(), *top = cJSON_CreateArray();
                cJSON_AddNumberToObject(e1, "token", st.tokens.v[i]);
                cJSON_AddNumberToObject(e1, "logprob", st.lp[i].lp);
                for (int k = 0; k < st.lp[i].n_top; k++) {
                    cJSON *t1 = cJSON_CreateObject();
                    cJSON_AddNumberToObject(t1, "token", st.lp[i].top_id[k]);
                    cJSON_AddNumberToObject(t1, "logprob", st.lp[i].top_lp[k]);
                    cJSON_AddItemToArray(top, t1);
                }
                cJSON_AddItemToObject(e1, "top_logprobs", top);
                cJSON_AddItemToArray(la, e1);
            }
        }
        cJSON_AddNumberToObject(tm, "prefill_tokens_per_s", st.t_prefill > 0 ? (double)n_miss / st.t_prefill : 0);
        cJSON_AddNumberToObject(tm, "decode_tokens_per_s", decode_rate);
        cJSON_AddNumberToObject(tm, "prefill_s", st.t_prefill);
        cJSON_AddNumberToObject(tm, "decode_s", st.t_decode);
        if (o.spec) {
            cJSON *sp = cJSON_CreateObject();
            cJSON_AddStringToObject(sp, "drafter", gen_spec_name(&o));
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
        if (out.tty && out.last_kind == WHALE_TEXT_THINK) fputs("\033[0m", stdout);
        printf("\n");
        fprintf(stderr, "[%zu prompt tokens (%zu from the cache) at %.1f t/s, %zu generated at %.1f t/s, %s]\n", st.n_prompt,
                st.n_cached, st.t_prefill > 0 ? (double)n_miss / st.t_prefill : 0.0, st.n_gen, decode_rate, st.finish);
        if (o.spec)
            fprintf(stderr, "[speculation (%s): %llu of %llu drafts accepted (%.1f%%)]\n", gen_spec_name(&o),
                    (unsigned long long)st.accepted,
                    (unsigned long long)st.drafted, st.drafted ? 100.0 * (double)st.accepted / (double)st.drafted : 0.0);
        for (size_t i = 0; st.lp && i < st.n_gen; i++) {
            char b[64];
            int l = whale_token_bytes(m, st.tokens.v[i], b, sizeof b - 1);
            b[l < 0 ? 0 : l < (int)sizeof b - 1 ? l : (int)sizeof b - 1] = 0;
            fprintf(stderr, "%6d %-16s %9.4f", st.tokens.v[i], b, st.lp[i].lp);
            for (int k = 0; k < st.lp[i].n_top; k++) fprintf(stderr, "  %d:%.3f", st.lp[i].top_id[k], st.lp[i].top_lp[k]);
            fputc('\n', stderr);
        }
    }
    rc = 0;
done:
    free(out.s[0]);
    free(out.s[1]);
    gen_stats_free(&st);
    whale_ids_free(&ids);
    whale_engine_free(e);
    whale_model_close(draft);
    whale_model_close(m);
    free(owned);
    return rc;
}
