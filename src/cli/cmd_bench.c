/* cmd_bench.c — `whale bench`: prompt-processing and generation speed in the form llama.cpp's
 * llama-bench uses (tests pp512, tg128, "tg128 @ d4096"; mean ± sd over repetitions; the same
 * JSON field names), plus what the speed means: the bytes one generated token reads (weights and
 * KV cache, model/footprint.c), the machine's memory read bandwidth (kernels/membw.h, probed
 * between repetitions, median) and generation speed as a fraction of the bound they set.
 *
 * Each combination of -t, -d, -p and -n is one test. A pp test runs a prompt of p seeded random
 * token ids in one forward call after d positions already in the cache; a tg test, after d
 * positions, decodes n seeded random tokens one forward call each (only the forward calls are
 * timed). The depth is filled once per depth with an untimed prefill of seeded random tokens;
 * the tests at one depth only overwrite positions past it, so the prefix is kept and a deeper
 * depth only prefills what it adds. Owns the argument parsing, the test loop and the printing;
 * the model, the cache and the probe are other modules'. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/progress.h"
#include "base/threadpool.h"
#include "cli/cli.h"
#include "kernels/isa.h"
#include "kernels/membw.h"
#include "model/model.h"

/* Values per list option (-p 1,2,3): a bench of more combinations is a script's job. */
#define BENCH_MAX_LIST 16
/* Per -p/-n/-d value: positions are int32 and the cache is F32; 1M positions already needs
 * tens of GiB of cache on real models. */
#define BENCH_MAX_TOKENS (1 << 20)
#define BENCH_MAX_THREADS 1024
#define BENCH_MAX_REPS 1000
/* Rows per forward call while filling the depth: a progress step of a few seconds at most. */
#define BENCH_FILL_CHUNK 512
/* A warmup run is the test cut to these sizes: enough to wake the threads and the caches. */
#define BENCH_WARMUP_PP 32
#define BENCH_WARMUP_TG 4
/* Passes per bandwidth probe (its fastest is kept). */
#define BENCH_PROBE_PASSES 2
/* The cache may take at most half of physical memory; beyond that the run would swap or die. */
#define BENCH_KV_RAM_DIVISOR 2

typedef struct int_list {
    int64_t v[BENCH_MAX_LIST];
    int n;
} int_list;

typedef struct bench_opts {
    const char *model, *lora; /* --lora: an adapter applied to the model */
    int_list p, n, d, t;
    int reps, warmup, json, fill_random, kv_type;
    uint64_t seed;
    size_t bw_bytes; /* 0: membw's default */
} bench_opts;

typedef struct bench_result {
    char test[48];
    int64_t n_prompt, n_gen, n_depth;
    int n_threads;
    double *ns; /* (reps) one sample per repetition */
    double avg_ns, sd_ns, avg_ts, sd_ts;
    double bytes_per_token, kv_bytes; /* tg: read per generated token, and the KV part of it */
} bench_result;

/* What is known about the model once it is loaded (the first thread count). */
typedef struct bench_model_info {
    char file[256], type[200];
    int64_t n_params;
    size_t size, weight_bytes, kv_bytes, kv_bytes_mtp;
} bench_model_info;

typedef struct bench_run {
    const bench_opts *o;
    bench_result *res;
    int n_res;
    double *probes; /* bandwidth probes, GB/s */
    int n_probes, cap_probes;
    membw *bw;
    threadpool *probe_tp;
    bench_model_info info;
    int tty;
} bench_run;

