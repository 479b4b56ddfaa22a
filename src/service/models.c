/* models.c — the served models, loaded on first use and unloaded least recently used first; see
 * models.h.
 *
 * One mutex guards which models are loaded. Loading takes seconds, so it runs outside the lock:
 * the model is marked `loading` (it counts against the limits, and other requests for it wait
 * on the condition variable) and published when its engine is up. Unloading an idle model is
 * quick (its engine's thread has nothing to finish) and happens under the lock. */
#include "service/models.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* The bytes of a model's weights on disk: the file, or a checkpoint directory's *.safetensors. */
static size_t weight_bytes(const char *path) {
    struct stat st;
    if (stat(path, &st)) return 0;
    if (!S_ISDIR(st.st_mode)) return (size_t)st.st_size;
    size_t sum = 0;
    DIR *d = opendir(path);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        size_t n = strlen(de->d_name);
        char f[4352];
        if (n < 12 || strcmp(de->d_name + n - 12, ".safetensors")) continue;
        snprintf(f, sizeof f, "%s/%s", path, de->d_name);
        if (!stat(f, &st) && S_ISREG(st.st_mode)) sum += (size_t)st.st_size;
    }
    if (d) closedir(d);
    return sum;
}

static int named(const served *s, const char *name) {
    if (!strcmp(s->name, name)) return 1;
    for (int i = 0; i < s->n_aliases; i++)
        if (!strcmp(s->aliases[i], name)) return 1;
    return 0;
}

static void served_free(served *s) {
    if (s->e) whale_engine_free(s->e);
    whale_model_close(s->m);
    whale_model_close(s->vocab);
    for (int i = 0; i < s->n_aliases; i++) free(s->aliases[i]);
    free(s->path);
    free(s->lora);
    memset(s, 0, sizeof *s);
}

/* The context an engine will give s: whale_engine_params' rule, for a model not loaded yet (the
 * vocabulary does not tell the trained context: the most it can be). */
static int64_t expected_ctx(const models *r) { return r->ep.n_ctx > 0 ? r->ep.n_ctx : 4096; }

/* 1 when a name can be served: 1 to MODELS_NAME_MAX - 1 printable ASCII characters, no space,
 * quote or backslash (names go into JSON, Prometheus labels and error messages as they are). */
static int name_ok(const char *n) {
    size_t k = strlen(n);
    if (!k || k >= MODELS_NAME_MAX) return 0;
    for (; *n; n++)
        if (*n <= ' ' || *n > '~' || *n == '"' || *n == '\\') return 0;
    return 1;
}

static int alias_add(served *s, const char *a) {
    if (s->n_aliases == MODELS_MAX_ALIASES + 1 || named(s, a)) return 0;
    return (s->aliases[s->n_aliases] = dup_str(a)) ? (s->n_aliases++, 0) : -1;
}

