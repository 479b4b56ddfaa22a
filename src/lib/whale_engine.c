/* whale_engine.c — libwhale: the engine (the scheduler behind whale.h), jobs, synchronous
 * generation. A whale_job is the scheduler's own request (the pointer is the same). */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/constraint.h"
#include "engine/prefix_cache.h"
#include "engine/scheduler.h"
#include "lib/whale_impl.h"

struct whale_engine {
    whale_model *w;
    sched *s;
    constraint_vocab *cv; /* the vocabulary's bytes, for JSON mode and tools; NULL: no tokenizer */
};

static sched_req *req_of(whale_job *j) { return (sched_req *)(void *)j; }

void whale_engine_params_default(whale_engine_params *p) {
    memset(p, 0, sizeof *p);
    p->cache = 1;
    p->cache_ram = (size_t)1 << 30;
    p->cache_disk = (size_t)8 << 30;
}

int whale_engine_new(whale_engine **out, whale_model *w, const whale_engine_params *p, whale_err *err) {
    whale_err own = {0};
    if (!err) err = &own; /* the status comes from the message's code */
    *out = NULL;
    if (!w->m) return err_set(err, WHALE_E_ARG, "%s was opened for its vocabulary only: no engine", w->path);
    whale_engine_params d;
    if (!p) whale_engine_params_default(&d), p = &d;
    whale_engine *e = calloc(1, sizeof *e);
    if (!e) return err_set(err, WHALE_E_NOMEM, "out of memory");
    e->w = w;
    char dir[4096];
    sched_opts so = {.n_parallel = p->n_parallel > 0 ? p->n_parallel : 1, .n_ctx = p->n_ctx, .max_queue = p->max_queue,
                     .max_queue_per_owner = p->max_queue_per_owner, .chunk = p->chunk,
                     .speculative = p->speculative == WHALE_SPEC_MTP      ? SCHED_SPEC_MTP
                                    : p->speculative == WHALE_SPEC_LOOKUP ? SCHED_SPEC_LOOKUP
                                    : p->speculative == WHALE_SPEC_DRAFT  ? SCHED_SPEC_MODEL
                                                                          : SCHED_SPEC_NONE,
                     .draft_max = p->draft_max};
    if (p->speculative < WHALE_SPEC_NONE || p->speculative > WHALE_SPEC_DRAFT) {
        free(e);
        return err_set(err, WHALE_E_ARG, "unknown speculative mode %d", p->speculative);
    }
    if (p->speculative == WHALE_SPEC_DRAFT) {
        if (!p->draft || !p->draft->m) {
            free(e);
            return err_set(err, WHALE_E_ARG, "speculation with a draft model needs an open draft model");
        }
        so.draft = p->draft->m;
    }
    if (p->cache) {
        so.cache_ram = p->cache_ram;
        so.cache_disk = p->cache_disk;
        so.cache_dir = !p->cache_disk ? NULL
                       : !p->cache_dir ? whale_home_path("kv-cache", dir, sizeof dir)
                       : *p->cache_dir ? p->cache_dir
                                       : NULL;
        so.cache_salt = w->identity;
    }
    const tokenizer *t = model_tokenizer(w->m);
    if (t && !(e->cv = constraint_vocab_new(t))) {
        free(e);
        return err_set(err, WHALE_E_NOMEM, "out of memory");
    }
    if (!(e->s = sched_new(w->m, &so, err))) {
        constraint_vocab_free(e->cv);
        free(e);
        return err->code ? err->code : WHALE_E_NOMEM;
    }
    *out = e;
    return 0;
}

void whale_engine_free(whale_engine *e) {
    if (!e) return;
    sched_free(e->s);
    constraint_vocab_free(e->cv);
    free(e);
}

int64_t whale_engine_n_ctx(const whale_engine *e) { return sched_n_ctx(e->s); }
const char *whale_engine_warning(const whale_engine *e) { return sched_warning(e->s); }

void whale_request_default(whale_request *r) {
    memset(r, 0, sizeof *r);
    r->sampling = sampler_default_params();
    r->reasoning_budget = -1;
}

static void constraint_drop(sched_constraint *c) {
    if (!c) return;
    if (c->free) c->free(c->ctx);
    free(c);
}

