/* models.h — the models one `whale serve` serves: each under its name and aliases, loaded on
 * first use, the least recently used idle one unloaded when more than max_loaded are loaded or
 * their estimated memory passes max_memory.
 *
 * A request leases the model it names (models_lease), which loads it if need be, and gives it
 * back when its reply has ended (models_release); a leased model is never unloaded. Every model
 * keeps a vocabulary-only handle from the start, so its name, chat format, context and whether
 * it reasons are known without loading its weights. Owns the engines and models it loads. */
#ifndef WHALE_SERVICE_MODELS_H
#define WHALE_SERVICE_MODELS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "whale.h"
#include "service/api.h"

#define MODELS_MAX 16          /* models one server serves */
#define MODELS_MAX_ALIASES 6   /* names a model answers to besides its own */
#define MODELS_NAME_MAX 128
#define MODELS_WAIT_S 60       /* a request for an unloaded model waits this long for a loaded one to
                                  go idle (every loaded model busy, none may be unloaded) */
#define MODELS_RATE_WINDOW 10  /* seconds /metrics' generation rate is measured over: fixed, so that
                                  scrapes (anyone's, how often) cannot change the figure */

/* What to serve: a model file or checkpoint, optionally with a LoRA adapter on it. */
typedef struct models_spec {
    const char *path;       /* resolved (whale_model_resolve) */
    const char *name;       /* the id clients use */
    const char *aliases[MODELS_MAX_ALIASES]; /* other names for it (catalog aliases) */
    int n_aliases;
    const char *lora;       /* an adapter applied to it, or NULL */
    const char *chat_format; /* override, or NULL: the model's */
} models_spec;

/* One served model. The fields below `a` change under the registry's lock only. */
typedef struct served {
    char name[MODELS_NAME_MAX];
    char *aliases[MODELS_MAX_ALIASES + 1]; /* + deepseek-chat / deepseek-reasoner */
    int n_aliases;
    char *path, *lora;
    whale_model *vocab; /* vocabulary and chat template only: parsing requests, detokenizing */
    api_ctx a;          /* over vocab; a.n_ctx is the engine's once it has been loaded */
    whale_model *m;     /* loaded: the weights, and the engine over them (NULL when unloaded) */
    whale_engine *e;
    int refs;           /* requests holding it */
    int loading;        /* a request is loading it (others wait) */
    double last_used;
    size_t bytes;       /* estimated memory when loaded: the weights' files, KV pages, context cache */
    size_t file_bytes;  /* the weights' files */
    int64_t mtime;      /* when the weights' file was written (unix seconds; 0: unknown) */
    uint64_t loads;     /* times loaded since the start */
    double sample_t[MODELS_RATE_WINDOW + 1]; /* once a second while loaded: when, tokens generated */
    uint64_t sample_tokens[MODELS_RATE_WINDOW + 1];
    int n_samples;
} served;

typedef struct models {
    served v[MODELS_MAX];
    int n;
    int max_loaded;      /* 0: no limit */
    size_t max_memory;   /* bytes, 0: no limit */
    whale_model_params mp;
    whale_engine_params ep;
    pthread_mutex_t mu;
    pthread_cond_t cv;   /* a model loaded, unloaded or released */
    int stopping;        /* models_cancel_all was called: no more loads or leases */
} models;

/* Set up the models of specs (their vocabularies only), none loaded yet; ep is every engine's
 * parameters (n_ctx 0: each model's own, at most 4096). 0, or an error naming the model (no
 * tokenizer, no chat format, a name used twice). On error what was set up is freed. */
int models_init(models *r, const models_spec *specs, int n, const whale_model_params *mp,
                const whale_engine_params *ep, int max_loaded, size_t max_memory, whale_err *err);
/* Unload everything (no lease may be held) and free. */
void models_free(models *r);

/* The model a request's "model" names (its name or an alias; NULL: the first), or NULL. */
served *models_find(models *r, const char *name);
/* A copy of s's API context, for parsing a request before s is leased (its n_ctx is then the
 * most the context may be; the engine's once loaded). */
void models_ctx(models *r, const served *s, api_ctx *out);
/* Lease s for one request, loading it (and unloading the least recently used idle models beyond
 * the limits) if need be; a request waits as long as another loads s. 0, or WHALE_E_BUSY (every
 * loaded model busy for MODELS_WAIT_S, or the server stopping) or a load error, with a message. */
int models_lease(models *r, served *s, whale_err *err);
void models_release(models *r, served *s);
/* Load s now and keep it leased by no one (the first model, at the start). */
int models_load(models *r, served *s, whale_err *err);

/* Call fn for each model under the lock (engine NULL when unloaded): for /health and /metrics;
 * fn must not call back into the registry. */
void models_each(models *r, void (*fn)(void *ctx, const served *s, whale_engine *e), void *ctx);
/* Take a rate sample of each loaded model (the server calls this once a second). */
void models_sample(models *r);
/* Generated tokens per second over the last MODELS_RATE_WINDOW seconds for s, from its samples
 * and tokens_now (under models_each's lock). */
double models_rate(const served *s, uint64_t tokens_now);
/* Remove an account's context cache blocks: every loaded model's in memory, and every model's on
 * disk (unloaded ones keep nothing in memory). */
void models_purge_owner(models *r, int64_t user);
/* Stopping: cancel every loaded model's requests; leases are refused from now on. */
void models_cancel_all(models *r);

/* GET /models body: every model, with its aliases as models of their own ("parent" naming the
 * model), malloc'd. */
char *models_json(models *r);
/* The most context a served model may have (--ctx, else 4096), and the largest request body any
 * served model reads (api_max_body of that). */
int64_t models_max_ctx(const models *r);
size_t models_max_body(const models *r);

#endif
