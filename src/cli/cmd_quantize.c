/* cmd_quantize.c — `whale quantize IN OUT.gguf --type T`: argument parsing and printing for
 * a GGUF with its weight matrices in another type, from a GGUF file (convert_gguf: metadata
 * copied as it is, general.file_type updated) or from a Hugging Face checkpoint (convert_hf, the
 * same path as `whale convert`). The work is convert/'s. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"

/* ---- whale quantize ------------------------------------------------------------------------ */

static void usage(FILE *f) {
    fprintf(f, "usage: whale quantize IN OUT.gguf --type " CONVERT_WTYPES "\n\n"
               "Write a GGUF with the weight matrices in another type. IN is a GGUF file (its metadata,\n"
               "tokenizer and chat template are copied as they are; general.file_type is updated) or a\n"
               "Hugging Face checkpoint: a directory, .safetensors or .index.json (FP8 included; the\n"
               "same file `whale convert` writes).\n"
               "  --type T   f32, f16, bf16, q8_0, q4_k, q6_k, or q4_k_m (q4_k, with q6_k for the output,\n"
               "             attn_output, attn_v and ffn_down matrices)\n"
               "  --mtp      checkpoint input: keep DeepSeek-V3/R1's MTP module (see whale convert --help);\n"
               "             a GGUF input keeps whatever it has\n"
               "Norms, biases and the MoE router (ffn_gate_inp) stay f32. Matrices whose rows do not fill\n"
               "the type's blocks (256 values for q4_k/q6_k, 32 for q8_0) fall back to q8_0, else f16.\n"
               "Tensors already of the wanted type are copied unchanged. The file is written tensor by\n"
               "tensor, so memory holds one tensor at a time, not the model.\n");
}

/* 1 if a and b name the same existing file. */
static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    if (!strcmp(a, b)) return 1;
    return !stat(a, &sa) && !stat(b, &sb) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *type_name = NULL;
    int mtp = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!strcmp(a, "--mtp")) { mtp = 1; continue; }
        if (!strcmp(a, "--type") && i + 1 < argc) type_name = argv[++i];
        else if (!strncmp(a, "--type=", 7)) type_name = a + 7;
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "whale quantize: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        else if (!in) in = a;
        else if (!out) out = a;
        else { fprintf(stderr, "whale quantize: unexpected argument '%s' (see --help)\n", a); return 2; }
    }
    if (!in || !out) { fprintf(stderr, "whale quantize: need IN and OUT.gguf (see --help)\n"); return 2; }
    if (!type_name) { fprintf(stderr, "whale quantize: --type is required: " CONVERT_WTYPES "\n"); return 2; }
    const convert_wtype *t = convert_wtype_parse(type_name);
    if (!t) { fprintf(stderr, "whale quantize: unknown type '%s' (" CONVERT_WTYPES ")\n", type_name); return 2; }
    struct stat sb;
    if (stat(in, &sb)) { fprintf(stderr, "whale quantize: %s: %s\n", in, strerror(errno)); return 1; }
    if (same_file(in, out)) {
        fprintf(stderr, "whale quantize: the output %s is the input; choose another name\n", out);
        return 1;
    }
    int hf = S_ISDIR(sb.st_mode) || cli_is_safetensors_path(in);
    FILE *fp = hf ? NULL : fopen(in, "rb");
    char magic[4] = {0};
    size_t got = fp ? fread(magic, 1, 4, fp) : 0;
    if (fp) fclose(fp);
    if (!fp && !hf) { fprintf(stderr, "whale quantize: %s: %s\n", in, strerror(errno)); return 1; }
    if (!hf && (got != 4 || memcmp(magic, "GGUF", 4))) {
        fprintf(stderr, "whale quantize: %s: not a GGUF file or a safetensors checkpoint\n", in);
        return 1;
    }
    cli_convert_ui ui = {.cmd = "quantize", .label = "quantizing"};
    convert_hooks hooks = cli_convert_hooks(&ui);
    convert_report rep;
    whale_err err = {0};
    int rc = hf ? convert_hf(in, out, t, mtp, &hooks, &rep, &err) : convert_gguf(in, out, t, &hooks, &rep, &err);
    if (rc) {
        fprintf(stderr, "whale quantize: %s\n", err.msg);
        return 1;
    }
    cli_convert_print(&ui, out, &rep);
    return 0;
}
