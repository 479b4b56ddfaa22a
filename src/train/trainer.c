/* trainer.c — the training loop (see trainer.h). */
#include "train/trainer.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/listdir.h"
#include "base/mapfile.h"
#include "base/rng.h"
#include "formats/safetensors.h"
#include "formats/safetensors_write.h"
#include "train/dist.h"
#include "train/moe.h"
#include "train/ops.h"

void tr_opts_default(tr_opts *o) {
    memset(o, 0, sizeof *o);
    o->steps = 100, o->warmup = -1, o->batch = 8, o->ctx = 128, o->accum = 1;
    o->adam = (tr_adamw){.lr = 3e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f};
    o->min_lr_frac = 0.1f, o->clip = 1.0f, o->wsd_decay = 0.2f, o->schedule = TR_LR_COSINE, o->bias_gamma = 0.001f;
    o->eval_every = 0, o->save_every = 0, o->eval_batches = 4, o->seed = 1;
}

void tr_notef(void (*on_note)(void *ctx, const char *msg), void *ctx, const char *fmt, ...) {
    if (!on_note) return;
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    on_note(ctx, msg);
}
#define note(o, ...) tr_notef((o)->on_note, (o)->hook_ctx, __VA_ARGS__)

/* ---- weights ---------------------------------------------------------------------------------- */

