/* whale_score.c — libwhale: teacher-forced log probabilities of given tokens (the trainer's
 * GRPO and distillation need them for their policy and reference models). */
#include <math.h>
#include <stdlib.h>

#include "base/err.h"
#include "lib/whale_impl.h"

/* Rows per forward call: bounds the logits kept at once (rows x n_vocab floats). */
#define SCORE_CHUNK 64

int whale_score(const whale_model *w, const int32_t *ids, size_t n, size_t from, float *out, whale_err *err) {
    if (from < 1 || from > n) return err_set(err, WHALE_E_ARG, "scoring starts at token 1 to %zu, not %zu", n, from);
    if (!w->m) return err_set(err, WHALE_E_ARG, "%s was opened for its vocabulary only: nothing to score with", w->path);
    if (from == n) return 0;
    const model_hparams *hp = model_hparams_get(w->m);
    if (hp->n_ctx_train > 0 && (int64_t)n > hp->n_ctx_train)
        return err_set(err, WHALE_E_ARG, "%zu tokens are more than the model's context of %lld", n, (long long)hp->n_ctx_train);
    int64_t V = model_n_vocab(w->m);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return err_set(err, WHALE_E_ARG, "token %zu is %d, outside the vocabulary (0..%lld)", i, (int)ids[i], (long long)V - 1);
    model_ctx *c = model_ctx_new(w->m, (int64_t)n, 1);
    float *logits = malloc((size_t)SCORE_CHUNK * (size_t)V * sizeof *logits);
    int32_t pos[SCORE_CHUNK];
    int8_t want[SCORE_CHUNK];
    int rc = 0;
    if (!c || !logits) {
        rc = err_set(err, WHALE_E_NOMEM, "not enough memory to score %zu tokens", n);
        goto done;
    }
    /* row i's logits predict token i+1: rows from-1 .. n-2 are wanted */
    for (size_t r0 = 0; r0 + 1 < n && !rc; r0 += SCORE_CHUNK) {
        size_t k = n - 1 - r0 < SCORE_CHUNK ? n - 1 - r0 : SCORE_CHUNK;
        int any = 0;
        for (size_t i = 0; i < k; i++) {
            pos[i] = (int32_t)(r0 + i);
            want[i] = r0 + i + 1 >= from;
            any |= want[i];
        }
        if (!any) want[k - 1] = 1; /* a forward returns at least one row; ignored below */
        model_batch b = {(int64_t)k, ids + r0, pos, NULL, want};
        if ((rc = model_forward(w->m, c, &b, logits, NULL, err))) break;
        const float *row = logits;
        for (size_t i = 0; i < k; i++) {
            if (!want[i]) continue;
            size_t at = r0 + i + 1;
            if (at >= from) {
                float mx = -INFINITY;
                for (int64_t v = 0; v < V; v++) mx = row[v] > mx ? row[v] : mx;
                double sum = 0;
                for (int64_t v = 0; v < V; v++) sum += exp((double)(row[v] - mx));
                int32_t t = ids[at];
                out[at - from] = (float)((double)row[t] - mx - log(sum));
            }
            row += V;
        }
    }
done:
    free(logits);
    model_ctx_free(c);
    return rc;
}
