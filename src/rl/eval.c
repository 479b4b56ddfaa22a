/* eval.c — one evaluation: prompts for N problems, N x K jobs on one engine, replies verified,
 * metrics. Owns the engine it starts (freed before returning) and the result's arrays (freed by
 * rl_eval_result_free). Talks to the model only through whale.h. */
#include "rl/eval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/rng.h"

/* A prompt the model opened <think> in: R1-Zero's template as DeepSeek-R1's paper gives it. */
static const char r1zero_head[] = "A conversation between User and Assistant. The user asks a "
                                  "question, and the Assistant solves it. The "
                                  "assistant first thinks about the reasoning process in the mind "
                                  "and then provides the user with the answer. "
                                  "The reasoning process and answer are enclosed within <think> "
                                  "</think> and <answer> </answer> tags, "
                                  "respectively, i.e., <think> reasoning process here </think> "
                                  "<answer> answer here </answer>. User: ";
static const char r1zero_tail[] = " Assistant: <think>";
/* What the chat mode adds to the problem. */
static const char chat_instruction[] = "\n\nThink step by step inside <think> </think> tags, then "
                                       "write only the final answer after </think>.";

/* Longest reply the defaults allow when the caller gives none. */
#define RL_EVAL_DEFAULT_MAX_TOKENS 512
/* Poll interval while no job made progress: short against a decode step (tens of ms). */
#define RL_EVAL_POLL_MS 20

const char *rl_prompt_mode_name(int mode) {
    return mode == RL_PROMPT_CHAT     ? "chat"
           : mode == RL_PROMPT_R1ZERO ? "r1zero"
           : mode == RL_PROMPT_PLAIN  ? "plain"
                                      : "auto";
}

int rl_prompt_mode_parse(const char *name) {
    if (!strcmp(name, "chat")) return RL_PROMPT_CHAT;
    if (!strcmp(name, "r1zero")) return RL_PROMPT_R1ZERO;
    if (!strcmp(name, "plain")) return RL_PROMPT_PLAIN;
    if (!strcmp(name, "auto")) return RL_PROMPT_AUTO;
    return -1;
}

int rl_prompt_mode_resolve(const whale_model *m, int mode) {
    if (mode != RL_PROMPT_AUTO) return mode;
    return whale_chat_format(m, NULL) ? RL_PROMPT_CHAT : RL_PROMPT_R1ZERO;
}

char *rl_prompt_user_text(const char *problem, int mode) {
    if (mode == RL_PROMPT_PLAIN) return strdup(problem);
    size_t n = strlen(problem) + sizeof chat_instruction;
    char *text = malloc(n);
    if (text) snprintf(text, n, "%s%s", problem, chat_instruction);
    return text;
}

int rl_prompt_build(const whale_model *m, int mode, const char *problem, whale_ids *out,
                    int *start_in_think, whale_err *err) {
    whale_model_info mi;
    whale_model_info_get(m, &mi);
    if (!mi.has_tokenizer)
        return err_set(err, WHALE_E_UNSUPPORTED,
                       "the model has no tokenizer: it cannot read problems");
    mode = rl_prompt_mode_resolve(m, mode);
    *start_in_think = 0;
    if (mode == RL_PROMPT_CHAT || mode == RL_PROMPT_PLAIN) {
        const char *fmt = whale_chat_format(m, NULL);
        if (!fmt)
            return err_set(err, WHALE_E_UNSUPPORTED,
                           "the model has no chat format (use the r1zero prompt)");
        char *text = rl_prompt_user_text(problem, mode);
        if (!text) return err_set(err, WHALE_E_NOMEM, "out of memory");
        whale_msg msg = {.role = WHALE_ROLE_USER, .content = text};
        int rc = whale_chat_apply(m, fmt, &msg, 1, NULL, 0, WHALE_CHAT_GENERATION_PROMPT, out, err);
        free(text);
        *start_in_think = whale_chat_format_thinks(fmt); /* R1's, chatml-think: "<think>\n" */
        return rc;
    }
    size_t n = sizeof r1zero_head + strlen(problem) + sizeof r1zero_tail;
    char *text = malloc(n);
    if (!text) return err_set(err, WHALE_E_NOMEM, "out of memory");
    snprintf(text, n, "%s%s%s", r1zero_head, problem, r1zero_tail);
    int rc = whale_tokenize(m, text, strlen(text), WHALE_TOK_ADD_BOS, out, err);
    free(text);
    *start_in_think = 1;
    return rc;
}

