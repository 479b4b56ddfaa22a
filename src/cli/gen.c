/* gen.c — shared generation flags, opening the model and engine, and the reply loop of run
 * and chat, all through whale.h. */
#include "cli/gen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "cli/cli.h"

const char gen_flags_help[] =
    "  -m MODEL              a .gguf file or Hugging Face checkpoint (default: the default model)\n"
    "  --lora PATH           apply a LoRA adapter (PEFT directory: adapter_config.json +\n"
    "                        adapter_model.safetensors) to a Qwen2/Llama model\n"
    "  --ctx N               context length in tokens (default: the model's, at most 4096)\n"
    "  -n, --max-tokens N    stop a reply after N tokens (default: until done or the context is full)\n"
    "  --temp T              temperature (default 0.6, DeepSeek's recommendation for R1; 0 = greedy)\n"
    "  --top-p P             nucleus sampling (default 0.95)\n"
    "  --top-k K             keep the K most likely tokens (default 0: off)\n"
    "  --min-p P             drop tokens below P x the best one's probability (default 0: off)\n"
    "  --repeat-penalty R    penalize repeating the last 64 tokens (default 1: off)\n"
    "  --presence-penalty X  --frequency-penalty X  (OpenAI semantics, default 0)\n"
    "  --seed S              make sampling reproducible\n"
    "  --chat-format F       deepseek-r1, chatml or chatml-think (default: from the model)\n"
    "  --no-think            R1 models: do not force the reply to start with <think>\n"
    "  --draft MODEL         speculative decoding: a smaller model with the same vocabulary (a name\n"
    "                        or path, e.g. default for a Qwen2.5 1.5B/7B) guesses the next tokens\n"
    "                        and the model checks them in one pass; greedy output is unchanged,\n"
    "                        sampled output keeps its distribution\n"
    "  --draft lookup        the same with guesses copied from where the latest tokens occurred\n"
    "                        before in the prompt or reply (free; pays when the answer quotes or\n"
    "                        edits its prompt)\n"
    "  --draft-max N         guesses per step (1..16; default 4 for a model, 7 for lookup)\n"
    "  --speculative mtp     DeepSeek-V3/R1: the guess comes from the model's own MTP module\n"
    "  --json-mode           the answer is a valid JSON object (after any reasoning)\n"
    "  --reasoning-budget N  R1 models: after N tokens of reasoning, close it and answer\n"
    "  --logprobs K          record each token's log probability and its K best alternatives\n"
    "                        (0..20; run --json lists them, otherwise they go to stderr)\n"
    "  --no-cache            do not use the context cache: by default every computed block of 64\n"
    "                        prompt tokens is written to $WHALE_HOME/kv-cache (up to 8 GiB, with its\n"
    "                        token ids), so a long prompt sent again, even after a restart, is read\n"
    "                        back instead of computed\n"
    CLI_KV_TYPE_HELP
    "  -t N                  threads (default: all cores)\n";

void gen_opts_default(gen_opts *o) {
    memset(o, 0, sizeof *o);
    whale_request r;
    whale_request_default(&r);
    o->sp = r.sampling;
    o->think = 1;
    o->cache = 1;
    o->reasoning_budget = -1;
    o->logprobs = -1;
}

static int num(const char *cmd, const char *flag, const char *v, double lo, double hi, double *out) {
    char *end;
    double d = v ? strtod(v, &end) : 0;
    if (!v || *end || d < lo || d > hi) {
        fprintf(stderr, "whale %s: %s needs a number from %.10g to %.10g\n", cmd, flag, lo, hi);
        return -1;
    }
    *out = d;
    return 0;
}

