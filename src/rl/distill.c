/* distill.c — a teacher's verified traces as chat examples (see distill.h). */
#include "rl/distill.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* How a one-paragraph plain reply reads once re-formatted (verify.h: rl_reformat_plain). */
#define EMPTY_THINK RL_PLAIN_OPEN RL_PLAIN_CLOSE

/* One example line: the problem as the chat prompt words it, the reply as the teacher wrote it. */
static int write_example(FILE *f, int mode, const char *problem, const char *reply) {
    cJSON *j = cJSON_CreateObject(), *msgs = cJSON_AddArrayToObject(j, "messages");
    cJSON *u = cJSON_CreateObject(), *a = cJSON_CreateObject();
    char *user = rl_prompt_user_text(problem, mode);
    cJSON_AddStringToObject(u, "role", "user");
    cJSON_AddStringToObject(u, "content", user ? user : problem);
    cJSON_AddStringToObject(a, "role", "assistant");
    cJSON_AddStringToObject(a, "content", reply);
    cJSON_AddItemToArray(msgs, u);
    cJSON_AddItemToArray(msgs, a);
    char *line = cJSON_PrintUnformatted(j);
    int bad = !line || !user || fprintf(f, "%s\n", line) < 0;
    free(line), free(user);
    cJSON_Delete(j);
    return bad;
}

int rl_distill_run(whale_model *m, const rl_task *t, const rl_eval_params *p, int per_problem,
                   const char *out_path, rl_eval_progress progress, void *ctx, rl_distill_stats *st,
                   whale_err *err) {
    memset(st, 0, sizeof *st);
    int mode = rl_prompt_mode_resolve(m, p->mode);
    if (mode != RL_PROMPT_CHAT && mode != RL_PROMPT_PLAIN)
        return err_set(
            err, WHALE_E_ARG,
            "distillation writes conversations: the teacher needs a chat format and the chat "
            "or plain prompt");
    rl_eval_result r;
    int rc = rl_eval_run(m, t, p, progress, ctx, &r, err);
    if (rc) {
        rl_eval_result_free(&r);
        return rc;
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", out_path);
    FILE *f = fopen(tmp, "w");
    if (!f) rc = err_set(err, WHALE_E_IO, "%s: %m", tmp);
    st->problems = r.n, st->samples = r.n * r.samples, st->seconds = r.seconds,
    st->tokens_per_s = r.tokens_per_s;
    for (int64_t i = 0; !rc && i < r.n; i++) {
        int kept = 0;
        for (int k = 0; k < r.samples; k++) {
            const rl_sample *s = &r.s[i * r.samples + k];
            st->correct += s->v.correct, st->formatted += s->v.format_ok;
            if (!s->v.correct || !s->v.format_ok || (per_problem > 0 && kept >= per_problem))
                continue;
            if (!strncmp(s->text, EMPTY_THINK, sizeof EMPTY_THINK - 1))
                continue; /* a bare answer (plain prompt): no reasoning to learn */
            int seen = 0; /* the same reply twice teaches nothing twice */
            for (int q = 0; q < k && !seen; q++) {
                const rl_sample *o = &r.s[i * r.samples + q];
                seen = o->v.correct && o->v.format_ok && o->len == s->len &&
                       !memcmp(o->text, s->text, s->len);
            }
            if (seen) continue;
            if (write_example(f, mode, r.items[i].prompt, s->text)) {
                rc = err_set(err, WHALE_E_IO, "%s: cannot write", tmp);
                break;
            }
            kept++, st->kept++;
        }
        st->problems_kept += kept > 0;
    }
    if (f && fclose(f) && !rc) rc = err_set(err, WHALE_E_IO, "%s: %m", tmp);
    if (!rc && rename(tmp, out_path)) rc = err_set(err, WHALE_E_IO, "%s: %m", out_path);
    if (rc && f) remove(tmp);
    rl_eval_result_free(&r);
    return rc;
}