static void usage(FILE *f) {
    fprintf(f, "usage: whale bench [-m MODEL] [-p 512] [-n 128] [-d 0] [-t N] [-r 5] [-w 1] [--json]\n\n"
               "Prompt-processing (pp) and generation (tg) speed like llama-bench, with the bytes each generated\n"
               "token reads and the machine's memory read bandwidth, so tg speed shows as a share of its limit.\n"
               "Lists are comma-separated (-d 0,4096,16384); each combination of -t, -d, -p, -n is one test.\n"
               "  -m, --model MODEL     .gguf file or checkpoint directory (default: the default model)\n"
               "  -p, --n-prompt LIST   prompt tokens per pp test, one forward call (default 512; 0: no pp test)\n"
               "  -n, --n-gen LIST      tokens per tg test, one forward call each (default 128; 0: no tg test)\n"
               "  -d, --n-depth LIST    positions already in the KV cache before the test (default 0), filled\n"
               "                        once per depth by an untimed prefill\n"
               "  -t, --threads LIST    threads (default: one per CPU, here %ld); the model is loaded once per value\n"
               "  -r, --repetitions N   timed runs per test (default 5): t/s is their mean ± sample sd\n"
               "  -w, --warmup N        untimed short runs before each test (default 1)\n"
               "  --json, -o json       one JSON object: bytes_per_token, kv_bytes_per_token, mem_bandwidth_gbs,\n"
               "                        results[] with llama-bench's fields (test, n_prompt, n_gen, n_depth,\n"
               "                        n_threads, avg_ts, stddev_ts, samples_ts, avg_ns, ...; tg: bw_fraction)\n"
               "  --seed S              seed of the random token ids (default 1234)\n"
               "  --lora PATH           apply a LoRA adapter (PEFT directory) to the model\n"
               "  --depth-fill MODE     prefill (default) or random: fill the depth with random cache values\n"
               "                        instead of running it (same attention cost, no wait; values unrealistic)\n"
               "  --bw-mib N            bandwidth probe buffer in MiB (default: max(1 GiB, 4 x L3), <= RAM/8)\n"
               CLI_KV_TYPE_HELP "\n"
               "bytes_per_token: weight bytes one decode step reads (one embedding row, every dense matrix, the\n"
               "n_expert_used routed and the shared experts of each MoE layer, norms, the output matrix); a tg\n"
               "test adds the KV cache it reads on average (kv_bytes_per_token x (depth + (n+1)/2)).\n"
               "bw_fraction = bytes per token x tokens/s / bandwidth. Progress goes to stderr.\n",
            sysconf(_SC_NPROCESSORS_ONLN));
}

/* ---- arguments ------------------------------------------------------------------------ */

/* "512" or "0,4096,16384" into l: every value in [lo, hi]. 0, or -1 with a message printed. */
static int parse_list(const char *opt, const char *s, int64_t lo, int64_t hi, int_list *l) {
    l->n = 0;
    const char *p = s;
    for (;;) {
        char *end;
        if (*p < '0' || *p > '9') break;
        long long v = strtoll(p, &end, 10);
        if (v < lo || v > hi) {
            fprintf(stderr, "whale bench: %s: %lld is out of range [%lld, %lld]\n", opt, v, (long long)lo, (long long)hi);
            return -1;
        }
        if (l->n == BENCH_MAX_LIST) {
            fprintf(stderr, "whale bench: %s: more than %d values\n", opt, BENCH_MAX_LIST);
            return -1;
        }
        l->v[l->n++] = v;
        p = end;
        if (*p == 0) return 0;
        if (*p != ',') break;
        p++;
    }
    fprintf(stderr, "whale bench: %s: '%s' is not a comma-separated list of whole numbers\n", opt, s);
    return -1;
}

static int parse_int(const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out) {
    int_list l;
    if (parse_list(opt, s, lo, hi, &l)) return -1;
    if (l.n != 1) {
        fprintf(stderr, "whale bench: %s takes one number\n", opt);
        return -1;
    }
    *out = l.v[0];
    return 0;
}

static int is(const char *a, const char *s1, const char *s2) { return !strcmp(a, s1) || (s2 && !strcmp(a, s2)); }

