/* cmd_train_plot.c — `whale train plot RUN_DIR [-o DIR]`: a run's metrics.jsonl drawn as PNG
 * charts by gnuplot (Debian's gnuplot-nox: a small C program with a cairo PNG terminal and no
 * desktop or Python behind it; scripts/setup installs it). One chart per quantity the run
 * recorded: loss.png (loss and val_loss), lr.png, tokens_per_s.png, and when present mfu.png,
 * expert_load.png, mtp_loss.png. The numbers go to gnuplot as a table file beside a script,
 * both removed afterwards. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"

/* The metrics' columns, in the table's order (column 1 is the step): whale train's, then whale
 * grpo's (which has no loss). */
static const char *const fields[] = {"loss", "val_loss", "lr", "tokens_per_s", "mfu", "expert_load", "mtp_loss",
                                     "reward", "accuracy", "heldout_accuracy", "response_len", "kl", "clip_frac",
                                     "format"};
#define N_FIELDS (sizeof fields / sizeof fields[0])
/* Recorded only on some steps (evaluations): drawn as points joined where steps are consecutive. */
static int sparse(int field) { return field == 1 || field == 9; }

typedef struct chart {
    const char *file, *title, *ylabel;
    int cols[2]; /* fields' indices drawn (-1: none) */
    int logscale;
} chart;

static const chart charts[] = {
    {"loss.png", "loss", "cross-entropy (nats)", {0, 1}, 0},
    {"lr.png", "learning rate", "lr", {2, -1}, 0},
    {"tokens_per_s.png", "throughput", "tokens/s", {3, -1}, 0},
    {"mfu.png", "model FLOPs utilization", "MFU", {4, -1}, 0},
    {"expert_load.png", "expert load (largest / mean)", "load", {5, -1}, 0},
    {"mtp_loss.png", "multi-token prediction loss", "cross-entropy (nats)", {6, -1}, 0},
    {"reward.png", "reward and accuracy of the sampled replies", "mean over the replies of a step", {7, 8}, 0},
    {"heldout.png", "held-out accuracy (greedy)", "accuracy", {9, -1}, 0},
    {"response_len.png", "reply length", "tokens", {10, -1}, 0},
    {"kl.png", "KL to the reference (k3 estimate)", "nats per token", {11, -1}, 0},
    {"clip_frac.png", "clipped share of tokens", "share", {12, -1}, 0},
    {"format.png", "think-then-answer format kept", "share of replies", {13, -1}, 0},
};

/* Run gnuplot on script; 0, or 1 with the reason printed. */
static int run_gnuplot(const char *script) {
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "whale train plot: fork: %s\n", strerror(errno));
        return 1;
    }
    if (pid == 0) {
        execlp("gnuplot", "gnuplot", script, (char *)NULL);
        _exit(errno == ENOENT ? 127 : 126);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127) {
        fprintf(stderr, "whale train plot: gnuplot is not installed (Debian: apt-get install gnuplot-nox; or scripts/setup)\n");
        return 1;
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st)) {
        fprintf(stderr, "whale train plot: gnuplot failed (status %d; it needs the pngcairo terminal)\n",
                WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        return 1;
    }
    return 0;
}