int models_init(models *r, const models_spec *specs, int n, const whale_model_params *mp,
                const whale_engine_params *ep, int max_loaded, size_t max_memory, whale_err *err) {
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->mp = *mp;
    r->ep = *ep;
    r->max_loaded = max_loaded;
    r->max_memory = max_memory;
    if (n < 1 || n > MODELS_MAX) return err_set(err, WHALE_E_ARG, "serve 1 to %d models (%d given)", MODELS_MAX, n);
    int rc = 0, chat = 0, reasoner = 0;
    for (int i = 0; i < n && !rc; i++) {
        const models_spec *p = &specs[i];
        served *s = &r->v[r->n++];
        for (int a = -1; a < p->n_aliases && !rc; a++)
            if (!name_ok(a < 0 ? p->name : p->aliases[a]))
                rc = err_set(err, WHALE_E_ARG, "'%.200s' cannot be a model's name: 1 to %d printable characters without "
                             "spaces, quotes or backslashes (give another with --name)", a < 0 ? p->name : p->aliases[a],
                             MODELS_NAME_MAX - 1);
        if (rc) break;
        snprintf(s->name, sizeof s->name, "%s", p->name);
        for (int k = 0; k < i && !rc; k++)
            for (int a = -1; a < p->n_aliases && !rc; a++)
                if (named(&r->v[k], a < 0 ? p->name : p->aliases[a]))
                    rc = err_set(err, WHALE_E_ARG, "two models are called '%s': give one another --name",
                                 a < 0 ? p->name : p->aliases[a]);
        if (rc) break;
        whale_model_params vp = {.vocab_only = 1};
        if (!(s->path = dup_str(p->path)) || (p->lora && !(s->lora = dup_str(p->lora)))) {
            rc = err_set(err, WHALE_E_NOMEM, "out of memory");
            break;
        }
        for (int a = 0; a < p->n_aliases && !rc; a++)
            if (alias_add(s, p->aliases[a])) rc = err_set(err, WHALE_E_NOMEM, "out of memory");
        if (rc || (rc = whale_model_open(&s->vocab, s->path, &vp, err))) break;
        whale_model_info mi;
        whale_model_info_get(s->vocab, &mi);
        if (!mi.has_tokenizer) {
            rc = err_set(err, WHALE_E_UNSUPPORTED, "%s: the model has no tokenizer", s->name);
            break;
        }
        s->a.m = s->vocab;
        if (!(s->a.fmt = whale_chat_format(s->vocab, p->chat_format))) {
            rc = err_set(err, WHALE_E_UNSUPPORTED,
                         "%s: no chat format for this model (use --chat-format deepseek-r1|chatml|chatml-think)", s->name);
            break;
        }
        s->a.reasoning = whale_chat_format_thinks(s->a.fmt);
        s->a.model_name = s->name;
        s->a.n_ctx = expected_ctx(r);
        api_ctx_tokens(&s->a);
        /* DeepSeek's two names: the first reasoning model served, and the first plain one */
        int *taken = s->a.reasoning ? &reasoner : &chat;
        const char *alias = s->a.reasoning ? "deepseek-reasoner" : "deepseek-chat";
        int clash = 0;
        for (int k = 0; k <= i; k++) clash |= named(&r->v[k], alias);
        if (!*taken && !clash) {
            *taken = 1;
            if (alias_add(s, alias)) rc = err_set(err, WHALE_E_NOMEM, "out of memory");
            else s->a.alias = s->aliases[s->n_aliases - 1];
        }
        s->file_bytes = weight_bytes(s->path);
        /* until it has been loaded: its weights and its context cache's budget (its KV pages are
         * known once its engine exists, and make_room looks again then) */
        s->bytes = s->file_bytes + (r->ep.cache ? r->ep.cache_ram : 0);
        struct stat fs;
        s->mtime = stat(s->path, &fs) ? 0 : (int64_t)fs.st_mtime;
    }
    if (rc) models_free(r);
    return rc;
}

void models_free(models *r) {
    for (int i = 0; i < r->n; i++) served_free(&r->v[i]);
    r->n = 0;
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
}

void models_ctx(models *r, const served *s, api_ctx *out) {
    pthread_mutex_lock(&r->mu);
    *out = s->a;
    pthread_mutex_unlock(&r->mu);
}

served *models_find(models *r, const char *name) {
    if (!name) return r->n ? &r->v[0] : NULL;
    for (int i = 0; i < r->n; i++)
        if (named(&r->v[i], name)) return &r->v[i];
    return NULL;
}

/* Under the lock: unload s (idle and loaded). */
static void unload(models *r, served *s) {
    whale_engine_free(s->e);
    whale_model_close(s->m);
    s->e = NULL;
    s->m = NULL;
    s->n_samples = 0;
    s->a.n_ctx = expected_ctx(r);
    pthread_cond_broadcast(&r->cv);
}

/* Under the lock: unload idle models other than s, least recently used first, until s fits
 * beside them within max_loaded and max_memory (adding: s is not loaded yet; 0: it is, with its
 * real size now). 1 when it fits, 0 when only busy models stand in the way. A model alone over
 * max_memory is loaded anyway once nothing else is. */
