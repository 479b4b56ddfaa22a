/* cmd_data.c — `whale data`: prepare (curated token shards) and tokenizer (train a BPE
 * vocabulary, cmd_data_tokenizer.c). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *f) {
    fprintf(f, "usage: whale data prepare INPUT... -m MODEL_OR_TOKENIZER -o DIR [options]\n"
               "       whale data tokenizer INPUT... --vocab-size N -o tokenizer.json\n");
}

int cmd_data(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "tokenizer")) return cmd_data_tokenizer(argc - 1, argv + 1);
    if (!strcmp(argv[1], "prepare")) {
        fprintf(stderr, "whale data prepare: not built yet\n");
        return 1;
    }
    fprintf(stderr, "whale data: unknown subcommand '%s'\n", argv[1]);
    return 2;
}
