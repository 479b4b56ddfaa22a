/* progress.h — a one-line progress bar on stderr for long work (model loading, conversion).
 * Draws only when stderr is a terminal; otherwise prints nothing, so logs stay clean. */
#ifndef WHALE_BASE_PROGRESS_H
#define WHALE_BASE_PROGRESS_H

typedef struct progress {
    const char *label;
    double total, last_drawn;
    double t0, last_t; /* start; last redraw (at most 10 a second) */
    int bytes; /* 1: total counts bytes (shows MB/s) */
    int tty;
} progress;

void progress_begin(progress *p, const char *label, double total, int bytes);
void progress_update(progress *p, double done);
void progress_end(progress *p);

#endif