int whale_submit(whale_engine *e, const whale_request *q, whale_job **out, whale_err *err) {
    whale_err own = {0};
    if (!err) err = &own;
    *out = NULL;
    const whale_model *w = e->w;
    /* a bad id would fail the whole batch, other callers' jobs with it: refused here */
    int64_t V = model_n_vocab(w->m);
    for (size_t i = 0; i < q->n_prompt; i++)
        if (q->prompt[i] < 0 || q->prompt[i] >= V)
            return err_set(err, WHALE_E_ARG, "prompt token %zu is %d, outside the vocabulary (0..%lld)", i, (int)q->prompt[i],
                           (long long)V - 1);
    sched_params sp = {.prompt = q->prompt, .n_prompt = q->n_prompt, .sp = q->sampling, .max_tokens = q->max_tokens,
                       .think_budget = -1, .logprobs = q->logprobs, .top_logprobs = q->top_logprobs, .owner = q->owner};
    if (q->reasoning_budget >= 0 && w->think_end >= 0 && w->n_close) {
        sp.think_budget = q->reasoning_budget;
        sp.think_end = w->think_end;
        sp.close = w->close;
        sp.n_close = w->n_close;
    }
    if ((q->json_mode || q->tool_calls) && !e->cv)
        return err_set(err, WHALE_E_UNSUPPORTED, "%s has no tokenizer: JSON mode and tools need one", w->path);
    if (q->tool_calls && q->tool_force == 2 && !q->tool_name) return err_set(err, WHALE_E_ARG, "tool_force 2 needs a tool_name");
    if ((q->json_mode && !(sp.constraint = constraint_json(e->cv, q->start_in_think))) ||
        (!q->json_mode && q->tool_calls && !(sp.constraint = constraint_tools(e->cv, q->tool_force, q->tool_name))))
        return err_set(err, WHALE_E_NOMEM, "out of memory");
    sched_req *r = sched_submit(e->s, &sp, err);
    if (!r) {
        constraint_drop(sp.constraint); /* its state is still ours when refused */
        return err->code ? err->code : WHALE_E_NOMEM;
    }
    free(sp.constraint); /* the scheduler copied the struct and owns its state now */
    *out = (whale_job *)(void *)r;
    return 0;
}

size_t whale_job_wait(whale_job *j, size_t have, int32_t *out, size_t cap, int timeout_ms, int *done) {
    return sched_wait(req_of(j), have, out, cap, timeout_ms, done);
}

int whale_job_logprobs(whale_job *j, size_t i, float *lp, int32_t *ids, float *lps) {
    return sched_logprobs(req_of(j), i, lp, ids, lps);
}

void whale_job_cancel(whale_job *j) { sched_cancel(req_of(j)); }

void whale_job_result(whale_job *j, whale_result *o) {
    sched_result r;
    sched_result_get(req_of(j), &r);
    *o = (whale_result){r.finish, r.n_prompt, r.n_cached, r.n_gen, r.t_queue, r.t_first, r.drafted, r.accepted,
                        r.n_prompt_done};
}

void whale_job_release(whale_job *j) {
    if (j) sched_release(req_of(j));
}

int whale_generate(whale_engine *e, const whale_request *q, whale_token_cb on_token, void *ctx, whale_result *res,
                   whale_err *err) {
    whale_job *j;
    int rc = whale_submit(e, q, &j, err);
    if (rc) return rc;
    int32_t ids[64];
    size_t have = 0;
    int done = 0, stopped = 0;
    while (!done) {
        size_t k = whale_job_wait(j, have, ids, 64, 1000, &done);
        for (size_t i = 0; i < k && !stopped; i++)
            if (on_token && on_token(ctx, ids[i])) stopped = 1, whale_job_cancel(j);
        have += k;
    }
    whale_result r;
    whale_job_result(j, &r);
    whale_job_release(j);
    if (res) *res = r;
    if (!strcmp(r.finish, "error")) return err_set(err, WHALE_E_NOMEM, "generation failed (out of memory, or a bad token)");
    return 0;
}

void whale_engine_cancel_all(whale_engine *e) { sched_cancel_all(e->s); }

int whale_engine_purge_owner(whale_engine *e, int64_t owner, whale_err *err) {
    return sched_purge_owner(e->s, owner, err);
}

int whale_cache_purge_owner(const char *cache_dir, int64_t owner, whale_err *err) {
    char dir[4096];
    if (!cache_dir) cache_dir = whale_home_path("kv-cache", dir, sizeof dir);
    return pcache_dir_purge(cache_dir, owner, err);
}

void whale_engine_stats(whale_engine *e, whale_stats *o) {
    sched_stats s;
    sched_stats_get(e->s, &s);
    *o = (whale_stats){.active = s.active,
                       .waiting = s.waiting,
                       .n_parallel = s.n_parallel,
                       .tokens_generated = s.tokens_generated,
                       .prompt_tokens = s.prompt_tokens,
                       .cached_tokens = s.cached_tokens,
                       .steps = s.steps,
                       .kv_tokens = s.kv_tokens,
                       .kv_pages_used = s.kv_pages_used,
                       .kv_pages = s.kv_pages,
                       .kv_page_bytes = s.kv_page_bytes,
                       .cache_ram_blocks = s.pc_ram_blocks,
                       .cache_disk_blocks = s.pc_disk_blocks,
                       .cache_ram_bytes = s.pc_ram_bytes,
                       .cache_disk_bytes = s.pc_disk_bytes,
                       .cache_hits_ram = s.pc_hits_ram,
                       .cache_hits_disk = s.pc_hits_disk,
                       .drafted = s.drafted,
                       .accepted = s.accepted,
                       .spec_steps = s.spec_steps,
                       .drafter = s.drafter};
}
