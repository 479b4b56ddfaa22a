/* scheduler.c — continuous batching over sequence slots; see scheduler.h.
 *
 * Threads: the engine thread owns the slots and the model; consumers own their sched_req and
 * touch the shared part of it (tokens, state) under the scheduler's one mutex. A request is
 * freed when both sides are done with it: the engine has finished it (or never started it) and
 * the consumer has released it. After each forward pass the slots choose their tokens
 * (constraint, sampling, log probabilities) in parallel on the model context's thread pool,
 * without the mutex; only handing the tokens out and finishing requests take it, so a request
 * with costly settings neither blocks the consumers nor makes the others wait in turn.
 *
 * Speculation: before a step's batch is built, the drafter (engine/draft.h) guesses for every
 * speculating slot that is decoding, in one call; the slot's rows are its pending token and the
 * guesses, all asking for logits. The results are read row by row exactly as plain decoding
 * reads its one row (choose()), and reading stops at the first row whose chosen token differs
 * from the guess fed after it: every token emitted was chosen from logits computed over the
 * tokens plain greedy decoding would have had there. The cache rows of rejected guesses lie
 * beyond the slot's n_cached and are overwritten later. The drafter is told which rows now
 * stand (with their hidden states) after each step. */
#include "engine/scheduler.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/threadpool.h"
#include "engine/draft.h"
#include "engine/prefix_cache.h"
#include "kernels/attn.h"

enum { RQ_WAITING, RQ_ACTIVE, RQ_DONE };

/* A caller of sched_purge_owner waiting for the engine thread (on its stack). */
typedef struct sched_purge {
    int64_t owner;
    int done, rc;
    whale_err err;
    struct sched_purge *next;
} sched_purge;

struct sched_req {
    sched *s;
    int32_t *prompt;
    size_t n_prompt;
    sampler_params sp;
    int64_t max_tokens;
    int64_t think_budget;
    int32_t think_end, close[8];
    size_t n_close;
    sched_constraint *con;
    int n_top;      /* -1: no log probabilities */
    float *lp;      /* (cap_tokens) chosen token's log probability */
    float *top_lp;  /* (cap_tokens, n_top) */
    int32_t *top_id;
    /* shared, under s->mu */
    int state, cancelled, released;
    int32_t *tokens; /* generated ids */
    size_t n_tokens, cap_tokens;
    const char *finish;
    size_t n_cached;
    size_t n_prompt_done; /* prompt tokens in the slot after the last step (cached or computed) */
    uint64_t drafted, accepted;
    double t_submit, t_start, t_first;
    int64_t owner;
    int purged;      /* its owner was purged while it waited: it keeps nothing in the caches */
    sched_req *next; /* waiting queue */
};

typedef struct slot {
    sched_req *req;  /* NULL: free */
    int32_t *tokens; /* (n_ctx) what the slot's cache holds, in order */
    size_t n_cached; /* tokens of tokens[] whose cache rows are valid */
    size_t n_fed;    /* prompt + generated tokens fed so far for the current request */
    sampler *smp;
    int has_logits;
    int64_t n_gen;
    int think_closed;  /* the reasoning has ended (or there is no budget) */
    size_t n_forced;   /* tokens of the closing sequence already forced */
    size_t n_stored;   /* leading blocks of tokens[] known to be in the context cache */
    int want_store;    /* blocks computed since then should go to the context cache */
    int want_restore;  /* just admitted: copy the context cache's blocks beyond n_cached in */
    int64_t owner;     /* whose request it last took, and when (admission number; 0: never) */
    uint64_t admitted;
    int purged;        /* that owner was purged since: its rows are neither reused nor stored */
    int spec;          /* the request may speculate (no constraint) */
    /* waiting for slot wait_src (while it still holds its request number wait_adm) to compute
     * the first wait_until prompt tokens this request shares with it, to map them instead of
     * computing them too; -1: not waiting */
    int wait_src;
    uint64_t wait_adm;
    size_t wait_until;
    int n_draft;       /* this step: guesses fed after the pending token */
    int32_t draft[DRAFT_MAX];
    int64_t row0;      /* this step: the slot's first batch row (-1: none), at position pos0 */
    size_t pos0;
    /* this step's tokens, chosen without the lock (choose) and handed out under it (hand_out):
     * token j with its log probabilities, and the slot's n_fed when it was chosen (the rows
     * that stand if it is the last); why: the last one ends the request ("stop", "length") */
    int n_chosen;
    int32_t chosen[1 + DRAFT_MAX];
    size_t chosen_at[1 + DRAFT_MAX];
    const char *why;
    float c_lp[1 + DRAFT_MAX], c_top_lp[(1 + DRAFT_MAX) * SCHED_MAX_TOP];
    int32_t c_top_id[(1 + DRAFT_MAX) * SCHED_MAX_TOP];
    float *raw; /* (n_vocab) a row of logits kept for log probabilities; allocated on first use */
} slot;

struct sched {
    model *m;
    model_ctx *ctx;   /* the slots' KV cache, scratch and threads */
    kv_cache *kv;     /* borrowed from ctx */
    sched_opts o;
    slot *slots;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work, progress;
    int stop;
    sched_req *queue_head, *queue_tail;
    int n_waiting;
    uint64_t n_admitted;
    /* step buffers */
    int32_t *b_tok, *b_pos, *b_seq;
    int8_t *b_want;
    int *b_slot; /* slot of each logits row */
    float *logits;
    drafter dr;       /* speculative decoding (dr.ops NULL: none) */
    int max_draft;    /* guesses per slot per step (0 without a drafter) */
    draft_req *dreq;  /* (n_parallel) this step's requests for guesses */
    float *hid;       /* (rows, n_embd) the step's hidden states, when the drafter wants them */
    int *pick; /* (n_parallel) this step: first logits row of each slot that has some */
    int *pick_slot;
    sched_stats stats;
    sched_purge *purges; /* owners to forget, waiting for the engine thread (under mu) */
    pcache *pc;    /* context cache, or NULL */
    uint8_t *blk;  /* one block of cache rows, moving between the cache and a slot */
    uint64_t *ids; /* (n_ctx / PC_UNIT + 1) block ids of the tokens being stored or restored */
    char warning[WHALE_ERR_MAX + 64]; /* what sched_new had to do without, or "" */
    size_t blk_bytes;
};

