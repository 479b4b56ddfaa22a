/* cmd_logits.c — `whale logits`: run a prompt through the model and show (or dump) the logits,
 * for checking a model against a reference implementation position by position. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "base/rng.h"
#include "model/model.h"

/* ---- --dump DIR: every named intermediate to a file ------------------------------------- */

/* One file per (name, layer): the rows as little-endian float32, appended in batch order. Each
 * call opens and closes its file, so a model of any depth stays within the open-file limit. */
#define DUMP_MAX_TENSORS 8192 /* names x layers: 9 per DeepSeek layer, room for 900 layers */

typedef struct dump_file {
    char name[32];
    int64_t layer, rows, len;
} dump_file;

typedef struct dump {
    const char *dir;
    dump_file *files;
    int n;
    int failed; /* a file could not be opened or written: reported once at the end */
} dump;

static void dump_path(const dump *d, const dump_file *x, char *out, size_t cap) {
    if (x->layer < 0) snprintf(out, cap, "%s/%s.f32", d->dir, x->name);
    else snprintf(out, cap, "%s/%s.%lld.f32", d->dir, x->name, (long long)x->layer);
}

static void dump_hook(void *user, const char *name, int64_t layer, int64_t row0, int64_t n, int64_t len,
                      const float *data) {
    (void)row0; /* rows arrive in batch order: appending keeps them in it */
    dump *d = user;
    dump_file *x = NULL;
    for (int i = 0; i < d->n && !x; i++)
        if (d->files[i].layer == layer && !strcmp(d->files[i].name, name)) x = &d->files[i];
    if (!x) {
        if (d->n == DUMP_MAX_TENSORS || strlen(name) >= sizeof x->name) {
            d->failed = 1;
            return;
        }
        x = &d->files[d->n++];
        snprintf(x->name, sizeof x->name, "%s", name);
        x->layer = layer;
        x->len = len;
    }
    char path[4096];
    dump_path(d, x, path, sizeof path);
    FILE *f = fopen(path, x->rows ? "ab" : "wb"); /* the first rows replace an older dump's */
    int ok = f && x->len == len && fwrite(data, sizeof(float), (size_t)(n * len), f) == (size_t)(n * len);
    if (f && fclose(f)) ok = 0;
    if (!ok) {
        d->failed = 1;
        return;
    }
    x->rows += n;
}

/* Write DIR/manifest.tsv (name, layer, rows, floats per row, file).
 * 0, or 1 with a message. */
static int dump_finish(dump *d) {
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest.tsv", d->dir);
    FILE *mf = fopen(path, "w");
    if (mf) fprintf(mf, "name\tlayer\trows\tlen\tfile\n");
    for (int i = 0; i < d->n; i++) {
        dump_file *x = &d->files[i];
        char p[4096];
        dump_path(d, x, p, sizeof p);
        if (mf) fprintf(mf, "%s\t%lld\t%lld\t%lld\t%s\n", x->name, (long long)x->layer, (long long)x->rows,
                        (long long)x->len, strrchr(p, '/') + 1);
    }
    if (!mf || fclose(mf)) d->failed = 1;
    free(d->files);
    if (d->failed) fprintf(stderr, "whale logits: could not write every tensor under %s\n", d->dir);
    return d->failed;
}

#define LOGITS_MAX_CONTEXTS 16 /* threads for --contexts: enough to show sharing, few enough to fit */

