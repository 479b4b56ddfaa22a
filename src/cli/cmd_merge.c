/* cmd_merge.c — `whale merge -m BASE --lora ADAPTER -o OUT.gguf [--type T] [--chat-format F]`:
 * argument parsing and printing for baking a LoRA adapter into a GGUF model. The work is
 * convert/merge.c's (convert_merge). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"

static void usage(FILE *f) {
    fprintf(f, "usage: whale merge -m BASE --lora ADAPTER -o OUT.gguf [--type q8_0|f16|f32] "
               "[--chat-format chatml-think]\n\n"
               "Bake a LoRA adapter into a model: every matrix the adapter changes is dequantized,\n"
               "W' = W + scale * B A (scale = lora_alpha / r, or / sqrt(r) with use_rslora), and written\n"
               "in --type; all other tensors and the metadata are copied as they are.\n"
               "  -m BASE       a GGUF model (Qwen2 or Llama; a name such as 'default' works)\n"
               "  --lora PATH   the adapter: a PEFT directory (adapter_config.json +\n"
               "                adapter_model.safetensors) or one of its files\n"
               "  -o OUT.gguf   the merged model\n"
               "  --type T      q8_0 (default), f16 or f32 for the changed matrices; not 4-bit types,\n"
               "                which would round most of a small update away\n"
               "  --chat-format chatml-think\n"
               "                write a chat template that opens every reply with <think>: a\n"
               "                reasoning model (DeepThink, reasoning_content, deepseek-reasoner)\n");
}

int cmd_merge(int argc, char **argv) {
    const char *base = NULL, *lora = NULL, *out = NULL, *type_name = "q8_0", *fmt = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (v && (!strcmp(a, "-m") || !strcmp(a, "--model"))) { base = v; i++; }
        else if (v && !strcmp(a, "--lora")) { lora = v; i++; }
        else if (v && (!strcmp(a, "-o") || !strcmp(a, "--output"))) { out = v; i++; }
        else if (v && !strcmp(a, "--type")) { type_name = v; i++; }
        else if (v && !strcmp(a, "--chat-format")) { fmt = v; i++; }
        else {
            fprintf(stderr, "whale merge: unexpected argument '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!lora || !out) { fprintf(stderr, "whale merge: need --lora ADAPTER and -o OUT.gguf (see --help)\n"); return 2; }
    whale_dtype type;
    if (!strcmp(type_name, "q8_0")) type = WHALE_DTYPE_Q8_0;
    else if (!strcmp(type_name, "f16")) type = WHALE_DTYPE_F16;
    else if (!strcmp(type_name, "f32")) type = WHALE_DTYPE_F32;
    else { fprintf(stderr, "whale merge: --type takes q8_0, f16 or f32, not '%s'\n", type_name); return 2; }
    const char *tmpl = whale_chat_template(fmt);
    if (fmt && !tmpl) {
        fprintf(stderr, "whale merge: --chat-format takes chatml-think (the template written is "
                        "whale's), not '%s'\n", fmt);
        return 2;
    }
    whale_err err = {0};
    char path[4096];
    if (whale_model_resolve(base, path, sizeof path, &err)) {
        fprintf(stderr, "whale merge: %s\n", err.msg);
        return 1;
    }
    struct stat si, so;
    size_t pl = strlen(path);
    if ((!stat(path, &si) && S_ISDIR(si.st_mode)) || (pl > 12 && !strcmp(path + pl - 12, ".safetensors"))) {
        fprintf(stderr, "whale merge: %s: the base must be a GGUF file (convert a checkpoint first: whale convert "
                        "CHECKPOINT BASE.gguf --type f16)\n", path);
        return 1;
    }
    if (!stat(path, &si) && !stat(out, &so) && si.st_dev == so.st_dev && si.st_ino == so.st_ino) {
        fprintf(stderr, "whale merge: the output %s is the base model; choose another name\n", out);
        return 1;
    }
    cli_convert_ui ui = {.cmd = "merge", .label = "merging"};
    convert_hooks hooks = cli_convert_hooks(&ui);
    convert_report rep;
    if (convert_merge(path, lora, out, type, tmpl, &hooks, &rep, &err)) {
        fprintf(stderr, "whale merge: %s\n", err.msg);
        return 1;
    }
    cli_convert_print(&ui, out, &rep);
    return 0;
}
