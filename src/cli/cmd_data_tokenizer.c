/* cmd_data_tokenizer.c — `whale data tokenizer`: train a byte-level BPE vocabulary. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_data_tokenizer(int argc, char **argv) {
    (void)argc, (void)argv;
    fprintf(stderr, "whale data tokenizer: not built yet\n");
    return 1;
}
