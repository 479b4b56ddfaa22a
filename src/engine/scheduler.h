/* scheduler.h — continuous batching: many requests share one model, one KV cache and one
 * forward pass per step.
 *
 * A scheduler owns n_parallel sequence slots in one kv_cache and an engine thread. Each step it
 * admits waiting requests into free slots, then runs one batched
 * forward over every active slot: a decoding slot contributes its next token, a slot still
 * reading its prompt contributes a chunk of it (at most `chunk` prompt rows per step in all, so
 * a long prompt does not stall the others' decoding). Finished and cancelled requests leave
 * between steps. Admission is fair between owners (users): a free slot goes to the waiting
 * request whose owner has the fewest active sequences, then whose owner was served least
 * recently (round robin), the oldest among equals, so one user's burst cannot starve the others; with several owners each may also hold only
 * max_queue_per_owner places in the queue. Because a row's result does not depend on the other rows of its batch (the
 * kernels are batch-invariant), a request's greedy output is the same alone or among others.
 *
 * Prompt caching, in whole units of 64 tokens (DeepSeek's cache granularity), two levels:
 * - a slot keeps the rows it holds after its request ends; a new request goes to the free slot
 *   sharing the longest prefix with its prompt, and that prefix is not computed again;
 * - with a context cache (engine/prefix_cache.h: memory, then disk), every computed block of a
 *   prompt and its reply is kept by prefix as soon as it exists; a request whose prompt starts
 *   with kept blocks beyond what its slot holds gets them copied into the slot instead of
 *   computed (the rows are the same bits: the kernels are batch-invariant and deterministic).
 * The slots' KV cache is paged (model.h: kv_cache_share): a request whose prompt begins with
 * whole units another slot of the same owner holds (running or idle) maps that slot's pages
 * instead of computing them again, so concurrent requests with a common system prompt hold its
 * rows once; a page is copied only when a sharer writes into it.
 * sched_result reports reused tokens as cache hits. All levels are per owner
 * (sched_params.owner): a slot's rows go only to a request of the owner of its last request,
 * and the context cache keeps each owner's blocks apart, so one user's hits say nothing about
 * what another sent; sched_purge_owner forgets an owner.
 *
 * The consumer of a request (an HTTP handler thread) submits it, then waits for tokens with
 * sched_wait; tokens come as ids, in order. Cancelling (client gone, stop string found) frees
 * the slot at the next step.
 *
 * Speculative decoding (sched_opts.speculative): a slot whose request has no constraint and no
 * reasoning budget forcing tokens feeds its pending token together with a drafter's guesses for
 * the next ones (engine/draft.h: DeepSeek-V3's MTP module, prompt lookup, or a small draft
 * model) in the same batched forward, and keeps the guesses its own sampler confirms: up to
 * 1 + drafts tokens per step. Greedy requests get exactly the tokens plain greedy decoding
 * gives; sampled ones keep a guess with the probability their sampler gives it and otherwise
 * draw from the rest (sampler_sample_draft), so every token has plain sampling's distribution
 * (a seed gives another sequence, though). Stops, max_tokens and the end of the context are
 * checked after each token; log probabilities come from each token's own row. Requests without
 * guesses decode one token per step beside them. */
#ifndef WHALE_ENGINE_SCHEDULER_H
#define WHALE_ENGINE_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/sampler.h"
#include "model/model.h"

#define SCHED_CACHE_UNIT 64

typedef struct sched sched;
typedef struct sched_req sched_req;

typedef struct sched_opts {
    int n_parallel;    /* slots (sequences decoding at once); default 4 */
    int64_t n_ctx;     /* tokens per slot (prompt + reply); default min(model's, 4096) */
    int max_queue;     /* requests waiting for a slot beyond which sched_submit refuses; default 64 */
    int max_queue_per_owner; /* of those, at most this many from one owner (sched_params.owner
                              * != 0); 0: no such limit */
    int64_t chunk;     /* prompt rows per step over all slots; default 256 */
    /* context cache: memory budget in bytes (0 with no cache_dir: slot reuse only), a directory
     * for the disk tier (NULL: none) and its budget, and the model's identity (a hash of its
     * file), which keeps another model's blocks out */
    size_t cache_ram, cache_disk;
    const char *cache_dir;
    uint64_t cache_salt;
    int speculative;   /* SCHED_SPEC_NONE; SCHED_SPEC_MTP: draft with the model's MTP module
                        * (sched_new refuses it for a model without one); SCHED_SPEC_LOOKUP:
                        * prompt lookup; SCHED_SPEC_MODEL: the draft model below */
    const model *draft;  /* SCHED_SPEC_MODEL: a smaller model with the same vocabulary (borrowed) */
    int draft_max;       /* guesses per slot per step, 1..DRAFT_MAX; 0: the mode's default
                          * (MTP 1, lookup 7, model SCHED_DRAFT_MAX_MODEL) */
    float draft_p_min;   /* SCHED_SPEC_MODEL: stop guessing below this draft probability; 0:
                          * SCHED_DRAFT_P_MIN */
} sched_opts;

enum { SCHED_SPEC_NONE = 0, SCHED_SPEC_MTP = 1, SCHED_SPEC_LOOKUP = 2, SCHED_SPEC_MODEL = 3 };
#define SCHED_DRAFT_MAX_LOOKUP 7 /* with the pending token, 8 rows: one group of the integer kernels */
#define SCHED_DRAFT_MAX_MODEL 4
#define SCHED_DRAFT_P_MIN 0.6f