static void req_free(sched_req *r) {
    if (r->con) {
        if (r->con->free) r->con->free(r->con->ctx);
        free(r->con);
    }
    free(r->prompt);
    free(r->tokens);
    free(r->lp);
    free(r->top_lp);
    free(r->top_id);
    free(r);
}

/* Under mu: the engine is done with r. */
static void finish(sched *s, sched_req *r, const char *why) {
    r->state = RQ_DONE;
    if (!r->finish) r->finish = why;
    if (r->released) req_free(r);
    pthread_cond_broadcast(&s->progress);
}

static size_t common_prefix(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    size_t k = 0;
    while (k < na && k < nb && a[k] == b[k]) k++;
    return k;
}

/* Under mu: the context cache's figures into the stats (read by other threads). */
static void pc_stats(sched *s) {
    pcache_stats p;
    pcache_stats_get(s->pc, &p);
    s->stats.pc_ram_blocks = p.ram_blocks, s->stats.pc_disk_blocks = p.disk_blocks;
    s->stats.pc_ram_bytes = p.ram_bytes, s->stats.pc_disk_bytes = p.disk_bytes;
    s->stats.pc_hits_ram = p.hits_ram, s->stats.pc_hits_disk = p.hits_disk;
}

/* Put the slot's computed blocks not yet in the context cache there. Engine thread. */
static void store(sched *s, int i) {
    slot *sl = &s->slots[i];
    sl->want_store = 0;
    if (!s->pc || sl->purged) return;
    size_t nb = sl->n_cached / PC_UNIT;
    if (nb <= sl->n_stored) return;
    pcache_chain(s->pc, sl->owner, sl->tokens, nb, s->ids);
    for (size_t b = sl->n_stored; b < nb; b++)
        if (!pcache_has(s->pc, s->ids, b) && !kv_cache_read(s->kv, i, (int64_t)(b * PC_UNIT), PC_UNIT, s->blk))
            pcache_put(s->pc, sl->owner, s->ids, sl->tokens, b, s->blk);
    sl->n_stored = nb;
}

/* Copy the context cache's blocks of prompt beyond the `keep` tokens slot i holds into it;
 * returns how many prompt tokens the slot now holds. Leaves the last prompt token to run. Only
 * the blocks of the slot's owner (its request's) are looked at. Engine thread, without the lock
 * (files may be read). */
static size_t restore(sched *s, int i, const int32_t *prompt, size_t n_prompt, size_t keep) {
    size_t want = (n_prompt - 1) / PC_UNIT;
    int64_t owner = s->slots[i].owner;
    if (want <= keep / PC_UNIT) return keep;
    pcache_chain(s->pc, owner, prompt, want, s->ids);
    size_t nb = pcache_match(s->pc, s->ids, want);
    for (size_t b = keep / PC_UNIT; b < nb; b++) {
        if (pcache_get(s->pc, owner, s->ids, prompt, b, s->blk) ||
            kv_cache_write(s->kv, i, (int64_t)(b * PC_UNIT), PC_UNIT, s->blk))
            break;
        keep = (b + 1) * PC_UNIT;
    }
    return keep;
}

/* Under mu: the waiting request to admit next, round robin between owners: the owner with the
 * fewest active sequences, then the one whose last admission is the oldest (as far as the slots
 * remember), then the oldest request. Anonymous requests (owner 0) count as one owner. *prev:
 * the request before it in the queue, or NULL. */
static sched_req *next_fair(sched *s, sched_req **prev) {
    sched_req *best = NULL, *p = NULL;
    int best_n = 0;
    uint64_t best_last = 0;
    *prev = NULL;
    for (sched_req *r = s->queue_head; r; p = r, r = r->next) {
        int n = 0;
        uint64_t last = 0;
        for (int i = 0; i < s->o.n_parallel; i++) {
            const slot *sl = &s->slots[i];
            n += sl->req && sl->req->owner == r->owner;
            if (sl->admitted && sl->owner == r->owner && sl->admitted > last) last = sl->admitted;
        }
        if (!best || n < best_n || (n == best_n && last < best_last)) best = r, best_n = n, best_last = last, *prev = p;
        if (!n && !last) break; /* nobody comes before it; the oldest such wins */
    }
    return best;
}

/* The prompt tokens a slot holding k of them reuses: whole cache units, short of the last
 * prompt token (it always runs again, for fresh logits). */
static size_t whole_units(size_t k, size_t n_prompt) {
    size_t keep = k / SCHED_CACHE_UNIT * SCHED_CACHE_UNIT;
    return keep < n_prompt ? keep : (n_prompt - 1) / SCHED_CACHE_UNIT * SCHED_CACHE_UNIT;
}

/* Under mu: another slot, running or idle, whose last request had r's owner and whose cache
 * holds more of r's prompt than *keep tokens (whole units): its pages can be mapped into slot
 * dst instead of computed (kv_cache_share). Returns it, with *keep raised to what it holds, or
 * -1. Another owner's rows are never shared. */
static int share_source(sched *s, int dst, const sched_req *r, size_t *keep) {
    int src = -1;
    for (int i = 0; i < s->o.n_parallel; i++) {
        const slot *f = &s->slots[i];
        if (i == dst || !f->admitted || f->owner != r->owner || f->purged) continue;
        size_t k = whole_units(common_prefix(f->tokens, f->n_cached, r->prompt, r->n_prompt), r->n_prompt);
        if (k > *keep) src = i, *keep = k;
    }
    return src;
}

/* Under mu: a running slot, not itself waiting, of r's owner that is still computing a prompt
 * beginning with more whole units of r's prompt than keep: slot dst can wait for them and map
 * them (a burst of requests with one system prompt computes it once). Returns it, with the
 * units' tokens in *until, or -1. */
static int pending_source(sched *s, int dst, const sched_req *r, size_t keep, size_t *until) {
    int src = -1;
    *until = keep;
    for (int i = 0; i < s->o.n_parallel; i++) {
        const slot *f = &s->slots[i];
        if (i == dst || !f->req || f->owner != r->owner || f->purged || f->wait_src >= 0 ||
            f->n_fed >= f->req->n_prompt)
            continue;
        size_t k = whole_units(common_prefix(f->tokens, f->req->n_prompt, r->prompt, r->n_prompt), r->n_prompt);
        if (k > *until && k > f->n_cached) src = i, *until = k;
    }
    return src;
}