static int make_room(models *r, const served *s, int adding) {
    for (;;) {
        int n = adding;
        size_t bytes = adding ? s->bytes : 0;
        served *lru = NULL;
        for (int i = 0; i < r->n; i++) {
            served *o = &r->v[i];
            if (!o->e && !o->loading) continue;
            n += o != s || !adding;
            bytes += o != s || !adding ? o->bytes : 0;
            if (o != s && o->e && !o->refs && (!lru || o->last_used < lru->last_used)) lru = o;
        }
        int over = (r->max_loaded > 0 && n > r->max_loaded) || (r->max_memory && n > 1 && bytes > r->max_memory);
        if (!over) return 1;
        if (!lru) return 0;
        fprintf(stderr, "whale serve: unloading %s (least recently used) to %s %s\n", lru->name,
                adding ? "load" : "make room for", s->name);
        unload(r, lru);
    }
}

/* Open s's weights, its adapter and its engine (no lock held). */
static int open_engine(models *r, served *s, whale_model **m, whale_engine **e, whale_err *err) {
    *m = NULL;
    *e = NULL;
    int rc = whale_model_open(m, s->path, &r->mp, err);
    if (!rc && s->lora) rc = whale_model_lora(*m, s->lora, err);
    if (!rc) rc = whale_engine_new(e, *m, &r->ep, err);
    if (rc) {
        whale_model_close(*m);
        *m = NULL;
        err_prefix(err, "%s", s->name);
        return rc;
    }
    if (whale_engine_warning(*e)) fprintf(stderr, "whale serve: %s: warning: %s\n", s->name, whale_engine_warning(*e));
    return 0;
}

/* Lease s (lock held on entry and exit); load it when need be. */
static int lease_locked(models *r, served *s, int lease, whale_err *err) {
    struct timespec until;
    clock_deadline_ms(&until, MODELS_WAIT_S * 1000);
    for (;;) {
        if (r->stopping) return err_set(err, WHALE_E_BUSY, "the server is shutting down");
        if (s->e) {
            s->refs += lease;
            s->last_used = clock_now_s();
            return 0;
        }
        if (s->loading) { /* another request loads it: however long that takes */
            pthread_cond_wait(&r->cv, &r->mu);
            continue;
        }
        if (make_room(r, s, 1)) break;
        if (pthread_cond_timedwait(&r->cv, &r->mu, &until) == ETIMEDOUT)
            return err_set(err, WHALE_E_BUSY, "%s is not loaded, and the models loaded now are all in use (%s); retry "
                                              "later", s->name, r->max_loaded ? "--max-loaded" : "--max-memory");
    }
    s->loading = 1;
    pthread_mutex_unlock(&r->mu);
    double t0 = clock_now_s();
    whale_model *m;
    whale_engine *e;
    int rc = open_engine(r, s, &m, &e, err);
    pthread_mutex_lock(&r->mu);
    s->loading = 0;
    if (!rc) {
        whale_stats st;
        whale_engine_stats(e, &st);
        s->m = m;
        s->e = e;
        s->loads++;
        s->refs += lease;
        s->last_used = clock_now_s();
        s->a.n_ctx = whale_engine_n_ctx(e);
        s->bytes = s->file_bytes + (size_t)st.kv_pages * st.kv_page_bytes + (r->ep.cache ? r->ep.cache_ram : 0);
        fprintf(stderr, "whale serve: loaded %s in %.1f s\n", s->name, clock_now_s() - t0);
        make_room(r, s, 0); /* its real size may be more than was thought */
    }
    pthread_cond_broadcast(&r->cv);
    return rc;
}