/* Returns 0 to run, 1 after --help, 2 after a message about a bad argument. */
static int parse_args(int argc, char **argv, bench_opts *o) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    *o = (bench_opts){.reps = 5, .warmup = 1, .seed = 1234};
    o->p = (int_list){{512}, 1};
    o->n = (int_list){{128}, 1};
    o->d = (int_list){{0}, 1};
    o->t = (int_list){{cpus > 0 ? cpus : 1}, 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t x = 0;
        int rc = 0;
        if (is(a, "-h", "--help")) { usage(stdout); return 1; }
        if (is(a, "--json", NULL)) { o->json = 1; continue; }
        if (!v) {
            fprintf(stderr, "whale bench: %s '%s'\n", a[0] == '-' ? "missing value or unknown option" : "unexpected argument", a);
            return 2;
        }
        i++;
        if (is(a, "-m", "--model")) o->model = v;
        else if (is(a, "-p", "--n-prompt")) rc = parse_list(a, v, 0, BENCH_MAX_TOKENS, &o->p);
        else if (is(a, "-n", "--n-gen")) rc = parse_list(a, v, 0, BENCH_MAX_TOKENS, &o->n);
        else if (is(a, "-d", "--n-depth")) rc = parse_list(a, v, 0, BENCH_MAX_TOKENS, &o->d);
        else if (is(a, "-t", "--threads")) rc = parse_list(a, v, 1, BENCH_MAX_THREADS, &o->t);
        else if (is(a, "-r", "--repetitions")) { rc = parse_int(a, v, 1, BENCH_MAX_REPS, &x); o->reps = (int)x; }
        else if (is(a, "-w", "--warmup")) { rc = parse_int(a, v, 0, 100, &x); o->warmup = (int)x; }
        else if (is(a, "--seed", NULL)) { rc = parse_int(a, v, 0, INT64_MAX, &x); o->seed = (uint64_t)x; }
        else if (is(a, "--bw-mib", NULL)) { rc = parse_int(a, v, 4, 1 << 20, &x); o->bw_bytes = (size_t)x << 20; }
        else if (is(a, "-o", "--output") && (!strcmp(v, "json") || !strcmp(v, "md"))) o->json = !strcmp(v, "json");
        else if (is(a, "--depth-fill", NULL) && (!strcmp(v, "prefill") || !strcmp(v, "random"))) o->fill_random = !strcmp(v, "random");
        else if (is(a, "--kv-type", NULL)) rc = cli_kv_type("bench", v, &o->kv_type);
        else if (is(a, "--lora", NULL)) o->lora = v;
        else {
            fprintf(stderr, "whale bench: bad option '%s %s' (see whale bench --help)\n", a, v);
            return 2;
        }
        if (rc) return 2;
    }
    int any_p = 0, any_n = 0;
    for (int i = 0; i < o->p.n; i++) any_p |= o->p.v[i] > 0;
    for (int i = 0; i < o->n.n; i++) any_n |= o->n.v[i] > 0;
    if (!any_p && !any_n) {
        fprintf(stderr, "whale bench: nothing to run: -p and -n are all 0\n");
        return 2;
    }
    return 0;
}

static int64_t list_max(const int_list *l) {
    int64_t m = 0;
    for (int i = 0; i < l->n; i++) m = l->v[i] > m ? l->v[i] : m;
    return m;
}

/* ---- helpers -------------------------------------------------------------------------- */

static double now_ns(void) { return clock_now_s() * 1e9; }

/* Token id i of stream `stream` (a splitmix64 hash, so any position can be had directly). */
static int32_t rand_token(uint64_t seed, uint64_t stream, uint64_t i, int64_t n_vocab) {
    uint64_t x = seed ^ (stream * 0xd1342543de82ef95ull) ^ (i * 0x9e3779b97f4a7c15ull);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    x ^= x >> 31;
    return (int32_t)(x % (uint64_t)n_vocab);
}

/* Status line on stderr: redrawn in place on a terminal, one line each otherwise (only when
 * `always`, so logs keep the long steps and skip the chatter). */