/* Engine thread: map what slot i waits for once its source has computed it, or stop waiting
 * when the source went on to another request. Returns 1 while the slot still waits. */
static int resolve_wait(sched *s, int i) {
    slot *sl = &s->slots[i], *f = &s->slots[sl->wait_src];
    if (sl->n_cached >= sl->wait_until) { /* the context cache had it */
        sl->wait_src = -1;
        return 0;
    }
    if (f->admitted == sl->wait_adm && f->n_cached < sl->wait_until && f->req) return 1;
    size_t had = sl->n_cached;
    if (f->admitted == sl->wait_adm && f->n_cached >= sl->wait_until &&
        !kv_cache_share(s->kv, i, sl->wait_src, (int64_t)sl->wait_until)) {
        if (s->dr.ops) s->dr.ops->rows(s->dr.self, i, (int64_t)had, (int64_t)(sl->wait_until - had), NULL);
        pthread_mutex_lock(&s->mu);
        s->stats.cached_tokens += sl->wait_until - had;
        sl->req->n_cached = sl->wait_until;
        sl->n_cached = sl->n_fed = sl->wait_until;
        pthread_mutex_unlock(&s->mu);
    }
    sl->wait_src = -1; /* shared, or the source is gone: compute the rest */
    return 0;
}

/* Under mu: move waiting requests into free slots, each to the slot sharing the longest prefix.
 * Only a slot whose last request had the same owner shares anything: another owner's prompt is
 * never reused, so the cache hits a request reports say nothing about what others sent. */
static void admit(sched *s) {
    while (s->queue_head) {
        int best = -1, any_free = 0;
        size_t best_k = 0;
        for (int i = 0; i < s->o.n_parallel && !any_free; i++) any_free = !s->slots[i].req;
        if (!any_free) return; /* every step while all slots run: no fairness scan for nothing */
        sched_req *prev, *r = next_fair(s, &prev);
        for (int i = 0; i < s->o.n_parallel; i++) {
            const slot *f = &s->slots[i];
            if (f->req) continue;
            int mine = f->owner == r->owner && !f->purged;
            size_t k = mine ? common_prefix(f->tokens, f->n_cached, r->prompt, r->n_prompt) : 0;
            if (best < 0 || k > best_k) best = i, best_k = k;
        }
        if (prev) prev->next = r->next;
        else s->queue_head = r->next;
        if (s->queue_tail == r) s->queue_tail = prev;
        r->next = NULL;
        s->n_waiting--;
        slot *sl = &s->slots[best];
        if (sl->want_store) store(s, best); /* what it computed last, before it is overwritten */
        /* reuse whole cache units; the last prompt token always runs again for fresh logits */
        size_t keep = whole_units(best_k, r->n_prompt), own = keep;
        kv_cache_keep(s->kv, best, (int64_t)keep); /* the slot's pages past that go back to the pool */
        int src = share_source(s, best, r, &keep);
        if (src >= 0 && kv_cache_share(s->kv, best, src, (int64_t)keep)) keep = own;
        sl->wait_src = pending_source(s, best, r, keep, &sl->wait_until);
        sl->wait_adm = sl->wait_src >= 0 ? s->slots[sl->wait_src].admitted : 0;
        memcpy(sl->tokens, r->prompt, r->n_prompt * sizeof *r->prompt);
        sl->n_stored = 0;
        sl->want_restore = s->pc != NULL; /* after the lock is let go: it may read files */
        sl->n_cached = keep;
        sl->n_fed = keep;
        sl->has_logits = 0;
        sl->n_gen = 0;
        sl->think_closed = r->think_budget < 0 || !r->n_close;
        sl->n_forced = 0;
        sampler_free(sl->smp);
        sl->smp = sampler_init(&r->sp, model_n_vocab(s->m));
        sl->spec = s->dr.ops && sl->smp && !r->con;
        if (s->dr.ops) {
            s->dr.ops->truncate(s->dr.self, best, (int64_t)own);
            if (keep > own) /* shared rows come without hidden states */
                s->dr.ops->rows(s->dr.self, best, (int64_t)own, (int64_t)(keep - own), NULL);
        }
        sl->req = r;
        sl->owner = r->owner;
        sl->purged = r->purged;
        sl->admitted = ++s->n_admitted;
        r->state = RQ_ACTIVE;
        r->n_cached = keep;
        r->t_start = clock_now_s();
        s->stats.prompt_tokens += r->n_prompt;
        s->stats.cached_tokens += keep;
        if (!sl->smp) {
            r->finish = "error";
            sl->req = NULL;
            finish(s, r, "error");
        }
    }
}

static int grow(void **p, size_t n, size_t each) {
    void *q = realloc(*p, n * each);
    if (!q) return -1;
    *p = q;
    return 0;
}

/* Under mu: append the slot's chosen token j (and its log probabilities) to the request. */
static void push_token(sched *s, sched_req *r, const slot *sl, int j) {
    if (r->n_tokens == r->cap_tokens) {
        size_t cap = r->cap_tokens ? r->cap_tokens * 2 : 64, k = r->n_top > 0 ? (size_t)r->n_top : 1;
        if (grow((void **)&r->tokens, cap, sizeof *r->tokens)) return; /* the consumer sees fewer tokens */
        if (r->n_top >= 0 && (grow((void **)&r->lp, cap, sizeof *r->lp) || grow((void **)&r->top_lp, cap * k, sizeof(float)) ||
                              grow((void **)&r->top_id, cap * k, sizeof(int32_t))))
            return;
        r->cap_tokens = cap;
    }
    if (r->n_top >= 0) {
        size_t at = r->n_tokens, k = (size_t)r->n_top;
        r->lp[at] = sl->c_lp[j];
        memcpy(r->top_id + at * k, sl->c_top_id + (size_t)j * SCHED_MAX_TOP, k * sizeof *r->top_id);
        memcpy(r->top_lp + at * k, sl->c_top_lp + (size_t)j * SCHED_MAX_TOP, k * sizeof *r->top_lp);
    }
    if (!r->n_tokens) r->t_first = clock_now_s();
    r->tokens[r->n_tokens++] = sl->chosen[j];
    s->stats.tokens_generated++;
}

/* Engine thread, without the lock (slots are the engine's; the request's settings and
 * constraint are read only here): choose the token that follows the slot's latest row from
 * that row's logits (which sampling modifies) as the slot's chosen token j, with its log
 * probabilities (the model's distribution: log-softmax of the row before any masking) when
 * the request wants them. Every emitted token goes through here, speculated or not. Sets
 * sl->why when the token ends the request. Returns the token. */