int cmd_train_plot(int argc, char **argv) {
    const char *run = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: whale train plot RUN_DIR [-o DIR]\n\n"
                   "Draws RUN_DIR/metrics.jsonl as PNG charts into DIR (default RUN_DIR) with gnuplot:\n"
                   "loss.png (loss and val_loss), lr.png, tokens_per_s.png, and mfu.png, expert_load.png,\n"
                   "mtp_loss.png when the run recorded those; for a `whale grpo` run reward.png (reward and\n"
                   "accuracy), heldout.png, response_len.png, kl.png, clip_frac.png, format.png, lr.png.\n");
            return 0;
        }
        if (!strcmp(argv[i], "-o") && i + 1 < argc) out = argv[++i];
        else if (argv[i][0] != '-' && !run) run = argv[i];
        else {
            fprintf(stderr, "whale train plot: bad argument '%s' (usage: whale train plot RUN_DIR [-o DIR])\n", argv[i]);
            return 2;
        }
    }
    if (!run) {
        fprintf(stderr, "whale train plot: usage: whale train plot RUN_DIR [-o DIR]\n");
        return 2;
    }
    if (!out) out = run;
    if (strchr(out, '\'') || strchr(out, '\n')) { /* the paths are quoted in gnuplot's script */
        fprintf(stderr, "whale train plot: %s: a quote or newline in the output path is not supported\n", out);
        return 2;
    }
    char path[4300], table[4300], script[4300];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "whale train plot: %s: %s (a run directory of whale train)\n", path, strerror(errno));
        return 1;
    }
    if (mkdir(out, 0755) && errno != EEXIST) {
        fprintf(stderr, "whale train plot: %s: %s\n", out, strerror(errno));
        fclose(f);
        return 1;
    }
    snprintf(table, sizeof table, "%s/.metrics.%d.tsv", out, (int)getpid());
    snprintf(script, sizeof script, "%s/.plot.%d.gp", out, (int)getpid());
    FILE *t = fopen(table, "w");
    if (!t) {
        fprintf(stderr, "whale train plot: %s: %s\n", table, strerror(errno));
        fclose(f);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    long rows = 0, ln = 0;
    int seen[N_FIELDS] = {0}, rc = 0;
    while (getline(&line, &cap, f) >= 0) {
        ln++;
        if (!line[strspn(line, " \t\r\n")]) continue;
        cJSON *j = cJSON_Parse(line);
        const cJSON *st = cJSON_GetObjectItem(j, "step");
        if (!cJSON_IsNumber(st)) {
            fprintf(stderr, "whale train plot: %s:%ld: not a metrics line (a JSON object with \"step\")\n", path, ln);
            cJSON_Delete(j);
            rc = 1;
            break;
        }
        fprintf(t, "%.0f", st->valuedouble);
        for (size_t k = 0; k < N_FIELDS; k++) {
            const cJSON *v = cJSON_GetObjectItem(j, fields[k]);
            if (cJSON_IsNumber(v) && isfinite(v->valuedouble)) fprintf(t, "\t%.9g", v->valuedouble), seen[k] = 1;
            else fprintf(t, "\t?");
        }
        fprintf(t, "\n");
        rows++;
        cJSON_Delete(j);
    }
    free(line);
    fclose(f);
    if (fclose(t) && !rc) fprintf(stderr, "whale train plot: %s: %s\n", table, strerror(errno)), rc = 1;
    if (!rc && !rows) fprintf(stderr, "whale train plot: %s holds no steps yet\n", path), rc = 1;
    FILE *g = rc ? NULL : fopen(script, "w");
    if (!rc && !g) fprintf(stderr, "whale train plot: %s: %s\n", script, strerror(errno)), rc = 1;
    int n_charts = 0;
    const char *drawn[sizeof charts / sizeof charts[0]];
    if (g) {
        fprintf(g, "set terminal pngcairo noenhanced size 900,500 font 'sans,10'\nset datafile separator '\\t'\n"
                   "set datafile missing '?'\nset grid\nset key top right\nset xlabel 'step'\n");
        for (size_t c = 0; c < sizeof charts / sizeof charts[0]; c++) {
            const chart *ch = &charts[c];
            if (!seen[ch->cols[0]]) continue;
            fprintf(g, "set output '%s/%s'\nset title '%s'\nset ylabel '%s'\nplot ", out, ch->file, ch->title, ch->ylabel);
            for (int k = 0; k < 2 && ch->cols[k] >= 0; k++) {
                if (!seen[ch->cols[k]]) continue;
                /* val_loss is sparse: drawn as points with a line where steps are consecutive */
                fprintf(g, "%s'%s' using 1:%d with %s title '%s'", k ? ", " : "", table, ch->cols[k] + 2,
                        sparse(ch->cols[k]) ? "linespoints pt 7" : "lines lw 2", fields[ch->cols[k]]);
            }
            fprintf(g, "\n");
            drawn[n_charts++] = ch->file;
        }
        fprintf(g, "set output\n");
        if (fclose(g)) fprintf(stderr, "whale train plot: %s: %s\n", script, strerror(errno)), rc = 1;
    }
    if (!rc) rc = run_gnuplot(script);
    unlink(table);
    unlink(script);
    for (int i = 0; !rc && i < n_charts; i++) printf("%s/%s\n", out, drawn[i]);
    return rc;
}