static void usage(FILE *f) {
    fprintf(f, "usage: whale logits [-m MODEL] (-p TEXT | --ids \"ID ID ...\") [--top K] [--all] [--raw FILE] [-t N]\n\n"
               "Run one prompt and print the top-K logits at the last position (--all: every position).\n"
               "  -p TEXT       prompt, tokenized as plain text (add --special to parse special tokens)\n"
               "  --ids LIST    token ids instead of text\n"
               "  --lora PATH   apply a LoRA adapter (PEFT directory) to the model\n"
               "  --raw FILE    also write the logits as little-endian float32, positions x vocabulary\n"
               "  --dump DIR    also write every named intermediate (inp_embd, attn_norm, attn_out,\n"
               "                ffn_inp, ffn_norm, ffn_out, moe_logits, moe_choice, moe_weight, l_out per\n"
               "                layer; result_norm) as DIR/NAME.LAYER.f32, rows x floats, listed in\n"
               "                DIR/manifest.tsv: to find the first layer where two runs part\n"
               "  --step N      run the prompt N tokens per forward call (1: token by token through the\n"
               "                KV cache, as decoding does; default: all at once)\n"
               "  --mla-naive   DeepSeek: decompressed attention instead of the absorbed form (reference)\n"
               "  --kv-type T   KV cache rows as f32 (default), f16 or bf16\n"
               "  --mtp         DeepSeek-V3: the MTP module's logits instead, one row per position i < last,\n"
               "                predicting the token at i+2 from the main model's state at i and token i+1\n"
               "  --mtp-prenorm with --mtp: feed the hidden state from before the final norm\n"
               "  --batch-with N  decode the prompt token by token in one batch with N other sequences\n"
               "                (random tokens); shows that a sequence's logits do not depend on its\n"
               "                batch neighbours\n"
               "  --contexts N  also run the prompt in N more contexts on N threads at once, sharing the\n"
               "                loaded model; fails unless every context gives the same logits bits\n"
               "  -t N          threads (default: all cores)\n");
}

/* The prompt through the model in forward calls of `step` rows, logits of every row into lg
 * and, when hid is not NULL, the hidden states. 0, or the failing call's status. */
static int run_prompt(const model *m, model_ctx *ctx, const tok_ids *ids, const int32_t *pos, const int8_t *want,
                      int64_t step, float *lg, float *hid, whale_err *err) {
    int64_t V = model_n_vocab(m), E = model_hparams_get(m)->n_embd;
    for (int64_t r0 = 0; r0 < (int64_t)ids->n; r0 += step) {
        int64_t k = (int64_t)ids->n - r0 < step ? (int64_t)ids->n - r0 : step;
        model_batch b = {k, ids->v + r0, pos + r0, NULL, want + r0};
        int rc = model_forward(m, ctx, &b, lg + (size_t)r0 * (size_t)V, hid ? hid + (size_t)r0 * (size_t)E : NULL, err);
        if (rc) return rc;
    }
    return 0;
}

/* --contexts N: the same prompt in N more contexts on as many threads, at the same time as the
 * main run, on the one loaded model (which is read-only). */
typedef struct ctx_job {
    const model *m;
    const tok_ids *ids;
    const int32_t *pos;
    const int8_t *want;
    int64_t step;
    float *lg;
    int rc;
    whale_err err;
} ctx_job;

static void *ctx_job_run(void *arg) {
    ctx_job *j = arg;
    model_ctx *ctx = model_ctx_new(j->m, (int64_t)j->ids->n, 1);
    j->rc = ctx ? run_prompt(j->m, ctx, j->ids, j->pos, j->want, j->step, j->lg, NULL, &j->err) : -1;
    if (!ctx) snprintf(j->err.msg, sizeof j->err.msg, "out of memory");
    model_ctx_free(ctx);
    return NULL;
}

/* Position by position, sequence 0 runs the prompt while sequences 1..n_other run random
 * tokens in the same forward call; logits of sequence 0 only. */
static int batched(model *m, model_ctx *ctx, const tok_ids *ids, int n_other, float *lg, whale_err *err) {
    int32_t tok[65], pos[65], seq[65];
    int8_t want[65] = {1};
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int64_t V = model_n_vocab(m);
    for (size_t p = 0; p < ids->n; p++) {
        for (int s = 0; s <= n_other; s++) {
            uint64_t r = rng_xorshift64(&x);
            tok[s] = s ? (int32_t)(r % (uint64_t)V) : ids->v[p];
            pos[s] = (int32_t)p;
            seq[s] = s;
        }
        model_batch b = {1 + n_other, tok, pos, seq, want};
        int rc = model_forward(m, ctx, &b, lg + p * (size_t)V, NULL, err);
        if (rc) return rc;
    }
    return 0;
}