static int32_t choose(sched *s, slot *sl, float *row, int j) {
    sched_req *r = sl->req;
    const tokenizer *tok = model_tokenizer(s->m);
    int64_t V = model_n_vocab(s->m);
    float lse = 0;
    int have_raw = 0;
    if (r->n_top >= 0) {
        float mx = -INFINITY;
        for (int64_t i = 0; i < V; i++) mx = row[i] > mx ? row[i] : mx;
        double sum = 0;
        for (int64_t i = 0; i < V; i++) sum += exp((double)(row[i] - mx));
        lse = mx + (float)log(sum);
        int32_t *ids = sl->c_top_id + (size_t)j * SCHED_MAX_TOP;
        float *lps = sl->c_top_lp + (size_t)j * SCHED_MAX_TOP;
        int n = sampler_top(row, V, r->n_top, ids);
        for (int k = 0; k < n; k++) lps[k] = row[ids[k]] - lse;
        /* once per slot, not per token: a copy of the row for the chosen token's own value */
        if (!sl->raw) sl->raw = malloc((size_t)V * sizeof *sl->raw);
        if (sl->raw) memcpy(sl->raw, row, (size_t)V * sizeof *sl->raw), have_raw = 1;
    }
    if (r->con) r->con->mask(r->con->ctx, row, V, r->sp.temperature <= 0 || r->sp.top_k == 1);
    /* a guess follows this row: keep it with the probability the sampler gives it */
    int32_t t = j < sl->n_draft ? sampler_sample_draft(sl->smp, row, sl->tokens, sl->n_fed, sl->draft[j])
                                : sampler_sample(sl->smp, row, sl->tokens, sl->n_fed);
    if (!sl->think_closed) { /* reasoning budget: close the thinking when it is spent */
        if (sl->n_forced || (t != r->think_end && sl->n_gen >= r->think_budget)) t = r->close[sl->n_forced++];
        /* the model's own </think> ends it; a forced close runs to its end ("\n\n" after </think>) */
        if (sl->n_forced ? sl->n_forced == r->n_close : t == r->think_end) sl->think_closed = 1;
    }
    if (r->con) r->con->accept(r->con->ctx, t);
    if (r->n_top >= 0) sl->c_lp[j] = have_raw ? sl->raw[t] - lse : NAN; /* NaN: no memory for the copy */
    sl->chosen[j] = t;
    sl->chosen_at[j] = sl->n_fed;
    sl->n_chosen = j + 1;
    sl->tokens[sl->n_fed] = t;
    if (!sl->n_gen) sl->want_store = 1; /* the prompt is in: keep it for the next request */
    sl->n_gen++;
    sl->why = NULL;
    if (tokenizer_is_end(tok, t)) sl->why = "stop";
    else if (r->max_tokens > 0 && sl->n_gen >= r->max_tokens) sl->why = "length";
    else if ((int64_t)sl->n_fed + 1 >= s->o.n_ctx) sl->why = "length";
    return t;
}

/* Engine thread, without the lock: one slot's rows of this step, from the first (the token
 * after the pending one) on while each confirms the guess fed after it. */
static void choose_rows(sched *s, int i, int64_t k) {
    slot *sl = &s->slots[i];
    int64_t V = model_n_vocab(s->m);
    int nd = sl->n_draft;
    sl->n_chosen = 0;
    for (int j = 0;; j++) { /* row j: the token after the pending one and j confirmed guesses */
        int32_t t = choose(s, sl, s->logits + (k + j) * V, j);
        if (sl->why || j == nd || t != sl->draft[j]) break;
        sl->n_fed++; /* guess j is the token chosen: its row stands */
    }
}

static void choose_task(void *ctx, int64_t task, int thread) {
    (void)thread;
    sched *s = ctx;
    choose_rows(s, s->pick_slot[task], s->pick[task]);
}

/* Under mu: hand the slot's chosen tokens to its request, and end the request when one of them
 * is its last or it was cancelled (after the first, as when tokens came one at a time). */
static void hand_out(sched *s, slot *sl) {
    sched_req *r = sl->req;
    int nd = sl->n_draft;
    if (nd) r->drafted += (uint64_t)nd, s->stats.drafted += (uint64_t)nd, s->stats.spec_steps++;
    for (int j = 0; j < sl->n_chosen; j++) {
        sl->n_cached = sl->chosen_at[j];
        push_token(s, r, sl, j);
        if (j) r->accepted++, s->stats.accepted++; /* row j came because guess j - 1 stood */
        const char *why = j + 1 == sl->n_chosen ? sl->why : NULL;
        if (why || r->cancelled) {
            sl->req = NULL;
            sl->want_store = 1;
            finish(s, r, why ? why : "cancelled");
            return;
        }
    }
}

/* Ask the drafter for guesses for every speculating slot that decodes this step (engine thread,
 * no lock). A slot gets at most as many as can still be emitted: the request's max_tokens, and
 * the context (plain decoding feeds positions up to n_ctx - 2: the token chosen at n_ctx - 1
 * ends the request), so no guess lies past where plain decoding would stop anyway. */
static void draft(sched *s) {
    int n_req = 0;
    for (int i = 0; i < s->o.n_parallel; i++) {
        slot *sl = &s->slots[i];
        sl->n_draft = 0;
        sched_req *r = sl->req;
        /* not while a reasoning budget may force tokens: a forced token is not the model's choice */
        if (!r || !sl->spec || !sl->think_closed || sl->n_fed < r->n_prompt) continue;
        int64_t max = s->max_draft, room = s->o.n_ctx - 2 - (int64_t)sl->n_fed;
        if (r->max_tokens > 0 && r->max_tokens - sl->n_gen - 1 < max) max = r->max_tokens - sl->n_gen - 1;
        if (room < max) max = room;
        if (max < 1) continue;
        draft_req *q = &s->dreq[n_req++];
        q->seq = i, q->tokens = sl->tokens, q->n = (int64_t)sl->n_fed, q->max = (int)max, q->n_out = 0;
    }
    if (!n_req) return;
    whale_err err = {0};
    if (s->dr.ops->propose(s->dr.self, s->dreq, n_req, &err)) return; /* no guesses: plain steps */
    for (int k = 0; k < n_req; k++) {
        slot *sl = &s->slots[s->dreq[k].seq];
        int n = s->dreq[k].n_out < s->dreq[k].max ? s->dreq[k].n_out : s->dreq[k].max;
        sl->n_draft = n > 0 ? n : 0;
        memcpy(sl->draft, s->dreq[k].out, (size_t)sl->n_draft * sizeof *sl->draft);
    }
}

