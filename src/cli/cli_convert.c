/* cli_convert.c — what `whale convert` and `whale quantize` show while convert/ writes a file:
 * the progress bar, notes on stderr, and the closing summary. Owns only printing; the work is
 * convert/'s. */
#include <stdio.h>

#include "base/clock.h"
#include "cli/cli.h"

static void on_progress(void *ctx, convert_phase phase, double done, double total) {
    cli_convert_ui *ui = ctx;
    if (phase == CONVERT_BEGIN) {
        ui->t0 = clock_now_s();
        progress_begin(&ui->bar, ui->label, total, 1);
    } else if (phase == CONVERT_UPDATE) {
        progress_update(&ui->bar, done);
    } else {
        progress_end(&ui->bar);
        ui->secs = clock_now_s() - ui->t0;
    }
}

static void on_note(void *ctx, const char *msg) {
    const cli_convert_ui *ui = ctx;
    fprintf(stderr, "whale %s: %s\n", ui->cmd, msg);
}

convert_hooks cli_convert_hooks(cli_convert_ui *ui) { return (convert_hooks){on_progress, on_note, ui}; }

void cli_convert_print(const cli_convert_ui *ui, const char *path, const convert_report *rep) {
    const dtype_summary *w = &rep->written;
    fprintf(stderr, "wrote %s: %llu tensors", path, (unsigned long long)w->n_tensors);
    for (int j = 0; j < w->n_rows; j++)
        fprintf(stderr, "%s%s %llu", j ? ", " : " (", dtype_name(w->row[j].type),
                (unsigned long long)w->row[j].n_tensors);
    fprintf(stderr, "%s, %.1f MiB -> %.1f MiB in %.2f s\n", w->n_rows ? ")" : "", rep->in_bytes / 1048576,
            rep->out_bytes / 1048576, ui->secs);
    for (int i = 0; i < rep->n_fallback; i++) {
        const dtype_info *di = dtype_get(rep->fallback[i].want);
        uint64_t n_q8 = rep->fallback[i].n_q8_0, n_f16 = rep->fallback[i].n_f16;
        fprintf(stderr, "note: %llu tensors have rows that do not fill %s blocks of %lld values: written as ",
                (unsigned long long)(n_q8 + n_f16), dtype_name(rep->fallback[i].want),
                (long long)(di ? di->block_elems : 0));
        if (n_q8) fprintf(stderr, "Q8_0 (%llu)%s", (unsigned long long)n_q8, n_f16 ? ", " : "\n");
        if (n_f16) fprintf(stderr, "F16 (%llu)\n", (unsigned long long)n_f16);
    }
}