static double gauss(uint64_t *s) { /* Box-Muller */
    double u1 = rng_unit(rng_xorshift64(s)), u2 = rng_unit(rng_xorshift64(s));
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

static double dense_step(void *impl, const int32_t *ids, const int32_t *tg, const float *w, float *logp, int B, int T,
                         float scale, whale_err *err) {
    return tr_dense_step(impl, ids, tg, w, logp, B, T, scale, err);
}
static char *dense_config(const void *impl) { return tr_dense_config_json(impl); }

static void dense_adapters(void *impl, int on) {
    tr_dense *d = impl;
    d->lora_scale = on && d->c.lora.rank ? d->c.lora.alpha / (float)d->c.lora.rank : 0.0f;
}

void tr_dense_model(tr_dense *d, tr_model *out) {
    *out = (tr_model){.P = &d->P, .impl = d, .n_layer = d->c.n_layer, .step = dense_step, .config_json = dense_config,
                      .lora = d->c.lora.rank ? &d->c.lora : NULL, .adapters = dense_adapters};
}

static double ds_step(void *impl, const int32_t *ids, const int32_t *tg, const float *w, float *logp, int B, int T,
                      float scale, whale_err *err) {
    return tr_ds_step(impl, ids, tg, w, logp, B, T, scale, err);
}
static char *ds_config(const void *impl) { return tr_ds_config_json(impl); }

static double ds_balance(void *impl, float gamma) {
    tr_ds *m = impl;
    const tr_ds_cfg *c = &m->c;
    double sum = 0;
    int layers = 0;
    for (int l = c->first_dense; l < c->n_layer + c->n_mtp && c->n_expert; l++) { /* the MTP blocks too */
        int64_t *load = m->load + (size_t)l * c->n_expert, mx = 0, tot = 0;
        for (int e = 0; e < c->n_expert; e++) mx = load[e] > mx ? load[e] : mx, tot += load[e];
        if (!tot) continue;
        sum += (double)mx / ((double)tot / c->n_expert);
        layers++;
        if (gamma > 0 && c->sigmoid) tr_bias_update(m->L[l].router_bias, load, c->n_expert, gamma);
        memset(load, 0, sizeof(int64_t) * (size_t)c->n_expert);
    }
    return layers ? sum / layers : 0;
}

static double ds_mtp_loss(const void *impl) { return ((const tr_ds *)impl)->mtp_loss; }

void tr_ds_model(tr_ds *d, tr_model *out) {
    *out = (tr_model){.P = &d->P, .impl = d, .n_layer = d->c.n_layer, .step = ds_step, .config_json = ds_config,
                      .balance = ds_balance, .mtp_loss = d->c.n_mtp ? ds_mtp_loss : NULL};
    out->load = d->load,
    out->n_load = (size_t)(d->c.n_layer + d->c.n_mtp) * (size_t)(d->c.n_expert ? d->c.n_expert : 1);
}

void tr_init_weights(tr_model *m, uint64_t seed) {
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    rng_splitmix64(&s);
    for (int i = 0; i < m->P->n_t; i++) {
        tr_param *p = &m->P->t[i];
        int is_norm = strstr(p->name, "norm") != NULL, is_bias = strstr(p->name, ".bias") != NULL || p->frozen;
        double std = 0.02;
        if (strstr(p->name, "o_proj") || strstr(p->name, "down_proj")) std /= sqrt(2.0 * m->n_layer);
        for (size_t j = 0; j < p->n; j++) p->w[j] = is_norm ? 1.0f : is_bias ? 0.0f : (float)(gauss(&s) * std);
    }
}

void tr_init_adapters(tr_model *m, uint64_t seed) {
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 7;
    rng_splitmix64(&s);
    for (int i = 0; i < m->P->n_t; i++) {
        tr_param *p = &m->P->t[i];
        int a = strstr(p->name, ".lora_A.") != NULL, b = strstr(p->name, ".lora_B.") != NULL;
        double bound = 1.0 / sqrt((double)p->cols);
        for (size_t j = 0; (a || b) && j < p->n; j++)
            p->w[j] = b ? 0.0f : (float)((2.0 * (double)(rng_splitmix64(&s) >> 11) / 9007199254740992.0 - 1.0) * bound);
    }
}

/* ---- checkpoints ------------------------------------------------------------------------------ */

static int copy_file(const char *from, const char *to, whale_err *err) {
    FILE *a = fopen(from, "rb"), *b = a ? fopen(to, "wb") : NULL;
    char buf[1 << 16];
    size_t n;
    int rc = 0;
    if (!a || !b) rc = err_set(err, WHALE_E_IO, "%s: %m", a ? to : from);
    while (!rc && (n = fread(buf, 1, sizeof buf, a)) > 0)
        if (fwrite(buf, 1, n, b) != n) rc = err_set(err, WHALE_E_IO, "%s: %m", to);
    if (a) fclose(a);
    if (b && fclose(b) && !rc) rc = err_set(err, WHALE_E_IO, "%s: %m", to);
    return rc;
}

static int write_text(const char *path, const char *text, whale_err *err) {
    FILE *f = fopen(path, "w");
    int bad = !f || fputs(text, f) < 0;
    if (f && fclose(f)) bad = 1;
    return bad ? err_set(err, WHALE_E_IO, "%s: %m", path) : 0;
}

static void tensor_of(st_out_tensor *o, const tr_param *p, const float *data, const char *name) {
    memset(o, 0, sizeof *o);
    o->name = name ? name : p->name;
    o->dtype = WHALE_DTYPE_F32;
    o->n_dims = p->cols > 1 ? 2 : 1;
    o->shape[0] = p->rows;
    o->shape[1] = p->cols;
    o->data = data;
    o->nbytes = p->n * sizeof(float);
}

/* What a checkpoint holds of the parameters: everything, or with LoRA the adapters alone. */
static int saved(const tr_model *m, const tr_param *p) { return !m->lora || !p->frozen; }

/* The floats of the tensors a checkpoint holds. */
static size_t saved_floats(const tr_model *m) {
    size_t n = 0;
    for (int i = 0; i < m->P->n_t; i++) n += saved(m, &m->P->t[i]) ? m->P->t[i].n : 0;
    return n;
}

/* adapter_config.json as PEFT writes it (the fields its LoraConfig reads). */
static char *adapter_config(const tr_model *m) {
    cJSON *j = cJSON_CreateObject(), *t = cJSON_CreateArray();
    cJSON_AddStringToObject(j, "peft_type", "LORA");
    cJSON_AddStringToObject(j, "task_type", "CAUSAL_LM");
    cJSON_AddStringToObject(j, "base_model_name_or_path", m->base ? m->base : "");
    cJSON_AddNumberToObject(j, "r", m->lora->rank);
    cJSON_AddNumberToObject(j, "lora_alpha", m->lora->alpha);
    cJSON_AddNumberToObject(j, "lora_dropout", 0);
    cJSON_AddStringToObject(j, "bias", "none");
    cJSON_AddBoolToObject(j, "fan_in_fan_out", 0);
    cJSON_AddBoolToObject(j, "use_rslora", 0);
    cJSON_AddBoolToObject(j, "inference_mode", 1);
    for (int p = 0; p < TR_N_PROJ; p++)
        if (m->lora->targets & (1u << p)) cJSON_AddItemToArray(t, cJSON_CreateString(tr_lora_target_name(p)));
    cJSON_AddItemToObject(j, "target_modules", t);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    return s;
}

int tr_save_hf(const tr_model *m, const char *dir, const char *tokenizer, whale_err *err) {
    char tmp[4200], p[4400];
    snprintf(tmp, sizeof tmp, "%s.tmp", dir);
    mkdir(tmp, 0755);
    st_out_tensor *t = calloc((size_t)m->P->n_t, sizeof *t);
    if (!t) return err_set(err, WHALE_E_NOMEM, "out of memory");
    int n = 0;
    for (int i = 0; i < m->P->n_t; i++)
        if (saved(m, &m->P->t[i])) tensor_of(&t[n++], &m->P->t[i], m->P->t[i].w, NULL);
    snprintf(p, sizeof p, "%s/%s", tmp, m->lora ? "adapter_model.safetensors" : "model.safetensors");
    const char *meta[] = {"format", "pt"};
    int rc = st_write(p, t, n, meta, 1, err);
    free(t);
    char *cfg = m->lora ? adapter_config(m) : m->config_json(m->impl);
    snprintf(p, sizeof p, "%s/%s", tmp, m->lora ? "adapter_config.json" : "config.json");
    if (!rc) rc = write_text(p, cfg, err);
    free(cfg);
    snprintf(p, sizeof p, "%s/tokenizer.json", tmp);
    if (!rc && tokenizer) rc = copy_file(tokenizer, p, err);
    return rc;
}

/* Move DIR.tmp into place as DIR (an older DIR of the same name is replaced). */
int tr_commit_dir(const char *dir, whale_err *err) {
    char tmp[4200], old[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", dir);
    snprintf(old, sizeof old, "%s.old", dir);
    struct stat st;
    if (stat(dir, &st) == 0 && rename(dir, old)) return err_set(err, WHALE_E_IO, "%s: %m", dir);
    if (rename(tmp, dir)) return err_set(err, WHALE_E_IO, "%s: %m", dir);
    if (stat(old, &st) == 0) remove_flat_dir(old);
    return 0;
}

typedef tr_ckpt_state state;

/* The AdamW moments of the tensors a checkpoint holds, m then v, into a new *out (NULL when
 * out of memory); returns how many of each. */
static size_t moments_pack(const tr_model *m, const state *s, float **out) {
    size_t n = saved_floats(m), at = 0;
    if (!(*out = malloc(sizeof(float) * (2 * n + 1)))) return n;
    for (int i = 0; i < m->P->n_t; i++) {
        const tr_param *q = &m->P->t[i];
        if (!saved(m, q)) continue;
        memcpy(*out + at, s->m + q->off, q->n * sizeof(float));
        memcpy(*out + n + at, s->v + q->off, q->n * sizeof(float));
        at += q->n;
    }
    return n;
}

/* A full checkpoint: the model (loadable by itself) plus what resuming needs. */
static int save_checkpoint(const tr_model *m, const state *s, const tr_opts *o, char *dir, size_t cap, whale_err *err) {
    snprintf(dir, cap, "%s/step-%06ld", o->out_dir, s->step);
    return tr_checkpoint_save(m, s, dir, o->tokenizer, err);
}

int tr_checkpoint_save(const tr_model *m, const tr_ckpt_state *s, const char *dir, const char *tokenizer, whale_err *err) {
    int rc = tr_save_hf(m, dir, tokenizer, err);
    char p[4400];
    float *mv = NULL;
    size_t n = moments_pack(m, s, &mv);
    if (!rc && !mv) rc = err_set(err, WHALE_E_NOMEM, "out of memory for the optimizer state");
    if (!rc) {
        st_out_tensor t[2] = {{.name = "adam.m", .dtype = WHALE_DTYPE_F32, .n_dims = 1, .shape = {(int64_t)n},
                               .data = mv, .nbytes = n * sizeof(float)},
                              {.name = "adam.v", .dtype = WHALE_DTYPE_F32, .n_dims = 1, .shape = {(int64_t)n},
                               .data = mv + n, .nbytes = n * sizeof(float)}};
        snprintf(p, sizeof p, "%s.tmp/optimizer.safetensors", dir);
        rc = st_write(p, t, 2, NULL, 0, err);
    }
    free(mv);
    if (!rc) {
        char text[256];
        snprintf(text, sizeof text, "{\"step\": %ld, \"rng\": \"%llu\", \"n_params\": %zu, \"precision\": \"%s\"}\n",
                 s->step, (unsigned long long)s->rng, m->P->n, tr_precision_name(tr_precision()));
        snprintf(p, sizeof p, "%s.tmp/trainer_state.json", dir);
        rc = write_text(p, text, err);
    }
    return rc ? rc : tr_commit_dir(dir, err);
}

long tr_checkpoint_latest(const char *out, char *dir, size_t cap) {
    DIR *d = opendir(out);
    struct dirent *de;
    long best = -1;
    while (d && (de = readdir(d))) {
        long s;
        char tail;
        if (sscanf(de->d_name, "step-%ld%c", &s, &tail) == 1 && s > best) {
            char p[4400];
            struct stat st;
            snprintf(p, sizeof p, "%s/%s/trainer_state.json", out, de->d_name);
            if (stat(p, &st) == 0) best = s;
        }
    }
    if (d) closedir(d);
    if (best >= 0) snprintf(dir, cap, "%s/step-%06ld", out, best);
    return best;
}

int tr_checkpoint_load(tr_model *m, tr_ckpt_state *s, const char *dir, whale_err *err) {
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", dir, m->lora ? "adapter_model.safetensors" : "model.safetensors");
    int rc = m->lora ? tr_params_load_trainable(m->P, p, err) : tr_params_load(m->P, p, err);
    if (rc) return rc;
    st_model st;
    snprintf(p, sizeof p, "%s/optimizer.safetensors", dir);
    if ((rc = st_open(&st, p, err))) return rc;
    const st_tensor *tm = st_find(&st, "adam.m"), *tv = st_find(&st, "adam.v");
    size_t n = saved_floats(m), at = 0;
    if (!tm || !tv || (size_t)tm->n_elems != n || (size_t)tv->n_elems != n || tm->dtype != WHALE_DTYPE_F32 ||
        tv->dtype != WHALE_DTYPE_F32)
        rc = err_set(err, WHALE_E_FORMAT, "%s: not this model's optimizer state", p);
    for (int i = 0; !rc && i < m->P->n_t; i++) {
        const tr_param *q = &m->P->t[i];
        if (!saved(m, q)) continue;
        memcpy(s->m + q->off, (const float *)tm->data + at, q->n * sizeof(float));
        memcpy(s->v + q->off, (const float *)tv->data + at, q->n * sizeof(float));
        at += q->n;
    }
    st_close(&st);
    if (rc) return rc;
    snprintf(p, sizeof p, "%s/trainer_state.json", dir);
    FILE *f = fopen(p, "r");
    unsigned long long r = 0;
    if (!f || fscanf(f, "{\"step\": %ld, \"rng\": \"%llu\"", &s->step, &r) != 2) rc = err_set(err, WHALE_E_FORMAT, "%s: damaged", p);
    if (f) fclose(f);
    s->rng = r;
    return rc;
}

/* ---- data ------------------------------------------------------------------------------------- */

typedef struct shards {
    mapfile *f;
    int n;
    uint64_t tokens;
} shards;

static int open_shards(shards *s, const char *dir, const char *prefix, whale_err *err) {
    memset(s, 0, sizeof *s);
    char **names;
    size_t n;
    int rc = list_dir(dir, &names, &n, err);
    if (rc) return rc;
    s->f = calloc(n ? n : 1, sizeof *s->f);
    size_t pl = strlen(prefix);
    for (size_t i = 0; i < n && !rc && s->f; i++) {
        size_t l = strlen(names[i]);
        if (strncmp(names[i], prefix, pl) || l < 5 || strcmp(names[i] + l - 4, ".bin")) continue;
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (!(rc = mapfile_open(&s->f[s->n], p, err))) s->tokens += s->f[s->n++].size / 4;
    }
    list_dir_free(names, n);
    if (!s->f) return err_set(err, WHALE_E_NOMEM, "out of memory");
    if (!rc && !s->tokens) rc = err_set(err, WHALE_E_NOTFOUND, "%s: no %s*.bin shards with tokens", dir, prefix);
    return rc;
}

static void close_shards(shards *s) {
    for (int i = 0; i < s->n; i++) mapfile_close(&s->f[i]);
    free(s->f);
}

/* n consecutive tokens from global offset at (across shard boundaries). */
static void read_tokens(const shards *s, uint64_t at, int32_t *out, int n) {
    int i = 0;
    uint64_t base = 0;
    while (i < s->n && at >= base + s->f[i].size / 4) base += s->f[i++].size / 4;
    for (int k = 0; k < n; k++, at++) {
        while (i < s->n && at >= base + s->f[i].size / 4) base += s->f[i++].size / 4;
        uint32_t v;
        memcpy(&v, s->f[i].data + (at - base) * 4, 4);
        out[k] = (int32_t)v;
    }
}

/* A batch of B windows of T+1 tokens: ids = window[0..T), targets = window[1..T]. */
static void batch_at(const shards *s, uint64_t *rng, const uint64_t *fixed, int B, int T, int32_t *ids, int32_t *tg) {
    int32_t *w = malloc(sizeof(int32_t) * (size_t)(T + 1));
    for (int b = 0; b < B; b++) {
        uint64_t span = s->tokens - (uint64_t)T - 1;
        uint64_t at = fixed ? fixed[b] % (span + 1) : rng_xorshift64(rng) % (span + 1);
        read_tokens(s, at, w, T + 1);
        memcpy(ids + (size_t)b * T, w, sizeof(int32_t) * (size_t)T);
        memcpy(tg + (size_t)b * T, w + 1, sizeof(int32_t) * (size_t)T);
    }
    free(w);
}

/* ---- ranks (train/dist.h) ---------------------------------------------------------------------
 * A step's global batch is ranks x accum micro-batches drawn from one random stream that every
 * rank follows; rank r trains on micro-batches r*accum .. r*accum+accum-1 and steps over the
 * others' draws, so N ranks with --accum A see exactly the sequences one process sees with
 * --accum N*A, in the same order. Each rank's gradient is summed in rank order (dist.h) before
 * clipping, and a step with several micro-batches sums them the same way: each micro-batch's
 * gradient whole, then added to the running sum. So one rank per micro-batch gives the bits of
 * one process; more micro-batches per rank regroup the sum (equal to rounding). */

/* Advance rng over n micro-batches as batch_at would draw them, reading nothing. */
static void batch_skip(uint64_t *rng, long n, int B) {
    for (long i = 0; i < n * B; i++) rng_xorshift64(rng);
}

/* Every rank's rc made one: 0 when all succeeded, else this rank's own code and message, or for a
 * rank that succeeded, a code saying another failed (whose message is on its own stderr). */
static int dist_agree(tr_dist *d, int rc, whale_err *err) {
    int64_t bad = rc != 0;
    int mrc = tr_dist_sum_i64(d, &bad, 1, err);
    if (rc) return rc;
    if (mrc) return mrc;
    return bad ? err_set(err, WHALE_E_IO, "stopped: another rank failed (its message is above)") : 0;
}

/* After rank 0 has initialized or loaded m and s: every rank takes its parameters (selection
 * biases included), optimizer moments, step and random state. */
static int dist_start(tr_model *m, state *s, tr_dist *d, int rc, whale_err *err) {
    if ((rc = dist_agree(d, rc, err)) || tr_dist_size(d) == 1) return rc;
    uint64_t at[2] = {(uint64_t)s->step, s->rng};
    if (!rc) rc = tr_dist_bcast(d, m->P->w, m->P->n * sizeof(float), err);
    if (!rc) rc = tr_dist_bcast(d, s->m, m->P->n * sizeof(float), err);
    if (!rc) rc = tr_dist_bcast(d, s->v, m->P->n * sizeof(float), err);
    if (!rc) rc = tr_dist_bcast(d, at, sizeof at, err);
    s->step = (long)at[0], s->rng = at[1];
    return rc;
}

/* After this rank's micro-batches: the global losses (main and MTP), gradients and expert loads on
 * every rank. */
static int dist_step(tr_model *m, tr_dist *d, double losses[2], int rc, whale_err *err) {
    if ((rc = dist_agree(d, rc, err)) || tr_dist_size(d) == 1) return rc;
    rc = tr_dist_sum_f64(d, losses, 2, err);
    if (!rc) rc = tr_dist_sum_f32(d, m->P->g, m->P->n, err);
    if (!rc && m->balance && m->load) rc = tr_dist_sum_i64(d, m->load, m->n_load, err);
    return rc;
}

/* ---- the loop --------------------------------------------------------------------------------- */

static double val_loss(tr_model *m, const shards *val, const tr_opts *o, int32_t *ids, int32_t *tg, whale_err *err) {
    /* fixed windows spread over the validation shard (or the held-out chat examples in order),
     * forward only; with ranks, batch i on rank i % ranks, the losses gathered (others' slots are
     * 0, so the sum is exact) and added in order */
    double sum = 0, *each = calloc((size_t)o->eval_batches, sizeof(double));
    int rank = tr_dist_rank(o->dist), ranks = tr_dist_size(o->dist);
    if (!each) return err_set(err, WHALE_E_NOMEM, "out of memory");
    for (int i = rank; i < o->eval_batches; i += ranks) {
        if (o->sft) {
            int T = tr_sft_batch(o->sft, 1, NULL, (int64_t)i * o->batch, o->batch, o->ctx, ids, tg);
            each[i] = m->step(m->impl, ids, tg, NULL, NULL, o->batch, T, 0.0f, err);
            continue;
        }
        uint64_t fixed[256];
        for (int b = 0; b < o->batch && b < 256; b++) fixed[b] = (uint64_t)(i * o->batch + b) * 7919u * (uint64_t)(o->ctx + 1);
        batch_at(val, NULL, fixed, o->batch, o->ctx, ids, tg);
        each[i] = m->step(m->impl, ids, tg, NULL, NULL, o->batch, o->ctx, 0.0f, err);
    }
    tr_dist_sum_f64(o->dist, each, (size_t)o->eval_batches, err);
    for (int i = 0; i < o->eval_batches; i++) sum += each[i];
    free(each);
    return sum / o->eval_batches;
}

/* metrics.jsonl without the lines past step (after a resume). */
void tr_metrics_trim(const char *path, long step) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    char tmp[4400], line[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *g = fopen(tmp, "w");
    while (g && fgets(line, sizeof line, f)) {
        long s;
        if (sscanf(line, "{\"step\": %ld", &s) == 1 && s <= step) fputs(line, g);
    }
    fclose(f);
    if (g && !fclose(g)) rename(tmp, path);
}

int tr_train(tr_model *m, const tr_opts *o, whale_err *err) {
    if (o->batch < 1 || o->batch > 256 || o->ctx < 2 || o->accum < 1 || o->steps < 1)
        return err_set(err, WHALE_E_ARG, "batch 1..256, ctx >= 2, accum >= 1, steps >= 1");
    tr_opts quiet; /* ranks: rank 0 alone reports, writes metrics and checkpoints */
    tr_dist *dist = o->dist;
    int rank = tr_dist_rank(dist), ranks = tr_dist_size(dist);
    if (rank) quiet = *o, quiet.on_step = NULL, quiet.on_note = NULL, o = &quiet;
    shards tr = {0}, va = {0};
    int rc = o->sft ? 0 : open_shards(&tr, o->data_dir, "train-", err);
    if (rc) return rc;
    const shards *vs = &va;
    if (!o->sft && open_shards(&va, o->data_dir, "val-", NULL)) vs = &tr; /* no val shard: val on train windows */
    if (!o->sft && tr.tokens < (uint64_t)o->ctx + 2) {
        close_shards(&tr);
        return err_set(err, WHALE_E_ARG, "%s holds %llu tokens, fewer than one window of %d", o->data_dir,
                       (unsigned long long)tr.tokens, o->ctx + 1);
    }
    mkdir(o->out_dir, 0755);
    state s = {.step = 0, .rng = o->seed * 0x2545f4914f6cdd1dull + 7};
    s.m = calloc(m->P->n, sizeof(float));
    s.v = calloc(m->P->n, sizeof(float));
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)o->batch * o->ctx), *tg = malloc(sizeof(int32_t) * (size_t)o->batch * o->ctx);
    float *gsum = o->accum > 1 ? malloc(m->P->n * sizeof(float)) : NULL; /* the micro-batches' sum (ranks section) */
    if (!s.m || !s.v || !ids || !tg || (o->accum > 1 && !gsum)) rc = err_set(err, WHALE_E_NOMEM, "out of memory");
    char dir[4096], metrics[4300];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", o->out_dir);
    if (!rc && o->resume && rank == 0) {
        long at = tr_checkpoint_latest(o->out_dir, dir, sizeof dir);
        if (at >= 0) {
            if (!(rc = tr_checkpoint_load(m, &s, dir, err))) note(o, "resuming from %s (step %ld)", dir, s.step);
            tr_metrics_trim(metrics, s.step);
        } else {
            note(o, "nothing to resume in %s: starting at step 0", o->out_dir);
        }
    } else if (!rc && !o->resume && rank == 0) {
        unlink(metrics);
    }
    rc = dist_start(m, &s, dist, rc, err);
    long warmup = o->warmup >= 0 ? o->warmup : o->steps / 10;
    if (warmup > o->steps / 10) warmup = o->steps / 10;
    FILE *mf = rc ? NULL : fopen(rank ? "/dev/null" : metrics, "a");
    if (!rc && !mf) rc = err_set(err, WHALE_E_IO, "%s: %m", metrics);
    double peak = o->flops_per_token > 0 ? tr_peak_flops() : 0; /* measured once, cached */
    double t0 = clock_now_s();
    for (; !rc && s.step < o->steps;) {
        double ts = clock_now_s(), lm[2] = {0, 0}; /* this step's loss and MTP loss */
        double computed = 0;                                 /* this rank's positions run */
        memset(m->P->g, 0, m->P->n * sizeof(float));
        batch_skip(&s.rng, (long)rank * o->accum, o->batch); /* the ranks before this one */
        for (int a = 0; a < o->accum && !rc; a++) {
            if (gsum && a) memset(m->P->g, 0, m->P->n * sizeof(float));
            int T = o->ctx;
            if (o->sft) T = tr_sft_batch(o->sft, 0, &s.rng, 0, o->batch, o->ctx, ids, tg);
            else batch_at(&tr, &s.rng, NULL, o->batch, o->ctx, ids, tg);
            computed += (double)o->batch * T;
            lm[0] += m->step(m->impl, ids, tg, NULL, NULL, o->batch, T, 1.0f / (float)(o->accum * ranks), err) / (o->accum * ranks);
            if (m->mtp_loss) lm[1] += m->mtp_loss(m->impl) / (o->accum * ranks);
            if (err && err->code) rc = err->code;
            for (size_t i = 0; gsum && i < m->P->n; i++) gsum[i] = a ? gsum[i] + m->P->g[i] : m->P->g[i];
        }
        if (gsum) memcpy(m->P->g, gsum, m->P->n * sizeof(float));
        batch_skip(&s.rng, (long)(ranks - 1 - rank) * o->accum, o->batch); /* and after it */
        rc = dist_step(m, dist, lm, rc, err);
        double loss = lm[0], mtp = lm[1];
        if (rc) break;
        float *bufs[1] = {m->P->g};
        size_t lens[1] = {m->P->n};
        double gnorm = tr_clip_grad_norm(bufs, lens, 1, o->clip);
        tr_adamw c = o->adam;
        c.lr = tr_lr_at(s.step, o->steps, warmup, o->adam.lr, o->adam.lr * o->min_lr_frac, o->schedule, o->wsd_decay);
        for (int i = 0; i < m->P->n_t; i++) {
            const tr_param *q = &m->P->t[i];
            if (!q->frozen) tr_adamw_step(q->w, q->g, s.m + q->off, s.v + q->off, q->n, s.step + 1, &c, q->decay);
        }
        s.step++;
        tr_step_info info = {.step = s.step, .steps = o->steps, .loss = loss, .val_loss = -1, .lr = c.lr, .grad_norm = gnorm};
        if (m->balance) info.expert_load = m->balance(m->impl, o->bias_gamma);
        info.tokens_per_s = computed * ranks / (clock_now_s() - ts);
        if (peak > 0) info.mfu = o->flops_per_token * info.tokens_per_s / ranks / peak; /* each rank's peak */
        int last = s.step == o->steps;
        if ((o->eval_every && s.step % o->eval_every == 0) || last) info.val_loss = val_loss(m, vs, o, ids, tg, err);
        info.elapsed_s = clock_now_s() - t0;
        fprintf(mf, "{\"step\": %ld, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.5f, \"tokens_per_s\": %.1f", s.step, loss,
                c.lr, gnorm, info.tokens_per_s);
        if (m->balance) fprintf(mf, ", \"expert_load\": %.4f", info.expert_load);
        if (m->mtp_loss) fprintf(mf, ", \"mtp_loss\": %.6f", mtp);
        if (peak > 0) fprintf(mf, ", \"mfu\": %.4f", info.mfu);
        if (info.val_loss >= 0) fprintf(mf, ", \"val_loss\": %.6f", info.val_loss);
        fprintf(mf, "}\n");
        fflush(mf);
        if ((o->save_every && s.step % o->save_every == 0) || last)
            rc = dist_agree(dist, rank ? 0 : save_checkpoint(m, &s, o, dir, sizeof dir, err), err);
        if (o->on_step) o->on_step(o->hook_ctx, &info);
    }
    if (mf) fclose(mf);
    free(s.m), free(s.v), free(ids), free(tg), free(gsum);
    if (tr.f) close_shards(&tr);
    if (vs == &va && va.f) close_shards(&va);
    return rc;
}
