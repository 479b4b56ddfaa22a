/* cli_util.c — helpers shared by subcommands: model path resolution, byte formatting, the
 * token id lists, tokenizer opening. (The weight types convert, quantize and synth write live in
 * convert/wtype.c.) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "tokenizer/tokenizer.h"

int cli_kv_type(const char *cmd, const char *v, int *type) {
    static const char *const names[] = {"f32", "f16", "bf16", "q8"}; /* OP_KV_F32, _F16, _BF16, _Q8 */
    for (int i = 0; v && i < 4; i++)
        if (!strcmp(v, names[i])) {
            *type = i;
            return 0;
        }
    fprintf(stderr, "whale %s: --kv-type takes f32, f16, bf16 or q8\n", cmd);
    return -1;
}

const char *cli_model_path(const char *arg) {
    static char buf[4096];
    whale_err err = {0};
    if (whale_model_resolve(arg, buf, sizeof buf, &err)) {
        fprintf(stderr, "whale: %s\n", err.msg);
        exit(1);
    }
    return buf;
}

const char *cli_bytes(double b, char *buf, size_t cap) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) {
        b /= 1024;
        i++;
    }
    snprintf(buf, cap, i ? "%.2f %s" : "%.0f %s", b, u[i]);
    return buf;
}

int cli_is_safetensors_path(const char *path) {
    size_t n = strlen(path);
    if (n >= 12 && !strcmp(path + n - 12, ".safetensors")) return 1;
    if (n >= 11 && !strcmp(path + n - 11, ".index.json")) return 1;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char h[9];
    size_t got = fread(h, 1, sizeof h, f);
    fclose(f);
    /* A safetensors file starts with a u64 header length then '{'. */
    return got == 9 && h[8] == '{';
}

int cli_parse_ids(const char *cmd, const char *list, tok_ids *out) {
    for (const char *p = list; *p;) {
        if (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') { p++; continue; }
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX) {
            fprintf(stderr, "whale %s: '%.20s' is not a token id\n", cmd, p);
            return -1;
        }
        if (tok_ids_push(out, (int32_t)v)) {
            fprintf(stderr, "whale %s: out of memory\n", cmd);
            return -1;
        }
        p = end;
    }
    return 0;
}