static void note(const bench_run *r, int always, const char *fmt, ...) WHALE_PRINTF(3, 4);
static void note(const bench_run *r, int always, const char *fmt, ...) {
    if (!r->tty && !always) return;
    va_list ap;
    va_start(ap, fmt);
    if (r->tty) fputs("\r\033[K", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (!r->tty) fputc('\n', stderr);
    fflush(stderr);
}

static void note_clear(const bench_run *r) {
    if (r->tty) fputs("\r\033[K", stderr);
}

static int probe(bench_run *r) {
    if (r->n_probes == r->cap_probes) {
        int cap = r->cap_probes ? 2 * r->cap_probes : 32;
        double *p = realloc(r->probes, (size_t)cap * sizeof *p);
        if (!p) return -1;
        r->probes = p;
        r->cap_probes = cap;
    }
    r->probes[r->n_probes++] = membw_probe(r->bw, r->probe_tp, BENCH_PROBE_PASSES);
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n) {
    if (n <= 0) return 0;
    double *s = malloc((size_t)n * sizeof *s);
    if (!s) return v[0];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return m;
}

/* Mean and sample standard deviation (0 for one sample). */
static void mean_sd(const double *v, int n, double *mean, double *sd) {
    double s = 0, q = 0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) q += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0;
}

/* ---- one loaded model ------------------------------------------------------------------ */

typedef struct bench_ctx {
    model *m;
    model_ctx *ctx;
    int32_t *tok, *pos; /* (n_ctx) batch rows */
    float *logits;      /* (n_vocab) the last row's */
    int64_t n_vocab;
    int64_t filled; /* positions [0, filled) of sequence 0 hold the depth prefix */
} bench_ctx;

/* Token streams: the depth prefix, then one per (test kind, repetition). */
enum { STREAM_DEPTH = 0, STREAM_PP = 1, STREAM_TG = 2 };

/* One forward call over positions [p0, p0 + n) with tokens i of `stream`. Returns its time in
 * ns, or -1 with err set. */
static double forward_rows(bench_ctx *c, uint64_t seed, uint64_t stream, int64_t p0, int64_t n, whale_err *err) {
    for (int64_t i = 0; i < n; i++) {
        c->pos[i] = (int32_t)(p0 + i);
        c->tok[i] = rand_token(seed, stream, (uint64_t)(p0 + i), c->n_vocab);
    }
    model_batch b = {n, c->tok, c->pos, NULL, NULL};
    double t0 = now_ns();
    if (model_forward(c->m, c->ctx, &b, c->logits, NULL, err)) return -1;
    return now_ns() - t0;
}

/* Make positions [0, d) hold the depth prefix: prefill what is missing (untimed, with progress),
 * or random cache values with --depth-fill random. 0, or -1 with a message printed. */
static int fill_depth(bench_run *r, bench_ctx *c, int64_t d) {
    whale_err err = {0};
    if (c->filled >= d) return 0;
    if (r->o->fill_random) {
        if (kv_cache_fill_random(model_ctx_kv(c->ctx), 0, d, r->o->seed, &err)) goto fail;
        c->filled = d;
        return 0;
    }
    int64_t todo = d - c->filled;
    note(r, todo >= 4 * BENCH_FILL_CHUNK, "whale bench: filling depth %lld: prefill of %lld tokens (untimed)",
         (long long)d, (long long)todo);
    progress bar;
    char label[64];
    snprintf(label, sizeof label, "depth %lld", (long long)d);
    if (r->tty) progress_begin(&bar, label, (double)todo, 0);
    double t0 = now_ns();
    while (c->filled < d) {
        int64_t n = d - c->filled < BENCH_FILL_CHUNK ? d - c->filled : BENCH_FILL_CHUNK;
        if (forward_rows(c, r->o->seed, STREAM_DEPTH, c->filled, n, &err) < 0) goto fail;
        c->filled += n;
        if (r->tty) progress_update(&bar, (double)(todo - (d - c->filled)));
    }
    if (r->tty) progress_end(&bar);
    double s = (now_ns() - t0) * 1e-9;
    note(r, todo >= 4 * BENCH_FILL_CHUNK, "whale bench: depth %lld filled in %.1f s (%.1f tokens/s)", (long long)d, s,
         (double)todo / s);
    return 0;
fail:
    note_clear(r);
    fprintf(stderr, "whale bench: filling depth %lld: %s\n", (long long)d, err.msg);
    return -1;
}