/* One step: build the batch from the active slots, run it, sample. Returns 0 when idle. */
static int step(sched *s) {
    pthread_mutex_lock(&s->mu);
    admit(s);
    for (int i = 0; i < s->o.n_parallel; i++) { /* cancellations */
        slot *sl = &s->slots[i];
        if (sl->req && sl->req->cancelled) {
            sched_req *r = sl->req;
            sl->req = NULL;
            sl->n_cached = sl->n_fed < sl->n_cached ? sl->n_fed : sl->n_cached;
            sl->want_store = 1;
            finish(s, r, "cancelled");
        }
    }
    int active = 0;
    for (int i = 0; i < s->o.n_parallel; i++) active += s->slots[i].req != NULL;
    s->stats.active = active;
    s->stats.waiting = s->n_waiting;
    pthread_mutex_unlock(&s->mu);
    if (!active) return 0;
    for (int i = 0; i < s->o.n_parallel; i++) { /* the newly admitted: cached prefixes copied in */
        slot *sl = &s->slots[i];
        if (!sl->want_restore || !sl->req) continue;
        sl->want_restore = 0;
        size_t keep = restore(s, i, sl->req->prompt, sl->req->n_prompt, sl->n_cached);
        if (s->dr.ops && keep > sl->n_cached) /* rows without hidden states */
            s->dr.ops->rows(s->dr.self, i, (int64_t)sl->n_cached, (int64_t)(keep - sl->n_cached), NULL);
        pthread_mutex_lock(&s->mu);
        s->stats.cached_tokens += keep - sl->n_cached;
        sl->req->n_cached = keep;
        sl->n_cached = sl->n_fed = keep;
        pc_stats(s);
        pthread_mutex_unlock(&s->mu);
    }
    int waiting = 0;
    for (int i = 0; i < s->o.n_parallel; i++) /* slots waiting for another's prompt units */
        if (s->slots[i].req && s->slots[i].wait_src >= 0) waiting += resolve_wait(s, i);
    if (s->dr.ops) draft(s);

    int64_t n = 0, n_logits = 0, budget = s->o.chunk;
    for (int i = 0; i < s->o.n_parallel; i++) {
        slot *sl = &s->slots[i];
        sched_req *r = sl->req;
        sl->row0 = -1;
        if (!r || (waiting && sl->wait_src >= 0)) continue;
        if (sl->n_fed < r->n_prompt) { /* prompt chunk */
            int64_t k = (int64_t)(r->n_prompt - sl->n_fed);
            if (k > budget) k = budget;
            if (k <= 0) continue;
            budget -= k;
            sl->row0 = n, sl->pos0 = sl->n_fed;
            for (int64_t j = 0; j < k; j++, n++) {
                s->b_tok[n] = sl->tokens[sl->n_fed + j];
                s->b_pos[n] = (int32_t)(sl->n_fed + j);
                s->b_seq[n] = i;
                s->b_want[n] = sl->n_fed + j + 1 == r->n_prompt;
                if (s->b_want[n]) s->b_slot[n_logits++] = i;
            }
            sl->n_fed += (size_t)k;
        } else { /* decode: the token sampled last step, then the guesses for the next ones */
            sl->row0 = n, sl->pos0 = sl->n_fed;
            for (int j = 0; j <= sl->n_draft; j++, n++) {
                s->b_tok[n] = j ? sl->draft[j - 1] : sl->tokens[sl->n_fed];
                s->b_pos[n] = (int32_t)sl->n_fed + j;
                s->b_seq[n] = i;
                s->b_want[n] = 1;
                s->b_slot[n_logits++] = i;
            }
            sl->n_fed++; /* the guesses' rows count once they are confirmed */
        }
    }
    whale_err err = {0};
    model_batch b = {n, s->b_tok, s->b_pos, s->b_seq, s->b_want};
    int rc = n ? model_forward(s->m, s->ctx, &b, s->logits, s->hid, &err) : 0;
    /* Each slot's choice (constraint, sampling, log probabilities) in parallel, without the lock:
     * one request's costly settings must not hold up the others' tokens or their consumers. */
    int n_pick = 0;
    for (int64_t k = 0; !rc && k < n_logits; k += 1 + s->slots[s->b_slot[k]].n_draft)
        s->pick_slot[n_pick] = s->b_slot[k], s->pick[n_pick++] = (int)k;
    if (n_pick > 1) tp_run(model_ctx_pool(s->ctx), n_pick, choose_task, s);
    else if (n_pick) choose_rows(s, s->pick_slot[0], s->pick[0]);
    pthread_mutex_lock(&s->mu);
    s->stats.steps++;
    if (rc) { /* every active request fails; the slots' caches are no longer trusted */
        for (int i = 0; i < s->o.n_parallel; i++) {
            slot *sl = &s->slots[i];
            if (!sl->req) continue;
            sched_req *r = sl->req;
            sl->req = NULL;
            sl->n_cached = 0;
            kv_cache_keep(s->kv, i, 0);
            finish(s, r, "error");
        }
    }
    kv_cache_pages(s->kv, &s->stats.kv_pages_used, &s->stats.kv_pages, &s->stats.kv_page_bytes);
    for (int k = 0; !rc && k < n_pick; k++) hand_out(s, &s->slots[s->pick_slot[k]]);
    /* slots that only fed a prompt chunk this step keep their rows */
    for (int i = 0; i < s->o.n_parallel; i++)
        if (s->slots[i].req) {
            slot *sl = &s->slots[i];
            sl->n_cached = sl->n_fed;
            sl->req->n_prompt_done = sl->n_fed < sl->req->n_prompt ? sl->n_fed : sl->req->n_prompt;
        }
    pthread_cond_broadcast(&s->progress);
    pthread_mutex_unlock(&s->mu);
    /* the drafter learns which rows stand; the slots are the engine thread's alone (admit, which
     * also touches them, runs on this thread too) */
    for (int i = 0; s->dr.ops && i < s->o.n_parallel; i++) {
        slot *sl = &s->slots[i];
        if (sl->row0 < 0) continue;
        if (sl->n_cached < sl->pos0) s->dr.ops->truncate(s->dr.self, i, (int64_t)sl->n_cached);
        else
            s->dr.ops->rows(s->dr.self, i, (int64_t)sl->pos0, (int64_t)(sl->n_cached - sl->pos0),
                            s->hid ? s->hid + sl->row0 * model_hparams_get(s->m)->n_embd : NULL);
    }
    /* keep new blocks in the context cache */
    int stored = 0;
    for (int i = 0; i < s->o.n_parallel; i++)
        if (s->slots[i].want_store) store(s, i), stored = 1;
    if (stored && s->pc) {
        pthread_mutex_lock(&s->mu);
        pc_stats(s);
        pthread_mutex_unlock(&s->mu);
    }
    return 1;
}

