/* cmd_convert.c — `whale convert`: argument parsing and printing for a Hugging Face checkpoint
 * (Qwen2, Llama, DeepSeek V2/V3 with FP8 block-scaled weights) to GGUF, with the matrices stored
 * as F32, F16, BF16, Q8_0, Q4_K, Q6_K or the Q4_K_M mix. The conversion is convert_hf's
 * (convert/hf.c); the progress bar and summary are cli_convert.c's, shared with quantize. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *f) {
    fprintf(f, "usage: whale convert CHECKPOINT OUT.gguf [--type " CONVERT_WTYPES "] [--mtp]\n\n"
               "Convert a Hugging Face checkpoint (directory with config.json, *.safetensors and, if\n"
               "present, tokenizer.json) of a Qwen2, Llama or DeepSeek V2/V3 model (FP8 included) to GGUF.\n"
               "  --type T   type of the weight matrices (default f16); norms, biases and the MoE router\n"
               "             stay f32; q4_k_m as in `whale quantize --help`\n"
               "  --mtp      keep DeepSeek-V3/R1's multi-token prediction module (for --speculative mtp);\n"
               "             left out by default, as llama.cpp's converter does, since tools that do not\n"
               "             know it would run it as one more layer\n"
               "To re-quantize a GGUF file, use `whale quantize`.\n");
}

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    const convert_wtype *wt = convert_wtype_parse("f16");
    int mtp = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--mtp")) { mtp = 1; continue; }
        if (!strcmp(argv[i], "--type") && i + 1 < argc) {
            if (!(wt = convert_wtype_parse(argv[++i]))) { fprintf(stderr, "whale convert: unknown type '%s'\n", argv[i]); return 2; }
        } else if (argv[i][0] == '-') { fprintf(stderr, "whale convert: unknown option '%s'\n", argv[i]); usage(stderr); return 2; }
        else if (!in) in = argv[i];
        else if (!out) out = argv[i];
        else { usage(stderr); return 2; }
    }
    if (!in || !out) { usage(stderr); return 2; }
    FILE *probe_in = fopen(in, "rb");
    char magic[4] = {0};
    if (probe_in) {
        size_t got = fread(magic, 1, 4, probe_in);
        fclose(probe_in);
        if (got == 4 && !memcmp(magic, "GGUF", 4)) {
            fprintf(stderr, "whale convert: %s is already a GGUF file; convert takes a Hugging Face checkpoint "
                            "(use `whale quantize` to re-quantize a GGUF file)\n", in);
            return 1;
        }
    }
    cli_convert_ui ui = {.cmd = "convert", .label = "converting"};
    convert_hooks hooks = cli_convert_hooks(&ui);
    convert_report rep;
    whale_err err = {0};
    if (convert_hf(in, out, wt, mtp, &hooks, &rep, &err)) {
        fprintf(stderr, "whale convert: %s\n", err.msg);
        return 1;
    }
    cli_convert_print(&ui, out, &rep);
    return 0;
}