/* One run of a test: pp (n_prompt > 0) or tg. Returns the timed ns, or -1 with err set. */
static double run_once(const bench_run *r, bench_ctx *c, int64_t d, int64_t n_prompt, int64_t n_gen, uint64_t rep,
                       whale_err *err) {
    if (n_prompt > 0) return forward_rows(c, r->o->seed, STREAM_PP + 4 * rep, d, n_prompt, err);
    double ns = 0;
    for (int64_t i = 0; i < n_gen; i++) {
        double t = forward_rows(c, r->o->seed, STREAM_TG + 4 * rep, d + i, 1, err);
        if (t < 0) return -1;
        ns += t;
    }
    return ns;
}

static void test_name(char *buf, size_t cap, int64_t d, int64_t n_prompt, int64_t n_gen) {
    int k = snprintf(buf, cap, n_prompt > 0 ? "pp%lld" : "tg%lld", (long long)(n_prompt > 0 ? n_prompt : n_gen));
    if (d > 0) snprintf(buf + k, cap - (size_t)k, " @ d%lld", (long long)d);
}

static void print_row(const bench_run *r, const bench_result *x) {
    char sz[32];
    double p = (double)r->info.n_params;
    printf("| %s | %s | %.2f %s | %d | %s | %.2f ± %.2f |\n", r->info.file, cli_bytes((double)r->info.size, sz, sizeof sz),
           p >= 1e9 ? p / 1e9 : p / 1e6, p >= 1e9 ? "B" : "M", x->n_threads, x->test, x->avg_ts, x->sd_ts);
    fflush(stdout);
}

/* Run one test (warmup, then o->reps timed runs with a bandwidth probe after each) into x.
 * 0, or -1 with a message printed. */
static int run_test(bench_run *r, bench_ctx *c, int threads, int64_t d, int64_t n_prompt, int64_t n_gen,
                    bench_result *x) {
    const bench_opts *o = r->o;
    whale_err err = {0};
    *x = (bench_result){.n_prompt = n_prompt, .n_gen = n_gen, .n_depth = d, .n_threads = threads};
    test_name(x->test, sizeof x->test, d, n_prompt, n_gen);
    x->ns = calloc((size_t)o->reps, sizeof *x->ns);
    double *ts = calloc((size_t)o->reps, sizeof *ts);
    if (!x->ns || !ts) {
        free(ts);
        fprintf(stderr, "whale bench: out of memory\n");
        return -1;
    }
    int64_t wp = n_prompt < BENCH_WARMUP_PP ? n_prompt : BENCH_WARMUP_PP;
    int64_t wg = n_gen < BENCH_WARMUP_TG ? n_gen : BENCH_WARMUP_TG;
    for (int w = 0; w < o->warmup; w++) {
        note(r, 0, "whale bench: %s, %d threads: warmup", x->test, threads);
        if (run_once(r, c, d, n_prompt > 0 ? wp : 0, wg, 1000 + (uint64_t)w, &err) < 0) goto fail;
    }
    int64_t n_tok = n_prompt > 0 ? n_prompt : n_gen;
    for (int k = 0; k < o->reps; k++) {
        note(r, 0, "whale bench: %s, %d threads: run %d/%d", x->test, threads, k + 1, o->reps);
        double ns = run_once(r, c, d, n_prompt, n_gen, (uint64_t)k, &err);
        if (ns < 0) goto fail;
        x->ns[k] = ns;
        ts[k] = (double)n_tok * 1e9 / (ns > 0 ? ns : 1);
        note(r, 0, "whale bench: %s, %d threads: probing memory bandwidth", x->test, threads);
        if (probe(r)) {
            err_set(&err, WHALE_E_NOMEM, "out of memory");
            goto fail;
        }
    }
    note_clear(r);
    mean_sd(x->ns, o->reps, &x->avg_ns, &x->sd_ns);
    mean_sd(ts, o->reps, &x->avg_ts, &x->sd_ts);
    free(ts);
    if (n_gen > 0 && n_prompt == 0) {
        /* token i attends to d + i + 1 positions; bytes are linear in that, so the mean over the
         * run is the mean of the first and the last token's */
        x->kv_bytes = 0.5 * (double)((d + 1) + (d + n_gen)) * (double)r->info.kv_bytes; /* as the cache stores rows */
        x->bytes_per_token = (double)r->info.weight_bytes + x->kv_bytes;
    }
    c->filled = c->filled < d ? c->filled : d; /* the test wrote positions from d on */
    if (!o->json) print_row(r, x);
    return 0;
fail:
    free(ts);
    free(x->ns);
    x->ns = NULL;
    note_clear(r);
    fprintf(stderr, "whale bench: %s: %s\n", x->test, err.msg);
    return -1;
}