/* Forget the owners of the purge requests in list, then wake their callers. Engine thread,
 * between steps: the slots and the context cache are its own. A slot the owner holds or held
 * keeps no reusable rows, and its requests running or waiting end as they would, storing
 * nothing. */
static void purge(sched *s, sched_purge *list) {
    for (sched_purge *pg = list; pg; pg = pg->next) {
        pthread_mutex_lock(&s->mu);
        for (sched_req *q = s->queue_head; q; q = q->next) q->purged |= q->owner == pg->owner;
        for (int i = 0; i < s->o.n_parallel; i++) {
            slot *sl = &s->slots[i];
            if (!sl->admitted || sl->owner != pg->owner) continue;
            sl->purged = 1;
            if (!sl->req) {
                sl->n_cached = sl->n_fed = 0;
                kv_cache_keep(s->kv, i, 0);
            }
        }
        pthread_mutex_unlock(&s->mu);
        whale_err err = {0};
        int rc = s->pc ? pcache_purge(s->pc, pg->owner, &err) : 0;
        pthread_mutex_lock(&s->mu);
        if (s->pc) pc_stats(s);
        pg->rc = rc, pg->err = err;
        pthread_mutex_unlock(&s->mu);
    }
    pthread_mutex_lock(&s->mu);
    for (sched_purge *pg = list; pg; pg = pg->next) pg->done = 1; /* pg may go once done is seen */
    pthread_cond_broadcast(&s->progress);
    pthread_mutex_unlock(&s->mu);
}

static void *engine(void *p) {
    sched *s = p;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int stop = s->stop;
        sched_purge *pg = s->purges; /* taken with stop: none is left behind when it stops */
        s->purges = NULL;
        pthread_mutex_unlock(&s->mu);
        if (pg) purge(s, pg);
        if (stop) break;
        if (step(s)) continue;
        pthread_mutex_lock(&s->mu);
        while (!s->stop && !s->queue_head && !s->purges) {
            int pending = 0;
            for (int i = 0; i < s->o.n_parallel; i++) pending |= s->slots[i].req != NULL;
            if (pending) break;
            pthread_cond_wait(&s->work, &s->mu);
        }
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

sched *sched_new(model *m, const sched_opts *o, whale_err *err) {
    sched *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    s->m = m;
    s->o = *o;
    const model_hparams *hp = model_hparams_get(m);
    if (s->o.n_parallel <= 0) s->o.n_parallel = 4;
    if (s->o.n_parallel > 256) s->o.n_parallel = 256;
    if (s->o.n_ctx <= 0) s->o.n_ctx = hp->n_ctx_train > 0 && hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
    if (hp->n_ctx_train > 0 && s->o.n_ctx > hp->n_ctx_train) s->o.n_ctx = hp->n_ctx_train;
    if (s->o.max_queue <= 0) s->o.max_queue = 64;
    if (s->o.chunk <= 0) s->o.chunk = 256;
    int spec = s->o.speculative;
    if (spec < SCHED_SPEC_NONE || spec > SCHED_SPEC_MODEL) {
        err_set(err, WHALE_E_ARG, "unknown speculative mode %d", spec);
        goto fail;
    }
    if (spec == SCHED_SPEC_MTP && !model_has_mtp(m)) {
        err_set(err, WHALE_E_UNSUPPORTED, "this model has no MTP module (DeepSeek-V3/R1 checkpoints carry one)");
        goto fail;
    }
    if (spec == SCHED_SPEC_MODEL && !s->o.draft) {
        err_set(err, WHALE_E_ARG, "speculation with a draft model needs the draft model");
        goto fail;
    }
    if (s->o.draft_max < 0 || s->o.draft_max > DRAFT_MAX) {
        err_set(err, WHALE_E_ARG, "drafts per step must be 1..%d, not %d", DRAFT_MAX, s->o.draft_max);
        goto fail;
    }
    s->max_draft = !spec ? 0
                   : s->o.draft_max ? s->o.draft_max
                   : spec == SCHED_SPEC_MTP ? 1
                   : spec == SCHED_SPEC_LOOKUP ? SCHED_DRAFT_MAX_LOOKUP
                                               : SCHED_DRAFT_MAX_MODEL;
    /* rows per step: the prompt chunks, and each slot's token with its guesses */
    int64_t P = s->o.n_parallel, rows = s->o.chunk + P * (1 + s->max_draft), n_out = P * (1 + s->max_draft);
    s->ctx = model_ctx_new(m, s->o.n_ctx, s->o.n_parallel);
    s->kv = s->ctx ? model_ctx_kv(s->ctx) : NULL;
    if (s->ctx && spec) {
        if (spec == SCHED_SPEC_MTP && draft_mtp_new(&s->dr, m, s->ctx, s->o.n_parallel, s->o.n_ctx, err)) goto fail;
        if (spec == SCHED_SPEC_LOOKUP) draft_lookup_new(&s->dr);
        if (spec == SCHED_SPEC_MODEL &&
            draft_model_new(&s->dr, s->o.draft, m, s->o.n_parallel, s->o.n_ctx,
                            s->o.draft_p_min > 0 ? s->o.draft_p_min : SCHED_DRAFT_P_MIN, err))
            goto fail;
        s->stats.drafter = s->dr.ops->name;
        s->dreq = malloc((size_t)P * sizeof *s->dreq);
        if (!s->dreq) goto oom;
        if (s->dr.ops->wants_hidden && !(s->hid = malloc((size_t)rows * (size_t)hp->n_embd * sizeof *s->hid))) goto oom;
    }
    s->slots = calloc((size_t)P, sizeof *s->slots);
    s->b_tok = malloc((size_t)rows * sizeof *s->b_tok);
    s->b_pos = malloc((size_t)rows * sizeof *s->b_pos);
    s->b_seq = malloc((size_t)rows * sizeof *s->b_seq);
    s->b_want = malloc((size_t)rows);
    s->b_slot = malloc((size_t)n_out * sizeof *s->b_slot);
    s->logits = malloc((size_t)n_out * (size_t)model_n_vocab(m) * sizeof *s->logits);
    s->pick = malloc((size_t)P * sizeof *s->pick);
    s->pick_slot = malloc((size_t)P * sizeof *s->pick_slot);
    if (!s->pick || !s->pick_slot || !s->kv || !s->slots || !s->b_tok || !s->b_pos || !s->b_seq || !s->b_want || !s->b_slot || !s->logits) goto oom;
    for (int64_t i = 0; i < P; i++) {
        s->slots[i].wait_src = -1;
        if (!(s->slots[i].tokens = malloc((size_t)s->o.n_ctx * sizeof(int32_t)))) goto oom;
    }
    if (s->o.cache_ram || s->o.cache_dir) {
        s->blk_bytes = kv_cache_pos_bytes(s->kv) * PC_UNIT;
        if (!(s->blk = malloc(s->blk_bytes)) || !(s->ids = malloc((size_t)(s->o.n_ctx / PC_UNIT + 1) * sizeof *s->ids)))
            goto oom;
        /* the salt: the model's file and how its rows are laid out (F16 and BF16 rows have one
         * size, so BF16 and Q8 add their type; F32 and F16 keep the salt of the caches made before) */
        uint64_t lay[3] = {s->blk_bytes, (uint64_t)model_n_vocab(m), (uint64_t)kv_cache_type(s->kv)};
        size_t lay_n = (kv_cache_type(s->kv) >= OP_KV_BF16 ? 3 : 2) * sizeof lay[0];
        pcache_opts po = {s->blk_bytes, pcache_hash(s->o.cache_salt, lay, lay_n), s->o.cache_ram, s->o.cache_dir,
                          s->o.cache_disk};
        whale_err perr = {0};
        if (!(s->pc = pcache_new(&po, &perr)) && po.dir) { /* no disk tier: memory only, and say so */
            snprintf(s->warning, sizeof s->warning, "%s; the context cache keeps to memory", perr.msg);
            po.dir = NULL;
            s->pc = pcache_new(&po, &perr);
        }
        if (!s->pc) {
            err_set(err, perr.code ? perr.code : WHALE_E_NOMEM, "%s", perr.msg);
            goto fail;
        }
        pc_stats(s);
    }
    s->stats.n_parallel = (int)P;
    kv_cache_pages(s->kv, &s->stats.kv_pages_used, &s->stats.kv_pages, &s->stats.kv_page_bytes);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->progress, NULL);
    if (pthread_create(&s->thread, NULL, engine, s)) {
        err_set(err, WHALE_E_NOMEM, "cannot start the engine thread");
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->work);
        pthread_cond_destroy(&s->progress);
        s->o.n_parallel = (int)P;
        goto fail;
    }
    return s;
