/* gen.c — shared generation flags and the token loop of run and chat. */
#include "cli/gen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "cli/cli.h"

const char gen_flags_help[] =
    "  -m MODEL              a .gguf file or Hugging Face checkpoint (default: the default model)\n"
    "  --ctx N               context length in tokens (default: the model's, at most 4096)\n"
    "  -n, --max-tokens N    stop a reply after N tokens (default: until done or the context is full)\n"
    "  --temp T              temperature (default 0.6, DeepSeek's recommendation for R1; 0 = greedy)\n"
    "  --top-p P             nucleus sampling (default 0.95)\n"
    "  --top-k K             keep the K most likely tokens (default 0: off)\n"
    "  --min-p P             drop tokens below P x the best one's probability (default 0: off)\n"
    "  --repeat-penalty R    penalize repeating the last 64 tokens (default 1: off)\n"
    "  --presence-penalty X  --frequency-penalty X  (OpenAI semantics, default 0)\n"
    "  --seed S              make sampling reproducible\n"
    "  --chat-format F       deepseek-r1 or chatml (default: from the model)\n"
    "  --no-think            R1 models: do not force the reply to start with <think>\n"
    "  --speculative mtp     DeepSeek-V3/R1: draft a token ahead with the model's MTP module and\n"
    "                        verify it in the same pass (greedy: needs --temp 0; same output)\n"
    CLI_KV_TYPE_HELP
    "  -t N                  threads (default: all cores)\n";

void gen_opts_default(gen_opts *o) {
    memset(o, 0, sizeof *o);
    o->sp = sampler_default_params();
    o->think = 1;
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
        if (!v || strcmp(v, "mtp")) {
            fprintf(stderr, "whale %s: --speculative takes 'mtp' (the model's own MTP module)\n", cmd);
            return -1;
        }
        o->spec_mtp = 1;
        (*i)++;
    } else if (!strcmp(a, "--kv-type")) {
        if (cli_kv_type(cmd, v, &o->kv_f16)) return -1;
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
    else if (!strcmp(a, "--no-think")) o->think = 0;
    else return 0;
#undef TAKE
    return 1;
}

int gen_session_setup(session *s, const gen_opts *o, const char *cmd) {
    whale_err err = {0};
    if (o->spec_mtp && session_speculative_mtp(s, &err)) {
        fprintf(stderr, "whale %s: --speculative mtp: %s\n", cmd, err.msg);
        return -1;
    }
    return 0;
}

/* End of a turn: the vocabulary's EOS or any other control token (<|im_end|>, <|endoftext|>). */
static int is_end(const tokenizer *t, int32_t id) {
    return id == tokenizer_eos(t) || tokenizer_attr(t, id) == TOK_CONTROL;
}

int gen_run(session *s, const tokenizer *t, const int32_t *ids, size_t n, int64_t max_tokens, int start_in_think,
            volatile sig_atomic_t *cancel, gen_sink sink, void *ctx, gen_stats *st, whale_err *err) {
    memset(st, 0, sizeof *st);
    st->n_prompt = n;
    st->finish = "error";
    uint64_t d0, a0;
    session_spec_stats(s, &d0, &a0);
    double t0 = clock_now_s();
    int rc = session_prompt(s, ids, n, err);
    if (rc) return rc;
    st->n_prefill = session_last_prefill(s);
    double t1 = clock_now_s();
    st->t_prefill = t1 - t0;
    reasoning r;
    reasoning_init(&r, start_in_think, sink, ctx);
    tok_stream ts = {0};
    char buf[2048];
    st->finish = "length";
    for (;;) {
        if (cancel && *cancel) {
            st->finish = "cancelled";
            break;
        }
        if (max_tokens > 0 && (int64_t)st->n_gen >= max_tokens) break;
        if ((int64_t)session_n_tokens(s) >= session_n_ctx(s)) break;
        int32_t id = session_next(s, err);
        if (id < 0) {
            rc = id;
            st->finish = "error";
            break;
        }
        st->n_gen++;
        if (t && is_end(t, id)) {
            st->finish = "stop";
            break;
        }
        int k = t ? tokenizer_stream(t, &ts, id, buf, sizeof buf) : 0;
        if (k > 0) reasoning_feed(&r, buf, (size_t)k);
    }
    int k = t ? tokenizer_stream(t, &ts, -1, buf, sizeof buf) : 0;
    if (k > 0) reasoning_feed(&r, buf, (size_t)k);
    reasoning_flush(&r);
    st->t_decode = clock_now_s() - t1;
    session_spec_stats(s, &st->drafted, &st->accepted);
    st->drafted -= d0;
    st->accepted -= a0;
    return rc;
}