int models_lease(models *r, served *s, whale_err *err) {
    pthread_mutex_lock(&r->mu);
    int rc = lease_locked(r, s, 1, err);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int models_load(models *r, served *s, whale_err *err) {
    pthread_mutex_lock(&r->mu);
    int rc = lease_locked(r, s, 0, err);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void models_release(models *r, served *s) {
    pthread_mutex_lock(&r->mu);
    s->refs--;
    s->last_used = clock_now_s();
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void models_each(models *r, void (*fn)(void *ctx, const served *s, whale_engine *e), void *ctx) {
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n; i++) fn(ctx, &r->v[i], r->v[i].e);
    pthread_mutex_unlock(&r->mu);
}

void models_sample(models *r) {
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n; i++) {
        served *s = &r->v[i];
        if (!s->e) continue;
        whale_stats st;
        whale_engine_stats(s->e, &st);
        int k = s->n_samples++ % (MODELS_RATE_WINDOW + 1);
        s->sample_t[k] = clock_now_s();
        s->sample_tokens[k] = st.tokens_generated;
    }
    pthread_mutex_unlock(&r->mu);
}

double models_rate(const served *s, uint64_t tokens_now) {
    if (!s->n_samples) return 0;
    int oldest = s->n_samples > MODELS_RATE_WINDOW ? (s->n_samples - MODELS_RATE_WINDOW) % (MODELS_RATE_WINDOW + 1) : 0;
    double dt = clock_now_s() - s->sample_t[oldest];
    return dt > 0 ? (double)(tokens_now - s->sample_tokens[oldest]) / dt : 0;
}

void models_purge_owner(models *r, int64_t user) {
    whale_err e = {0};
    int any = 0;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n; i++) {
        if (!r->v[i].e) continue;
        any = 1;
        if (whale_engine_purge_owner(r->v[i].e, user, &e))
            fprintf(stderr, "whale serve: purging a deleted account's context cache (%s): %s\n", r->v[i].name, e.msg);
    }
    pthread_mutex_unlock(&r->mu);
    /* the disk tier holds every model's blocks, loaded or not: a loaded engine purged it above */
    if (!any && r->ep.cache && whale_cache_purge_owner(r->ep.cache_dir, user, &e))
        fprintf(stderr, "whale serve: purging a deleted account's context cache: %s\n", e.msg);
}

void models_cancel_all(models *r) {
    pthread_mutex_lock(&r->mu);
    r->stopping = 1; /* nothing loads any more, and no one waits for a model */
    pthread_cond_broadcast(&r->cv);
    for (int i = 0; i < r->n; i++)
        if (r->v[i].e) whale_engine_cancel_all(r->v[i].e);
    pthread_mutex_unlock(&r->mu);
}

static void model_entry(cJSON *data, const char *id, const served *s, int alias) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", 0);
    cJSON_AddStringToObject(m, "owned_by", "whale");
    if (alias) cJSON_AddStringToObject(m, "root", s->name);
    cJSON_AddItemToArray(data, m);
}

char *models_json(models *r) {
    cJSON *j = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(j, "data");
    cJSON_AddStringToObject(j, "object", "list");
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n; i++) {
        const served *s = &r->v[i];
        model_entry(data, s->name, s, 0);
        cJSON *me = cJSON_GetArrayItem(data, cJSON_GetArraySize(data) - 1), *al = cJSON_AddArrayToObject(me, "aliases");
        for (int a = 0; a < s->n_aliases; a++) cJSON_AddItemToArray(al, cJSON_CreateString(s->aliases[a]));
        cJSON_AddBoolToObject(me, "reasoning", s->a.reasoning);
        cJSON_AddBoolToObject(me, "loaded", s->e != NULL);
        cJSON_AddNumberToObject(me, "context_length", (double)s->a.n_ctx);
    }
    for (int i = 0; i < r->n; i++) /* aliases after the models: a client taking data[0] gets a model */
        for (int a = 0; a < r->v[i].n_aliases; a++) model_entry(data, r->v[i].aliases[a], &r->v[i], 1);
    pthread_mutex_unlock(&r->mu);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

int64_t models_max_ctx(const models *r) { return expected_ctx(r); }

size_t models_max_body(const models *r) { return api_max_body(expected_ctx(r)); }