oom:
    err_set(err, WHALE_E_NOMEM, "not enough memory for %d sequences of %lld tokens (lower --parallel or --ctx)",
            o->n_parallel > 0 ? o->n_parallel : 4, (long long)(s ? s->o.n_ctx : o->n_ctx));
fail:
    if (s) {
        for (int i = 0; s->slots && i < s->o.n_parallel; i++) free(s->slots[i].tokens);
        free(s->slots);
        drafter_free(&s->dr);
        free(s->dreq), free(s->hid);
        model_ctx_free(s->ctx);
        free(s->b_tok), free(s->b_pos), free(s->b_seq), free(s->b_want), free(s->b_slot), free(s->logits);
        free(s->pick), free(s->pick_slot);
        pcache_free(s->pc);
        free(s->blk);
        free(s->ids);
        free(s);
    }
    return NULL;
}

void sched_free(sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_mutex_lock(&s->mu);
    while (s->queue_head) {
        sched_req *r = s->queue_head;
        s->queue_head = r->next;
        finish(s, r, "cancelled");
    }
    for (int i = 0; i < s->o.n_parallel; i++) {
        if (s->slots[i].req) finish(s, s->slots[i].req, "cancelled");
        sampler_free(s->slots[i].smp);
        free(s->slots[i].tokens);
        free(s->slots[i].raw);
    }
    pthread_mutex_unlock(&s->mu);
    /* Consumers still holding requests must release them before the scheduler goes: the
     * server drains its connections first. */
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->progress);
    drafter_free(&s->dr);
    free(s->dreq), free(s->hid);
    model_ctx_free(s->ctx);
    free(s->slots);
    free(s->b_tok), free(s->b_pos), free(s->b_seq), free(s->b_want), free(s->b_slot), free(s->logits);
    free(s->pick), free(s->pick_slot);
    pcache_free(s->pc);
    free(s->blk);
    free(s->ids);
    free(s);
}

int64_t sched_n_ctx(const sched *s) { return s->o.n_ctx; }
const char *sched_warning(const sched *s) { return s->warning[0] ? s->warning : NULL; }