int gen_parse_flag(gen_opts *o, int argc, char **argv, int *i, const char *cmd) {
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    double d;
#define TAKE(lo, hi) do { if (num(cmd, a, v, lo, hi, &d)) return -1; (*i)++; } while (0)
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
        if (!v) { fprintf(stderr, "whale %s: -m needs a value\n", cmd); return -1; }
        o->model = v;
        (*i)++;
    } else if (!strcmp(a, "--chat-format")) {
        if (!v) { fprintf(stderr, "whale %s: --chat-format needs a value\n", cmd); return -1; }
        o->chat_format = v;
        (*i)++;
    } else if (!strcmp(a, "--speculative")) {
        if (!v || (strcmp(v, "mtp") && strcmp(v, "lookup"))) {
            fprintf(stderr, "whale %s: --speculative takes 'mtp' (the model's own MTP module) or 'lookup'; "
                            "a draft model is --draft MODEL\n", cmd);
            return -1;
        }
        o->spec = !strcmp(v, "mtp") ? WHALE_SPEC_MTP : WHALE_SPEC_LOOKUP;
        (*i)++;
    } else if (!strcmp(a, "--draft")) {
        if (!v) { fprintf(stderr, "whale %s: --draft needs a model (name or path) or 'lookup'\n", cmd); return -1; }
        o->spec = !strcmp(v, "lookup") ? WHALE_SPEC_LOOKUP : WHALE_SPEC_DRAFT;
        o->draft = o->spec == WHALE_SPEC_DRAFT ? v : NULL;
        (*i)++;
    } else if (!strcmp(a, "--lora")) {
        if (!v) { fprintf(stderr, "whale %s: --lora needs an adapter directory\n", cmd); return -1; }
        o->lora = v;
        (*i)++;
    } else if (!strcmp(a, "--kv-type")) {
        if (cli_kv_type(cmd, v, &o->kv_type)) return -1;
        (*i)++;
    } else if (!strcmp(a, "--ctx")) { TAKE(16, 1 << 24); o->n_ctx = (int64_t)d; }
    else if (!strcmp(a, "-n") || !strcmp(a, "--max-tokens")) { TAKE(0, 1 << 24); o->max_tokens = (int64_t)d; }
    else if (!strcmp(a, "--temp")) { TAKE(0, 100); o->sp.temperature = (float)d; }
    else if (!strcmp(a, "--top-p")) { TAKE(0, 1); o->sp.top_p = (float)d; }
    else if (!strcmp(a, "--top-k")) { TAKE(0, 1 << 24); o->sp.top_k = (int32_t)d; }
    else if (!strcmp(a, "--min-p")) { TAKE(0, 1); o->sp.min_p = (float)d; }
    else if (!strcmp(a, "--repeat-penalty")) { TAKE(0.01, 100); o->sp.repeat_penalty = (float)d; }
    else if (!strcmp(a, "--presence-penalty")) { TAKE(-2, 2); o->sp.presence_penalty = (float)d; }
    else if (!strcmp(a, "--frequency-penalty")) { TAKE(-2, 2); o->sp.frequency_penalty = (float)d; }
    else if (!strcmp(a, "--seed")) { TAKE(0, 1.8e19); o->sp.seed = (uint64_t)d; }
    else if (!strcmp(a, "-t")) { TAKE(1, 1024); o->threads = (int)d; }
    else if (!strcmp(a, "--draft-max")) { TAKE(1, 16); o->draft_max = (int)d; }
    else if (!strcmp(a, "--reasoning-budget")) { TAKE(0, 1 << 24); o->reasoning_budget = (int64_t)d; }
    else if (!strcmp(a, "--logprobs")) { TAKE(0, WHALE_MAX_TOP_LOGPROBS); o->logprobs = (int)d; }
    else if (!strcmp(a, "--no-think")) o->think = 0;
    else if (!strcmp(a, "--no-cache")) o->cache = 0;
    else if (!strcmp(a, "--json-mode")) o->json_mode = 1;
    else return 0;
#undef TAKE
    return 1;
}