static void fill_info(bench_run *r, const model *m, const char *path, int kv_type) {
    bench_model_info *in = &r->info;
    /* the file's own name: -m default is a link to the real file */
    char *real = realpath(path, NULL);
    const char *name = real ? real : path, *slash = strrchr(name, '/');
    snprintf(in->file, sizeof in->file, "%s", slash && slash[1] ? slash + 1 : name);
    free(real);
    const model_hparams *hp = model_hparams_get(m);
    if (hp->name[0]) snprintf(in->type, sizeof in->type, "%s (%s)", hp->arch_name, hp->name);
    else snprintf(in->type, sizeof in->type, "%s", hp->arch_name);
    model_file_totals(m, &in->n_params, &in->size);
    in->weight_bytes = model_weight_bytes_per_token(m);
    in->kv_bytes = model_kv_bytes_per_token(hp, kv_type);
    in->kv_bytes_mtp = model_kv_bytes_per_token_mtp(hp, kv_type);
}

/* Load the model with `threads` threads and run every test for that thread count. 0 or -1. */
static int run_threads(bench_run *r, const char *path, int threads) {
    const bench_opts *o = r->o;
    whale_err err = {0};
    bench_ctx c = {0};
    int rc = -1;
    note(r, 1, "whale bench: loading %s (%d threads)", path, threads);
    model_opts mo = {.n_threads = threads, .progress = 1, .kv_type = o->kv_type, .lora = o->lora};
    if (model_load(&c.m, path, &mo, &err)) {
        note_clear(r);
        fprintf(stderr, "whale bench: %s\n", err.msg);
        return -1;
    }
    if (!r->info.file[0]) {
        fill_info(r, c.m, path, o->kv_type);
        if (!o->json)
            printf("| model | size | params | threads | test | t/s |\n| --- | ---: | ---: | ---: | ---: | ---: |\n");
    }
    int64_t most = list_max(&o->p) > list_max(&o->n) ? list_max(&o->p) : list_max(&o->n);
    int64_t n_ctx = list_max(&o->d) + most;
    size_t kv_need = (r->info.kv_bytes + (model_has_mtp(c.m) ? r->info.kv_bytes_mtp : 0)) * (size_t)n_ctx;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    char b1[32], b2[32];
    if (pages > 0 && page > 0 && kv_need > (size_t)pages * (size_t)page / BENCH_KV_RAM_DIVISOR) {
        fprintf(stderr, "whale bench: a KV cache of %lld positions needs %s, more than half of this machine's %s\n",
                (long long)n_ctx, cli_bytes((double)kv_need, b1, sizeof b1),
                cli_bytes((double)pages * (double)page, b2, sizeof b2));
        goto done;
    }
    const model_hparams *hp = model_hparams_get(c.m);
    c.n_vocab = model_n_vocab(c.m) < hp->n_vocab ? model_n_vocab(c.m) : hp->n_vocab;
    c.ctx = model_ctx_new(c.m, n_ctx, 1);
    c.tok = malloc((size_t)n_ctx * sizeof *c.tok);
    c.pos = malloc((size_t)n_ctx * sizeof *c.pos);
    c.logits = malloc((size_t)model_n_vocab(c.m) * sizeof *c.logits);
    if (!c.ctx || !c.tok || !c.pos || !c.logits) {
        fprintf(stderr, "whale bench: out of memory for a KV cache of %lld positions (%s)\n", (long long)n_ctx,
                cli_bytes((double)kv_need, b1, sizeof b1));
        goto done;
    }
    for (int di = 0; di < o->d.n; di++) {
        int64_t d = o->d.v[di];
        for (int k = 0; k < o->p.n + o->n.n; k++) {
            int64_t np = k < o->p.n ? o->p.v[k] : 0, ng = k < o->p.n ? 0 : o->n.v[k - o->p.n];
            if (np == 0 && ng == 0) continue;
            if (fill_depth(r, &c, d) || run_test(r, &c, threads, d, np, ng, &r->res[r->n_res])) goto done;
            r->n_res++;
        }
    }
    rc = 0;
done:
    free(c.tok);
    free(c.pos);
    free(c.logits);
    model_ctx_free(c.ctx);
    model_free(c.m);
    return rc;
}