int cmd_logits(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *ids_arg = NULL, *raw = NULL, *dump_dir = NULL;
    int top = 5, all = 0, special = 0, threads = 0;
    int64_t step = 0;
    int naive = 0, mtp = 0, prenorm = 0, others = 0, kvtype = 0, contexts = 0;
    const char *lora = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--all")) all = 1;
        else if (!strcmp(a, "--special")) special = 1;
        else if (next && (!strcmp(a, "-m") || !strcmp(a, "--model"))) { model_path = next; i++; }
        else if (next && !strcmp(a, "-p")) { prompt = next; i++; }
        else if (next && !strcmp(a, "--ids")) { ids_arg = next; i++; }
        else if (next && !strcmp(a, "--raw")) { raw = next; i++; }
        else if (next && !strcmp(a, "--lora")) { lora = next; i++; }
        else if (next && !strcmp(a, "--dump")) { dump_dir = next; i++; }
        else if (next && !strcmp(a, "--top")) { top = atoi(next); i++; }
        else if (next && !strcmp(a, "-t")) { threads = atoi(next); i++; }
        else if (next && !strcmp(a, "--step")) { step = atoll(next); i++; }
        else if (next && !strcmp(a, "--batch-with")) { others = atoi(next); i++; }
        else if (next && !strcmp(a, "--contexts")) { contexts = atoi(next); i++; }
        else if (!strcmp(a, "--mla-naive")) naive = 1;
        else if (!strcmp(a, "--kv-type")) { if (cli_kv_type("logits", next, &kvtype)) return 2; i++; }
        else if (!strcmp(a, "--mtp")) mtp = 1;
        else if (!strcmp(a, "--mtp-prenorm")) mtp = prenorm = 1;
        else { fprintf(stderr, "whale logits: bad option '%s'\n", a); usage(stderr); return 2; }
    }
    if (!prompt == !ids_arg) { fprintf(stderr, "whale logits: give exactly one of -p and --ids\n"); return 2; }
    if (dump_dir && mkdir(dump_dir, 0777) && errno != EEXIST) {
        fprintf(stderr, "whale logits: cannot create %s: %s\n", dump_dir, strerror(errno));
        return 1;
    }
    whale_err err = {0};
    model *m = NULL;
    model_opts o = {.n_threads = threads, .mla_naive = naive, .mtp_prenorm = prenorm, .kv_type = kvtype, .lora = lora};
    const char *path = cli_model_path(model_path);
    if (model_load(&m, path, &o, &err)) { fprintf(stderr, "whale: %s\n", err.msg); return 1; }
    tok_ids ids = {0};
    dump dd = {NULL, NULL, 0, 0}; /* dd.dir set while the dump is open */
    int rc = 1;
    if (ids_arg) {
        if (cli_parse_ids("logits", ids_arg, &ids)) goto done;
    } else if (!model_tokenizer(m)) {
        fprintf(stderr, "whale logits: this model has no tokenizer; use --ids\n");
        goto done;
    } else if (tokenizer_encode(model_tokenizer(m), prompt, strlen(prompt), special ? TOK_PARSE_SPECIAL : 0, &ids, &err)) {
        fprintf(stderr, "whale: %s\n", err.msg);
        goto done;
    }
    if (ids.n == 0) { fprintf(stderr, "whale logits: empty prompt\n"); goto done; }
    if (mtp && !model_has_mtp(m)) { fprintf(stderr, "whale logits: this model has no MTP module\n"); goto done; }
    if (mtp && ids.n < 2) { fprintf(stderr, "whale logits: --mtp needs at least 2 tokens\n"); goto done; }
    if (dump_dir && others) {
        fprintf(stderr, "whale logits: --dump does not combine with --batch-with (the neighbours' rows would mix in)\n");
        goto done;
    }
    if (contexts < 0 || contexts > LOGITS_MAX_CONTEXTS || (contexts && (others || mtp || dump_dir))) {
        fprintf(stderr, "whale logits: --contexts takes 0..%d and does not combine with --batch-with, --mtp or --dump\n",
                LOGITS_MAX_CONTEXTS);
        goto done;
    }
    if (others < 0 || others > 64 || (others && mtp)) {
        fprintf(stderr, "whale logits: --batch-with takes 0..64 and does not combine with --mtp\n");
        goto done;
    }
    model_ctx *ctx = model_ctx_new(m, (int64_t)ids.n, 1 + others);
    int64_t V = model_n_vocab(m);
    float *lg = malloc((size_t)V * ids.n * sizeof(float));
    int32_t *pos = malloc(ids.n * sizeof *pos);
    int8_t *want = malloc(ids.n);
    int64_t E = model_hparams_get(m)->n_embd;
    float *hid = mtp ? malloc((size_t)E * ids.n * sizeof(float)) : NULL;
    if (!ctx || !lg || !pos || !want || (mtp && !hid)) { fprintf(stderr, "whale logits: out of memory\n"); goto cleanup; }
    for (size_t i = 0; i < ids.n; i++) { pos[i] = (int32_t)i; want[i] = 1; }
    if (dump_dir) {
        dd.dir = dump_dir;
        if (!(dd.files = calloc(DUMP_MAX_TENSORS, sizeof *dd.files))) { fprintf(stderr, "whale logits: out of memory\n"); goto cleanup; }
        model_ctx_set_hook(ctx, dump_hook, &dd);
    }
    if (step <= 0) step = (int64_t)ids.n;
    if (others) {
        if (batched(m, ctx, &ids, others, lg, &err)) { fprintf(stderr, "whale: %s\n", err.msg); goto cleanup; }
        step = (int64_t)ids.n; /* done: the loop below has nothing left */
    }
    ctx_job jobs[LOGITS_MAX_CONTEXTS];
    pthread_t th[LOGITS_MAX_CONTEXTS];
    int started = 0;
    for (; started < contexts; started++) {
        jobs[started] = (ctx_job){m, &ids, pos, want, step, malloc((size_t)V * ids.n * sizeof(float)), 0, {0}};
        if (!jobs[started].lg || pthread_create(&th[started], NULL, ctx_job_run, &jobs[started])) {
            free(jobs[started].lg);
            fprintf(stderr, "whale logits: cannot start context %d\n", started + 1);
            break;
        }
    }
    int main_rc = others ? 0 : run_prompt(m, ctx, &ids, pos, want, step, lg, hid, &err);
    int differ = started < contexts;
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        if (jobs[i].rc) fprintf(stderr, "whale logits: context %d: %s\n", i + 1, jobs[i].err.msg), differ = 1;
        else if (!main_rc && memcmp(jobs[i].lg, lg, (size_t)V * ids.n * sizeof(float)))
            fprintf(stderr, "whale logits: context %d gave different logits\n", i + 1), differ = 1;
        free(jobs[i].lg);
    }
    if (main_rc) { fprintf(stderr, "whale: %s\n", err.msg); goto cleanup; }
    if (differ) goto cleanup;
    if (contexts) fprintf(stderr, "whale logits: %d more contexts on other threads gave the same logits bits\n", contexts);
    if (mtp) { /* row i: the state at i and token i+1 */
        size_t n = ids.n - 1;
        for (int64_t r0 = 0; r0 < (int64_t)n; r0 += step) {
            int64_t k = (int64_t)n - r0 < step ? (int64_t)n - r0 : step;
            model_batch b = {k, ids.v + 1 + r0, pos + r0, NULL, want + r0};
            if (model_mtp_forward(m, ctx, &b, hid + (size_t)r0 * (size_t)E, lg + (size_t)r0 * (size_t)V, &err)) {
                fprintf(stderr, "whale: %s\n", err.msg);
                goto cleanup;
            }
        }
        ids.n = n;
    }
    if (dd.dir) {
        int bad = dump_finish(&dd);
        dd.dir = NULL;
        if (bad) goto cleanup;
    }
    if (raw) {
        FILE *f = fopen(raw, "wb");
        if (!f || fwrite(lg, sizeof(float), (size_t)V * ids.n, f) != (size_t)V * ids.n) {
            fprintf(stderr, "whale logits: cannot write %s\n", raw);
            if (f) fclose(f);
            goto cleanup;
        }
        fclose(f);
    }
    for (size_t i = all ? 0 : ids.n - 1; i < ids.n; i++) {
        const float *row = lg + (size_t)V * i;
        printf("pos %zu (token %d):", i, ids.v[i]);
        int8_t *used = calloc((size_t)V, 1);
        for (int k = 0; k < top && k < V && used; k++) {
            int64_t best = -1;
            for (int64_t j = 0; j < V; j++) if (!used[j] && (best < 0 || row[j] > row[best])) best = j;
            used[best] = 1;
            printf("  %lld:%.4f", (long long)best, (double)row[best]);
        }
        free(used);
        printf("\n");
    }
    rc = 0;
cleanup:
    if (dd.dir) dump_finish(&dd);
    model_ctx_free(ctx);
    free(lg);
    free(pos);
    free(want);
    free(hid);
done:
    tok_ids_free(&ids);
    model_free(m);
    return rc;
}