int gen_open_model(const gen_opts *o, int show_progress, whale_model **m) {
    whale_err err = {0};
    whale_model_params mp = {.n_threads = o->threads, .kv_type = o->kv_type, .progress = show_progress};
    if (!whale_model_open(m, o->model, &mp, &err)) {
        if (!o->lora || !whale_model_lora(*m, o->lora, &err)) return 0;
        whale_model_close(*m);
        *m = NULL;
        fprintf(stderr, "whale: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "whale: %s%s\n", err.msg, o->model ? "" : " (run `make run` or scripts/setup to fetch the default model)");
    return 1;
}

const char *gen_spec_name(const gen_opts *o) {
    return o->spec == WHALE_SPEC_MTP      ? "mtp"
           : o->spec == WHALE_SPEC_LOOKUP ? "lookup"
           : o->spec == WHALE_SPEC_DRAFT  ? "draft model"
                                          : NULL;
}

int gen_open_engine(const gen_opts *o, whale_model *m, int64_t n_ctx, whale_engine **e, whale_model **draft,
                    const char *cmd) {
    whale_err err = {0};
    whale_model_info mi;
    whale_model_info_get(m, &mi);
    *draft = NULL;
    if (o->n_ctx && mi.n_ctx_train > 0 && o->n_ctx > mi.n_ctx_train) {
        fprintf(stderr, "whale %s: --ctx %lld is longer than the model's trained %lld tokens\n", cmd, (long long)o->n_ctx,
                (long long)mi.n_ctx_train);
        return 1;
    }
    whale_engine_params ep;
    whale_engine_params_default(&ep);
    ep.n_parallel = 1;
    ep.n_ctx = n_ctx ? n_ctx : o->n_ctx;
    ep.cache = o->cache;
    ep.cache_ram = 0; /* one process, one sequence: its slot keeps the conversation; the disk tier
                         is what a later process reads back */
    ep.speculative = o->spec;
    ep.draft_max = o->draft_max;
    if (o->spec == WHALE_SPEC_DRAFT) {
        /* a draft is a dense model: a q8 cache (MLA only) becomes its nearest, bf16 */
        whale_model_params mp = {.n_threads = o->threads, .kv_type = o->kv_type == WHALE_KV_Q8 ? WHALE_KV_BF16 : o->kv_type};
        if (whale_model_open(draft, o->draft, &mp, &err)) {
            fprintf(stderr, "whale %s: --draft: %s\n", cmd, err.msg);
            return 1;
        }
        ep.draft = *draft;
    }
    if (whale_engine_new(e, m, &ep, &err)) {
        fprintf(stderr, "whale %s: %s%s\n", cmd, o->spec == WHALE_SPEC_DRAFT ? "--draft: " : "", err.msg);
        whale_model_close(*draft);
        *draft = NULL;
        return 1;
    }
    if (whale_engine_warning(*e)) fprintf(stderr, "whale %s: warning: %s\n", cmd, whale_engine_warning(*e));
    return 0;
}

void gen_stats_free(gen_stats *st) {
    whale_ids_free(&st->tokens);
    free(st->lp);
    st->lp = NULL;
}

int gen_run(whale_engine *e, const whale_model *m, const gen_opts *o, const int32_t *ids, size_t n, int start_in_think,
            volatile sig_atomic_t *cancel, whale_text_sink sink, void *ctx, gen_stats *st, whale_err *err) {
    memset(st, 0, sizeof *st);
    st->n_prompt = n;
    st->finish = "error";
    whale_request q;
    whale_request_default(&q);
    q.prompt = ids;
    q.n_prompt = n;
    q.sampling = o->sp;
    q.max_tokens = o->max_tokens;
    q.reasoning_budget = o->reasoning_budget;
    q.json_mode = o->json_mode;
    q.start_in_think = start_in_think;
    q.logprobs = o->logprobs >= 0;
    q.top_logprobs = o->logprobs > 0 ? o->logprobs : 0;
    whale_text *tx = whale_text_new(m, start_in_think ? WHALE_TEXT_START_IN_THINK : 0, sink, ctx);
    whale_job *j = NULL;
    int rc = tx ? whale_submit(e, &q, &j, err) : WHALE_E_NOMEM;
    if (rc) {
        if (!tx) snprintf(err->msg, sizeof err->msg, "out of memory");
        whale_text_free(tx);
        return rc;
    }
    double t0 = clock_now_s();
    int32_t buf[64];
    int done = 0, cancelled = 0;
    while (!done) {
        if (cancel && *cancel && !cancelled) whale_job_cancel(j), cancelled = 1;
        size_t k = whale_job_wait(j, st->tokens.n, buf, 64, 100, &done);
        for (size_t i = 0; i < k; i++) {
            if (whale_ids_push(&st->tokens, buf[i])) { /* out of memory: stop, keep what came */
                rc = WHALE_E_NOMEM;
                whale_job_cancel(j);
                done = 1;
                break;
            }
            whale_text_feed(tx, buf + i, 1);
        }
    }
    whale_text_end(tx);
    whale_text_free(tx);
    double t_end = clock_now_s();
    whale_result r;
    whale_job_result(j, &r);
    if (q.logprobs && st->tokens.n && (st->lp = calloc(st->tokens.n, sizeof *st->lp)))
        for (size_t i = 0; i < st->tokens.n; i++)
            st->lp[i].n_top = whale_job_logprobs(j, i, &st->lp[i].lp, st->lp[i].top_id, st->lp[i].top_lp);
    whale_job_release(j);
    st->n_cached = r.n_cached;
    st->n_gen = st->tokens.n;
    st->finish = r.finish;
    st->drafted = r.drafted;
    st->accepted = r.accepted;
    st->t_prefill = r.t_first > 0 ? r.t_first : t_end - t0;
    st->t_decode = r.t_first > 0 ? t_end - t0 - r.t_first : 0;
    if (!strcmp(r.finish, "error") && !rc) rc = WHALE_E_NOMEM, snprintf(err->msg, sizeof err->msg, "generation failed");
    if (rc && !err->msg[0]) snprintf(err->msg, sizeof err->msg, "out of memory");
    return rc;
}