/* ---- output --------------------------------------------------------------------------- */

static double bw_fraction(const bench_result *x, double bw_gbs) {
    return bw_gbs > 0 ? x->bytes_per_token * x->avg_ts / (bw_gbs * 1e9) : 0;
}

static void print_summary(const bench_run *r, double bw) {
    char b1[32], b2[32], b3[32];
    const bench_model_info *in = &r->info;
    printf("\nweights read per generated token: %s (%llu bytes) of %s in the file; KV cache: %llu bytes per position",
           cli_bytes((double)in->weight_bytes, b1, sizeof b1), (unsigned long long)in->weight_bytes,
           cli_bytes((double)in->size, b2, sizeof b2), (unsigned long long)in->kv_bytes);
    if (in->kv_bytes_mtp) printf(" (+%llu in the MTP layers)", (unsigned long long)in->kv_bytes_mtp);
    printf("\nkernels: %s (this CPU has %s; WHALE_ISA=scalar|avx2|avx512 lowers it%s)", isa_name(isa_level_get()),
           isa_name(isa_detected()), isa_env_unknown() ? "; its value here names no level and was ignored" : "");
    printf("\nmemory read bandwidth: %.2f GB/s (median of %d probes, %d threads reading %s)\n", bw, r->n_probes,
           tp_threads(r->probe_tp), cli_bytes((double)membw_bytes(r->bw), b3, sizeof b3));
    int any = 0;
    for (int i = 0; i < r->n_res; i++) {
        const bench_result *x = &r->res[i];
        if (x->n_gen == 0) continue;
        if (!any++) printf("\n| threads | test | bytes/token | of which KV | GB/s read | of bandwidth |\n"
                           "| ---: | ---: | ---: | ---: | ---: | ---: |\n");
        printf("| %d | %s | %s | %s | %.2f | %.1f%% |\n", x->n_threads, x->test,
               cli_bytes(x->bytes_per_token, b1, sizeof b1), cli_bytes(x->kv_bytes, b2, sizeof b2),
               x->bytes_per_token * x->avg_ts / 1e9, 100 * bw_fraction(x, bw));
    }
}

static cJSON *json_samples(const double *v, int n, int ts, int64_t n_tok) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(ts ? (double)n_tok * 1e9 / (v[i] > 0 ? v[i] : 1) : v[i]));
    return a;
}