void rl_eval_params_default(rl_eval_params *p) {
    memset(p, 0, sizeof *p);
    p->split = RL_SPLIT_TEST;
    p->n = 50;
    p->samples = 1;
    p->temperature = -1;
    p->max_tokens = RL_EVAL_DEFAULT_MAX_TOKENS;
    p->n_parallel = 4;
}

void rl_eval_result_free(rl_eval_result *r) {
    if (!r) return;
    for (int64_t i = 0; r->s && i < r->n * r->samples; i++)
        free(r->s[i].text), whale_ids_free(&r->s[i].ids);
    free(r->s);
    free(r->items);
    free(r->maj_correct);
    memset(r, 0, sizeof *r);
}

/* Tokens of a reply through byte offset `bytes` (its reasoning up to </think>). */
static int64_t tokens_through(const whale_model *m, const int32_t *ids, size_t n, size_t bytes) {
    size_t have = 0;
    char b[256];
    for (size_t i = 0; i < n; i++) {
        if (have >= bytes) return (int64_t)i;
        int l = whale_token_bytes(m, ids[i], b, sizeof b);
        have += l > 0 ? (size_t)l : 0;
    }
    return (int64_t)n;
}

/* One finished job into its sample: text, verdict, lengths. */
static int finish_sample(const whale_model *m, whale_ids *ids, const rl_item *it, int mode,
                         int start_in_think, rl_sample *s, whale_err *err) {
    size_t n = ids->n;
    s->n_gen = (int64_t)n;
    while (n && whale_token_is_end(m, ids->v[n - 1])) n--; /* the end-of-turn token is not text */
    s->n_text = (int64_t)n;
    s->text = n ? whale_detokenize(m, ids->v, n, &s->len) : strdup("");
    if (!s->text) return err_set(err, WHALE_E_NOMEM, "out of memory");
    size_t added = 0; /* bytes the reformatting put before the reply's own text */
    if (mode == RL_PROMPT_PLAIN && !start_in_think) {
        size_t len = 0;
        char *r = rl_reformat_plain(s->text, s->len, &len, &added);
        if (!r) return err_set(err, WHALE_E_NOMEM, "out of memory");
        free(s->text);
        s->text = r, s->len = len;
    }
    rl_verify(s->text, s->len, start_in_think, &it->ref, &s->v);
    if (s->v.think_end)
        s->n_think = tokens_through(m, ids->v, n, s->v.think_end > added ? s->v.think_end - added : 0);
    else if (!s->v.has_answer && (start_in_think || strstr(s->text, "<think>")))
        s->n_think = (int64_t)n; /* never closed */
    return 0;
}

static void metrics(rl_eval_result *r) {
    int64_t total = r->n * r->samples, correct = 0, fmt = 0, answered = 0, think = 0, gen = 0,
            text = 0, maj = 0;
    for (int64_t i = 0; i < total; i++) {
        const rl_sample *s = &r->s[i];
        correct += s->v.correct;
        fmt += s->v.format_ok;
        answered += s->v.vote != 0;
        think += s->n_think;
        gen += s->n_gen;
        text += s->n_text;
    }
    for (int64_t i = 0; i < r->n; i++) { /* majority vote over valid answers; ties: first seen */
        const rl_sample *s = &r->s[i * r->samples];
        int best = -1, best_count = 0;
        for (int a = 0; a < r->samples; a++) {
            if (!s[a].v.vote) continue;
            int c = 0, seen = 0;
            for (int b = 0; b < r->samples; b++) {
                if (s[b].v.vote != s[a].v.vote) continue;
                if (b < a) {
                    seen = 1;
                    break;
                }
                c++;
            }
            if (!seen && c > best_count) best = a, best_count = c;
        }
        r->maj_correct[i] = best >= 0 && s[best].v.correct;
        maj += r->maj_correct[i];
    }
    double d = total ? (double)total : 1;
    r->pass1 = (double)correct / d;
    r->format_rate = (double)fmt / d;
    r->answered_rate = (double)answered / d;
    r->mean_think = (double)think / d;
    r->mean_gen = (double)gen / d;
    r->mean_answer = (double)(text - think) / d;
    r->maj = r->n ? (double)maj / (double)r->n : 0;
    r->n_gen_tokens = gen;
    r->tokens_per_s = r->seconds > 0 ? (double)gen / r->seconds : 0;
}

