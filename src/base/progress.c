/* progress.c — draws "label [#####.....] 42% 310 MB/s" in place with \r. */
#include "base/progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"

static void draw(progress *p, double done) {
    double frac = p->total > 0 ? done / p->total : 1;
    if (frac > 1) frac = 1;
    char bar[31];
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    double dt = clock_now_s() - p->t0;
    if (p->bytes && dt > 0)
        fprintf(stderr, "\r%s [%s] %3d%% %6.0f MB/s", p->label, bar, (int)(frac * 100), done / dt / 1e6);
    else
        fprintf(stderr, "\r%s [%s] %3d%%", p->label, bar, (int)(frac * 100));
    fflush(stderr);
}

void progress_begin(progress *p, const char *label, double total, int bytes) {
    p->label = label;
    p->total = total;
    p->bytes = bytes;
    p->last_drawn = -1;
    p->last_t = 0;
    p->t0 = clock_now_s();
    p->tty = isatty(2);
}

void progress_update(progress *p, double done) {
    if (!p->tty) return;
    double now = clock_now_s();
    if (p->last_t > 0 && now - p->last_t < 0.1) return; /* ten redraws a second are plenty */
    draw(p, done);
    p->last_drawn = done;
    p->last_t = now;
}

void progress_end(progress *p) {
    if (!p->tty) return;
    draw(p, p->total);
    fputc('\n', stderr);
}
