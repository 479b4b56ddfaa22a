/* cmd_perplexity.c — `whale perplexity`: how well the model predicts a text, as a correctness
 * check users know from llama.cpp. The text is tokenized as plain text (no BOS) and cut into
 * chunks of --ctx tokens; in each chunk the second half of the tokens is scored given everything
 * before it in the chunk, so every scored token has at least ctx/2 tokens of context. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/readall.h"
#include "cli/cli.h"
#include "model/model.h"

/* Rows per forward call: bounds the logits buffer (rows x vocabulary floats). */
#define PPL_ROWS_PER_CALL 64
/* Texts for perplexity are books at most; 1 GiB bounds what a wrong path can make us read. */
#define PPL_MAX_TEXT (1u << 30)

static void usage(FILE *f) {
    fprintf(f, "usage: whale perplexity [-m MODEL] -f FILE [--ctx N] [--chunks N] [-t N] [--kv-type T]\n\n"
               "Perplexity of the model on a text file: chunks of --ctx tokens (default 512), the second\n"
               "half of each chunk scored. --chunks limits how many chunks are used.\n"
               CLI_KV_TYPE_HELP);
}

int cmd_perplexity(int argc, char **argv) {
    const char *model_path = NULL, *file = NULL;
    int64_t ctx = 512, max_chunks = -1;
    int threads = 0, kv_type = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (next && (!strcmp(a, "-m") || !strcmp(a, "--model"))) { model_path = next; i++; }
        else if (next && !strcmp(a, "-f")) { file = next; i++; }
        else if (next && !strcmp(a, "--ctx")) { ctx = atoll(next); i++; }
        else if (next && !strcmp(a, "--chunks")) { max_chunks = atoll(next); i++; }
        else if (next && !strcmp(a, "-t")) { threads = atoi(next); i++; }
        else if (!strcmp(a, "--kv-type")) { if (cli_kv_type("perplexity", next, &kv_type)) return 2; i++; }
        else { fprintf(stderr, "whale perplexity: bad option '%s'\n", a); usage(stderr); return 2; }
    }
    if (!file) { usage(stderr); return 2; }
    if (ctx < 4 || ctx % 2) { fprintf(stderr, "whale perplexity: --ctx must be an even number >= 4\n"); return 2; }
    size_t len = 0;
    FILE *fp = fopen(file, "rb");
    char *text = fp ? read_all(fp, PPL_MAX_TEXT, &len, NULL) : NULL;
    if (fp) fclose(fp);
    if (!text) { fprintf(stderr, "whale perplexity: cannot read %s (missing, unreadable or over 1 GiB)\n", file); return 1; }
    whale_err err = {0};
    model *m = NULL;
    model_opts o = {.n_threads = threads, .progress = 1, .kv_type = kv_type};
    tok_ids ids = {0};
    model_ctx *mc = NULL;
    float *lg = NULL;
    int rc = 1;
    if (model_load(&m, cli_model_path(model_path), &o, &err)) { fprintf(stderr, "whale: %s\n", err.msg); goto done; }
    if (!model_tokenizer(m)) { fprintf(stderr, "whale perplexity: the model has no tokenizer\n"); goto done; }
    if (tokenizer_encode(model_tokenizer(m), text, len, 0, &ids, &err)) { fprintf(stderr, "whale: %s: %s\n", file, err.msg); goto done; }
    int64_t n_chunks = (int64_t)ids.n / ctx;
    if (max_chunks >= 0 && n_chunks > max_chunks) n_chunks = max_chunks;
    if (n_chunks == 0) {
        fprintf(stderr, "whale perplexity: %s has %zu tokens, fewer than one chunk of %lld\n", file, ids.n, (long long)ctx);
        goto done;
    }
    int64_t V = model_n_vocab(m);
    mc = model_ctx_new(m, ctx, 1);
    lg = malloc((size_t)PPL_ROWS_PER_CALL * (size_t)V * sizeof *lg);
    if (!mc || !lg) { fprintf(stderr, "whale perplexity: out of memory\n"); goto done; }
    int32_t pos[PPL_ROWS_PER_CALL];
    int8_t want[PPL_ROWS_PER_CALL];
    double nll = 0;
    int64_t scored = 0;
    double t0 = clock_now_s();
    printf("%zu tokens, %lld chunks of %lld\n", ids.n, (long long)n_chunks, (long long)ctx);
    for (int64_t c = 0; c < n_chunks; c++) {
        const int32_t *chunk = ids.v + c * ctx;
        for (int64_t r0 = 0; r0 < ctx; r0 += PPL_ROWS_PER_CALL) {
            int64_t n = ctx - r0 < PPL_ROWS_PER_CALL ? ctx - r0 : PPL_ROWS_PER_CALL;
            int64_t n_want = 0;
            for (int64_t i = 0; i < n; i++) {
                pos[i] = (int32_t)(r0 + i);
                /* logits at position p predict token p+1; score tokens ctx/2 .. ctx-1 */
                want[i] = (int8_t)(r0 + i >= ctx / 2 - 1 && r0 + i < ctx - 1);
                n_want += want[i];
            }
            model_batch b = {n, chunk + r0, pos, NULL, want};
            if (model_forward(m, mc, &b, lg, NULL, &err)) { fprintf(stderr, "whale: %s\n", err.msg); goto done; }
            int64_t k = 0;
            for (int64_t i = 0; i < n; i++) {
                if (!want[i]) continue;
                const float *row = lg + (size_t)k++ * (size_t)V;
                float mx = row[0];
                for (int64_t j = 1; j < V; j++) mx = row[j] > mx ? row[j] : mx;
                double sum = 0;
                for (int64_t j = 0; j < V; j++) sum += exp((double)row[j] - mx);
                nll -= (double)row[chunk[r0 + i + 1]] - mx - log(sum);
                scored++;
            }
            (void)n_want;
        }
        printf("[%lld] %.4f\n", (long long)c + 1, exp(nll / (double)scored));
        fflush(stdout);
    }
    double secs = clock_now_s() - t0;
    printf("perplexity: %.4f over %lld scored tokens (%.1f tokens/s)\n", exp(nll / (double)scored), (long long)scored,
           (double)(n_chunks * ctx) / secs);
    rc = 0;
done:
    free(lg);
    model_ctx_free(mc);
    tok_ids_free(&ids);
    model_free(m);
    free(text);
    return rc;
}