sched_req *sched_submit(sched *s, const sched_params *p, whale_err *err) {
    if (!p->n_prompt) {
        err_set(err, WHALE_E_ARG, "empty prompt");
        return NULL;
    }
    if ((int64_t)p->n_prompt >= s->o.n_ctx) {
        err_set(err, WHALE_E_ARG, "the prompt is %zu tokens; this server's context holds %lld", p->n_prompt,
                (long long)s->o.n_ctx);
        return NULL;
    }
    sched_req *r = calloc(1, sizeof *r);
    if (r) r->prompt = malloc(p->n_prompt * sizeof *r->prompt);
    if (!r || !r->prompt) {
        if (r) free(r);
        err_set(err, WHALE_E_NOMEM, "out of memory");
        return NULL;
    }
    memcpy(r->prompt, p->prompt, p->n_prompt * sizeof *r->prompt);
    r->n_prompt = p->n_prompt;
    r->sp = p->sp;
    r->max_tokens = p->max_tokens;
    r->think_budget = p->think_budget;
    r->owner = p->owner;
    r->think_end = p->think_end;
    r->n_close = p->n_close < 8 ? p->n_close : 0;
    if (r->n_close) memcpy(r->close, p->close, r->n_close * sizeof *r->close);
    r->s = s;
    r->t_submit = clock_now_s();
    r->n_top = !p->logprobs ? -1 : p->top_logprobs < 0 ? 0 : p->top_logprobs > SCHED_MAX_TOP ? SCHED_MAX_TOP : p->top_logprobs;
    if (p->constraint) { /* taken over below, or given back with the request on refusal */
        r->con = malloc(sizeof *r->con);
        if (!r->con) {
            free(r->prompt);
            free(r);
            err_set(err, WHALE_E_NOMEM, "out of memory");
            return NULL;
        }
        *r->con = *p->constraint;
    }
    pthread_mutex_lock(&s->mu);
    int mine = 0;
    if (p->owner && s->o.max_queue_per_owner > 0)
        for (sched_req *q = s->queue_head; q; q = q->next) mine += q->owner == p->owner;
    int full = s->stop || s->n_waiting >= s->o.max_queue; /* read under the lock: the engine changes it */
    if (full || (s->o.max_queue_per_owner > 0 && mine >= s->o.max_queue_per_owner)) {
        pthread_mutex_unlock(&s->mu);
        free(r->con); /* the caller still owns the constraint's state */
        r->con = NULL;
        req_free(r);
        if (full)
            err_set(err, WHALE_E_BUSY, "the server is busy (%d requests waiting)", s->o.max_queue);
        else
            err_set(err, WHALE_E_BUSY, "you have %d requests waiting already: wait for them to start", mine);
        return NULL;
    }
    if (s->queue_tail) s->queue_tail->next = r;
    else s->queue_head = r;
    s->queue_tail = r;
    s->n_waiting++;
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
    return r;
}

int sched_purge_owner(sched *s, int64_t owner, whale_err *err) {
    sched_purge pg = {.owner = owner};
    pthread_mutex_lock(&s->mu);
    if (s->stop) {
        pthread_mutex_unlock(&s->mu);
        return err_set(err, WHALE_E_ARG, "the engine is stopping");
    }
    pg.next = s->purges;
    s->purges = &pg;
    pthread_cond_broadcast(&s->work);
    while (!pg.done) pthread_cond_wait(&s->progress, &s->mu);
    pthread_mutex_unlock(&s->mu);
    if (pg.rc && err) *err = pg.err;
    return pg.rc;
}

size_t sched_wait(sched_req *r, size_t have, int32_t *out, size_t cap, int timeout_ms, int *done) {
    sched *s = r->s;
    struct timespec until;
    clock_deadline_ms(&until, timeout_ms);
    pthread_mutex_lock(&s->mu);
    while (r->n_tokens <= have && r->state != RQ_DONE)
        if (pthread_cond_timedwait(&s->progress, &s->mu, &until)) break;
    size_t k = 0;
    while (have + k < r->n_tokens && k < cap) {
        out[k] = r->tokens[have + k];
        k++;
    }
    *done = r->state == RQ_DONE && have + k >= r->n_tokens;
    pthread_mutex_unlock(&s->mu);
    return k;
}

int sched_logprobs(sched_req *r, size_t i, float *lp, int32_t *ids, float *lps) {
    sched *s = r->s;
    pthread_mutex_lock(&s->mu);
    int n = -1;
    if (r->n_top >= 0 && i < r->n_tokens && r->lp) {
        n = r->n_top;
        *lp = r->lp[i];
        memcpy(ids, r->top_id + i * (size_t)n, (size_t)n * sizeof *ids);
        memcpy(lps, r->top_lp + i * (size_t)n, (size_t)n * sizeof *lps);
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

void sched_cancel(sched_req *r) {
    sched *s = r->s;
    pthread_mutex_lock(&s->mu);
    r->cancelled = 1;
    if (r->state == RQ_WAITING) { /* still queued: take it out now */
        sched_req **pp = &s->queue_head, *prev = NULL;
        while (*pp && *pp != r) prev = *pp, pp = &(*pp)->next;
        if (*pp) {
            *pp = r->next;
            if (s->queue_tail == r) s->queue_tail = prev;
            s->n_waiting--;
            r->state = RQ_DONE;
            r->finish = "cancelled";
            pthread_cond_broadcast(&s->progress);
        }
    }
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
}

void sched_cancel_all(sched *s) {
    pthread_mutex_lock(&s->mu);
    while (s->queue_head) {
        sched_req *r = s->queue_head;
        s->queue_head = r->next;
        s->n_waiting--;
        r->cancelled = 1;
        finish(s, r, "cancelled");
    }
    s->queue_tail = NULL;
    for (int i = 0; i < s->o.n_parallel; i++)
        if (s->slots[i].req) s->slots[i].req->cancelled = 1;
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
}

void sched_result_get(sched_req *r, sched_result *out) {
    sched *s = r->s;
    pthread_mutex_lock(&s->mu);
    out->finish = r->state != RQ_DONE ? "running" : r->finish ? r->finish : "error";
    out->n_prompt = r->n_prompt;
    out->n_cached = r->n_cached;
    out->n_gen = r->n_tokens;
    out->t_queue = r->t_start > 0 ? r->t_start - r->t_submit : 0;
    out->t_first = r->t_first > 0 ? r->t_first - r->t_submit : 0;
    out->drafted = r->drafted, out->accepted = r->accepted;
    /* a generated token means the whole prompt was in; a request may end in the step that
     * completed its prompt, before the count above is kept */
    out->n_prompt_done = r->n_tokens ? r->n_prompt : r->n_prompt_done > r->n_cached ? r->n_prompt_done : r->n_cached;
    pthread_mutex_unlock(&s->mu);
}

void sched_release(sched_req *r) {
    sched *s = r->s;
    pthread_mutex_lock(&s->mu);
    if (r->state != RQ_DONE) { /* the engine frees it when it lets go */
        r->released = 1;
        r->cancelled = 1;
        pthread_cond_broadcast(&s->work);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    pthread_mutex_unlock(&s->mu);
    req_free(r);
}

void sched_stats_get(sched *s, sched_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    out->waiting = s->n_waiting;
    out->kv_tokens = 0;
    for (int i = 0; i < s->o.n_parallel; i++) out->kv_tokens += (int64_t)s->slots[i].n_cached;
    pthread_mutex_unlock(&s->mu);
}