typedef struct job_slot {
    whale_job *j;
    whale_ids ids;
    int done;
    size_t seen;    /* ids read from the job (kept or dropped) */
    int stopped;    /* "</answer>" seen: later ids are dropped */
    rl_stop_scan answer_end;
} job_slot;

/* Append k new ids to a job's reply. R1-Zero's template has the reply end with its answer: in
 * r1zero mode generation stops at the first "</answer>" (as R1-Zero-style trainers stop it), or
 * a base model that never saw an end of turn goes on writing the next "User:" line. */
static int take_ids(const whale_model *m, int mode, job_slot *js, const int32_t *ids, size_t k,
                    whale_err *err) {
    for (size_t a = 0; a < k && !js->stopped; a++) {
        if (whale_ids_push(&js->ids, ids[a])) return err_set(err, WHALE_E_NOMEM, "out of memory");
        char b[256];
        int l = mode == RL_PROMPT_R1ZERO ? whale_token_bytes(m, ids[a], b, sizeof b) : 0;
        if (l > 0 && rl_stop_feed(&js->answer_end, b, (size_t)l)) {
            js->stopped = 1;
            whale_job_cancel(js->j);
        }
    }
    return 0;
}

int rl_eval_run(whale_model *m, const rl_task *t, const rl_eval_params *pin,
                rl_eval_progress progress, void *ctx, rl_eval_result *out, whale_err *err) {
    rl_eval_params p = *pin;
    memset(out, 0, sizeof *out);
    if (p.n <= 0) p.n = 50;
    if (p.samples <= 0) p.samples = 1;
    if (p.max_tokens <= 0) p.max_tokens = RL_EVAL_DEFAULT_MAX_TOKENS;
    if (p.n_parallel <= 0) p.n_parallel = 4;
    if (p.temperature < 0) p.temperature = p.samples == 1 ? 0.0f : 0.6f;
    int64_t size = rl_task_size(t, p.split);
    if (size >= 0 && p.n > size) p.n = size;
    if (p.n * p.samples > RL_EVAL_MAX_SAMPLES)
        return err_set(err, WHALE_E_ARG, "%lld problems x %d samples is more than %d",
                       (long long)p.n, p.samples, RL_EVAL_MAX_SAMPLES);
    int64_t total = p.n * p.samples;
    out->n = p.n;
    out->samples = p.samples;
    out->temperature = p.temperature;
    out->mode = rl_prompt_mode_resolve(m, p.mode);
    out->items = calloc((size_t)p.n, sizeof *out->items);
    out->s = calloc((size_t)total, sizeof *out->s);
    out->maj_correct = calloc((size_t)p.n, sizeof *out->maj_correct);
    whale_ids *prompts = calloc((size_t)p.n, sizeof *prompts);
    job_slot *jobs = calloc((size_t)total, sizeof *jobs);
    whale_engine *e = NULL;
    int in_think = 0, rc = WHALE_E_NOMEM;
    if (!out->items || !out->s || !out->maj_correct || !prompts || !jobs) {
        err_set(err, rc, "out of memory");
        goto done;
    }
    size_t longest = 0;
    for (int64_t i = 0; i < p.n; i++) {
        int64_t at = p.first + i;
        if (size > 0) at %= size;
        if ((rc = rl_task_item(t, p.split, at, p.task_seed, &out->items[i], err))) goto done;
        if ((rc = rl_prompt_build(m, out->mode, out->items[i].prompt, &prompts[i], &in_think, err)))
            goto done;
        out->n_prompt_tokens += (int64_t)prompts[i].n;
        if (prompts[i].n > longest) longest = prompts[i].n;
    }
    whale_model_info mi;
    whale_model_info_get(m, &mi);
    whale_engine_params ep;
    whale_engine_params_default(&ep);
    ep.n_parallel = p.n_parallel;
    ep.n_ctx = (int64_t)longest + p.max_tokens + 1;
    if (mi.n_ctx_train > 0 && ep.n_ctx > mi.n_ctx_train) ep.n_ctx = mi.n_ctx_train;
    if ((int64_t)longest >= ep.n_ctx) {
        rc = err_set(err, WHALE_E_ARG, "a prompt is %zu tokens: the model's context holds %lld",
                     longest, (long long)ep.n_ctx);
        goto done;
    }
    ep.max_queue = total < 1 << 20 ? (int)total : 1 << 20;
    ep.cache_dir =
        ""; /* the problems' shared prefix is reused in memory; nothing written to disk */
    if ((rc = whale_engine_new(&e, m, &ep, err))) goto done;
    double t0 = clock_now_s();
    int64_t next = 0, finished = 0, first_open = 0;
    int32_t buf[256];
    while (finished < total) {
        while (next < total) { /* submit what the queue takes */
            int64_t i = next / p.samples, k = next % p.samples;
            whale_request q;
            whale_request_default(&q);
            q.prompt = prompts[i].v;
            q.n_prompt = prompts[i].n;
            q.sampling.temperature = p.temperature;
            q.sampling.top_p = p.top_p > 0 ? p.top_p : p.temperature > 0 ? 0.95f : 1.0f;
            uint64_t sd = p.seed ^ ((uint64_t)i * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)k << 40);
            q.sampling.seed = rng_splitmix64(&sd) >> 1; /* never WHALE_SEED_RANDOM */
            q.max_tokens = p.max_tokens;
            q.start_in_think = in_think;
            whale_err e2 = {0};
            int r2 = whale_submit(e, &q, &jobs[next].j, &e2);
            if (r2 == WHALE_E_BUSY) break;
            if (r2) {
                rc = r2;
                if (err) *err = e2;
                goto done;
            }
            next++;
        }
        if (first_open == next &&
            next < total) { /* the queue is full of nothing of ours: cannot happen */
            rc = err_set(err, WHALE_E_BUSY, "the engine takes no requests");
            goto done;
        }
        int moved = 0;
        for (int64_t x = first_open; x < next; x++) {
            job_slot *js = &jobs[x];
            if (js->done) continue;
            int d = 0;
            size_t k = whale_job_wait(js->j, js->seen, buf, sizeof buf / sizeof buf[0], 0, &d);
            js->seen += k;
            if ((rc = take_ids(m, out->mode, js, buf, k, err))) goto done;
            moved |= k > 0 || d;
            if (!d) continue;
            js->done = 1;
            whale_result res;
            whale_job_result(js->j, &res);
            out->s[x].finish = js->stopped ? "stop" : res.finish;
            whale_job_release(js->j);
            js->j = NULL;
            rc = finish_sample(m, &js->ids, &out->items[x / p.samples], out->mode, in_think,
                               &out->s[x], err);
            if (p.keep_ids) out->s[x].ids = js->ids, js->ids = (whale_ids){0};
            whale_ids_free(&js->ids);
            if (rc) goto done;
            finished++;
            if (progress) progress(ctx, finished, total);
        }
        while (first_open < next && jobs[first_open].done) first_open++;
        if (!moved && first_open < next) { /* block on the oldest until something happens */
            int d = 0;
            job_slot *js = &jobs[first_open];
            size_t k = whale_job_wait(js->j, js->seen, buf, sizeof buf / sizeof buf[0],
                                      RL_EVAL_POLL_MS, &d);
            js->seen += k;
            if ((rc = take_ids(m, out->mode, js, buf, k, err))) goto done;
        }
    }
    out->seconds = clock_now_s() - t0;
    metrics(out);
    rc = 0;
done:
    for (int64_t x = 0; jobs && x < total; x++) {
        whale_job_release(jobs[x].j);
        whale_ids_free(&jobs[x].ids);
    }
    whale_engine_free(e);
    for (int64_t i = 0; prompts && i < p.n; i++) whale_ids_free(&prompts[i]);
    free(prompts);
    free(jobs);
    return rc;
}
