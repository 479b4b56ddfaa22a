/* cmd_train_plot.c — `whale train plot RUN_DIR`: PNG charts of a run's metrics.jsonl. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_train_plot(int argc, char **argv) {
    (void)argc, (void)argv;
    fprintf(stderr, "whale train plot: not yet\n");
    return 1;
}