static int print_json(const bench_run *r, double bw) {
    const bench_model_info *in = &r->info;
    cJSON *j = cJSON_CreateObject(), *res = cJSON_CreateArray();
    cJSON_AddStringToObject(j, "model_filename", in->file);
    cJSON_AddStringToObject(j, "model_type", in->type);
    cJSON_AddNumberToObject(j, "model_size", (double)in->size);
    cJSON_AddNumberToObject(j, "model_n_params", (double)in->n_params);
    cJSON_AddNumberToObject(j, "bytes_per_token", (double)in->weight_bytes);
    cJSON_AddNumberToObject(j, "kv_bytes_per_token", (double)in->kv_bytes);
    cJSON_AddNumberToObject(j, "kv_bytes_per_token_mtp", (double)in->kv_bytes_mtp);
    cJSON_AddStringToObject(j, "isa", isa_name(isa_level_get()));
    cJSON_AddNumberToObject(j, "mem_bandwidth_gbs", bw);
    cJSON_AddItemToObject(j, "mem_bandwidth_probes_gbs", json_samples(r->probes, r->n_probes, 0, 0));
    cJSON_AddNumberToObject(j, "mem_bandwidth_buffer_bytes", (double)membw_bytes(r->bw));
    cJSON_AddNumberToObject(j, "mem_bandwidth_threads", tp_threads(r->probe_tp));
    for (int i = 0; i < r->n_res; i++) {
        const bench_result *x = &r->res[i];
        cJSON *e = cJSON_CreateObject();
        int64_t n_tok = x->n_prompt > 0 ? x->n_prompt : x->n_gen;
        cJSON_AddStringToObject(e, "test", x->test);
        cJSON_AddNumberToObject(e, "n_prompt", (double)x->n_prompt);
        cJSON_AddNumberToObject(e, "n_gen", (double)x->n_gen);
        cJSON_AddNumberToObject(e, "n_depth", (double)x->n_depth);
        cJSON_AddNumberToObject(e, "n_threads", x->n_threads);
        cJSON_AddNumberToObject(e, "avg_ns", x->avg_ns);
        cJSON_AddNumberToObject(e, "stddev_ns", x->sd_ns);
        cJSON_AddNumberToObject(e, "avg_ts", x->avg_ts);
        cJSON_AddNumberToObject(e, "stddev_ts", x->sd_ts);
        cJSON_AddItemToObject(e, "samples_ns", json_samples(x->ns, r->o->reps, 0, n_tok));
        cJSON_AddItemToObject(e, "samples_ts", json_samples(x->ns, r->o->reps, 1, n_tok));
        if (x->n_gen > 0) {
            cJSON_AddNumberToObject(e, "bytes_per_token", x->bytes_per_token);
            cJSON_AddNumberToObject(e, "kv_bytes_read_per_token", x->kv_bytes);
            cJSON_AddNumberToObject(e, "read_gbs", x->bytes_per_token * x->avg_ts / 1e9);
            cJSON_AddNumberToObject(e, "bw_fraction", bw_fraction(x, bw));
        }
        cJSON_AddItemToArray(res, e);
    }
    cJSON_AddItemToObject(j, "results", res);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) return -1;
    puts(s);
    cJSON_free(s);
    return 0;
}

int cmd_bench(int argc, char **argv) {
    bench_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc == 1 ? 0 : 2;
    const char *path = cli_model_path(o.model);
    if (access(path, R_OK)) {
        fprintf(stderr, "whale bench: cannot read model '%s'\n", path);
        return 1;
    }
    bench_run r = {.o = &o, .tty = isatty(2)};
    int n_tests = 0;
    for (int k = 0; k < o.p.n; k++) n_tests += o.p.v[k] > 0;
    for (int k = 0; k < o.n.n; k++) n_tests += o.n.v[k] > 0;
    n_tests *= o.d.n * o.t.n;
    r.res = calloc((size_t)n_tests, sizeof *r.res);
    r.probe_tp = tp_new((int)list_max(&o.t));
    r.bw = membw_init(o.bw_bytes);
    rc = 1;
    if (!r.res || !r.probe_tp || !r.bw) {
        fprintf(stderr, "whale bench: out of memory (bandwidth probe buffer of %zu MiB)\n",
                (o.bw_bytes ? o.bw_bytes : membw_default_bytes()) >> 20);
        goto done;
    }
    for (int i = 0; i < o.t.n; i++)
        if (run_threads(&r, path, (int)o.t.v[i])) goto done;
    double bw = median(r.probes, r.n_probes);
    if (o.json) {
        if (print_json(&r, bw)) goto done;
    } else {
        print_summary(&r, bw);
    }
    rc = 0;
done:
    for (int i = 0; i < r.n_res; i++) free(r.res[i].ns);
    free(r.res);
    free(r.probes);
    membw_free(r.bw);
    tp_free(r.probe_tp);
    return rc;
}