/* Start the engine thread. NULL with a message when the cache does not fit, or with
 * WHALE_E_UNSUPPORTED when SCHED_SPEC_MTP is asked of a model without an MTP module. */
sched *sched_new(model *m, const sched_opts *o, whale_err *err);
/* Stop: pending and active requests end with finish "cancelled"; joins the thread. */
void sched_free(sched *s);
int64_t sched_n_ctx(const sched *s);
/* What the scheduler started without (the context cache's disk tier when its directory cannot
 * be used), for the operator; NULL when nothing. */
const char *sched_warning(const sched *s);

/* A constraint on what a request may generate (JSON mode), called on the engine thread: mask
 * sets the logits of tokens that may not come next to -inf (greedy: only the best allowed token
 * needs to survive), accept reports the token chosen. The scheduler owns it from a successful
 * sched_submit and calls free(ctx) when the request goes. */
typedef struct sched_constraint {
    void (*mask)(void *ctx, float *logits, int64_t n_vocab, int greedy);
    void (*accept)(void *ctx, int32_t token);
    void (*free)(void *ctx);
    void *ctx;
} sched_constraint;

typedef struct sched_params {
    const int32_t *prompt; /* copied */
    size_t n_prompt;
    sampler_params sp;
    int64_t max_tokens;    /* 0: until the context is full */
    /* Reasoning budget (R1-style models): after think_budget generated tokens without think_end,
     * the next tokens are forced to close[0..n_close) (e.g. "\n</think>\n\n") and sampling
     * resumes for the answer. think_budget < 0: no budget. */
    int64_t think_budget;
    int32_t think_end;
    const int32_t *close; /* copied */
    size_t n_close;
    sched_constraint *constraint; /* or NULL; owned by the scheduler once submitted */
    int logprobs;                 /* record log probabilities: the chosen token's, and */
    int top_logprobs;             /* this many best tokens' (0..SCHED_MAX_TOP) */
    int64_t owner;                /* who asks (a user id; 0: nobody in particular), for fairness */
} sched_params;

#define SCHED_MAX_TOP 20

/* Queue a request. NULL with WHALE_E_BUSY (queue full) or WHALE_E_ARG (prompt too long for a
 * slot, or empty) and a message; the caller then still owns p->constraint's state. */
sched_req *sched_submit(sched *s, const sched_params *p, whale_err *err);

/* Wait up to timeout_ms for tokens after the first `have` ones: copies up to cap new ids into
 * out and returns how many (0 on timeout). *done is set once the request has ended and every
 * token has been handed out. */
size_t sched_wait(sched_req *r, size_t have, int32_t *out, size_t cap, int timeout_ms, int *done);

/* Log probabilities of generated token i (the model's distribution, before sampling settings
 * and constraints): *lp for the token itself, and the request's top_logprobs best tokens into
 * ids/lps (room for SCHED_MAX_TOP). Returns how many best tokens, or -1 when not recorded. */
int sched_logprobs(sched_req *r, size_t i, float *lp, int32_t *ids, float *lps);

/* Stop generating (the slot is freed at the next step). Safe after the end, too. */
void sched_cancel(sched_req *r);

typedef struct sched_result {
    const char *finish;        /* "stop" (end of turn token), "length", "cancelled", "error" */
    size_t n_prompt, n_cached; /* prompt tokens, of which reused from the cache */
    size_t n_gen;              /* tokens generated */
    double t_queue, t_first;   /* seconds waiting for a slot; from submit to the first token */
    uint64_t drafted, accepted; /* speculative decoding: drafts verified, of which kept */
    size_t n_prompt_done;       /* prompt tokens in the sequence (cached or computed) when it ended */
} sched_result;
void sched_result_get(sched_req *r, sched_result *out);

/* Cancel every waiting and running request (shutting down). */
void sched_cancel_all(sched *s);

/* Forget what the caches hold for owner: its context cache blocks (memory, and its files for
 * every model in the cache directory) and its rows in the slots. Any thread; returns once the
 * engine thread has done it, between two steps. The owner's requests running or waiting then
 * end as usual but store nothing; requests submitted after the call are cached again. 0,
 * WHALE_E_IO (files left; the rest is done) or WHALE_E_ARG (the scheduler is stopping) with a
 * message. */
int sched_purge_owner(sched *s, int64_t owner, whale_err *err);

/* Release the request (after it ended or was cancelled). */
void sched_release(sched_req *r);

typedef struct sched_stats {
    int active, waiting, n_parallel;
    uint64_t tokens_generated, prompt_tokens, cached_tokens, steps;
    uint64_t drafted, accepted; /* speculative decoding: drafts verified, of which kept, */
    uint64_t spec_steps;        /* over this many slot-steps that verified drafts */
    const char *drafter;        /* "mtp", "lookup", "model", or NULL (static) */
    int64_t kv_tokens; /* tokens held in the slots' caches (in use or kept for reuse) */
    /* KV pages (64 positions, every layer): mapped by some slot, in the pool, bytes each; slots
     * sharing a prefix share its pages */
    int64_t kv_pages_used, kv_pages;
    size_t kv_page_bytes;
    /* context cache: blocks (64 tokens) and bytes per tier, blocks served from each */
    uint64_t pc_ram_blocks, pc_disk_blocks, pc_ram_bytes, pc_disk_bytes, pc_hits_ram, pc_hits_disk;
} sched_stats;
void sched_stats_get(sched *s, sched_stats *out);

#endif
