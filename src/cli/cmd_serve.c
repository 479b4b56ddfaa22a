/* cmd_serve.c — `whale serve`: load a model and serve the OpenAI / DeepSeek chat API. */
#include <dirent.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "hub/hub.h"
#include "service/server.h"
#include "service/store.h"

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
    (void)sig;
    if (g_stop < 2) g_stop = g_stop + 1; /* the second one cancels the drain */
}

static void usage(FILE *f) {
    fprintf(f, "usage: whale serve [-m MODEL [--name NAME] [--lora ADAPTER [--name NAME]]]... [--host 127.0.0.1]\n"
               "                   [--port 8080] [--parallel N] [--ctx N] [--max-loaded N] [--max-memory MIB]\n\n"
               "Serve the model over an OpenAI / DeepSeek-compatible HTTP API:\n"
               "  POST /v1/chat/completions (also /chat/completions), streaming or not, with\n"
               "       reasoning_content for reasoning models and DeepSeek's cache usage fields\n"
               "  POST /beta/completions (also /v1/completions): fill in the middle (prompt + suffix)\n"
               "  GET  /v1/models (also /models), GET /health, GET /metrics (Prometheus)\n"
               "  GET  /v1/chat/completions/ID/events (Last-Event-ID): read on a resumable stream\n"
               "       (stream_options.resumable); DELETE /v1/chat/completions/ID stops it\n"
               "  POST /api/chat, /api/generate, GET /api/tags, /api/ps, POST /api/show: Ollama's API\n"
               "  GET  /  the chat page (built in; open http://HOST:PORT/ in a browser)\n"
               "  with --accounts: GET /user/balance, /user/usage; POST /auth/register|login|logout|\n"
               "       password|delete; GET|POST /user/keys, POST /user/keys/revoke;\n"
               "       GET|PUT|DELETE /user/conversations[/ID] (the page's, per user)\n"
               "Requests share the model through continuous batching; a prompt that repeats a cached\n"
               "prefix (64-token units) is not computed again: computed prefixes are kept in memory and\n"
               "on disk (the context cache), so hits survive other traffic and restarts.\n"
               "  -m MODEL         a model name (`whale list`), .gguf file or Hugging Face checkpoint (default: the\n"
               "                   default model); repeat to serve several, each under its name (the name given,\n"
               "                   or the file's stem) and routed by the request's \"model\". The first is loaded at\n"
               "                   the start and answers requests that name none; the others load on first use.\n"
               "                   deepseek-chat names the first plain model, deepseek-reasoner the first\n"
               "                   reasoning one; GET /v1/models lists every model and alias\n"
               "  --max-loaded N   models loaded at once (default: no limit); past it the least recently used\n"
               "                   idle one is unloaded to load another\n"
               "  --max-memory MIB the same by memory: the loaded models' weights, KV caches and context\n"
               "                   cache budgets (an estimate) stay under MIB\n"
               "  --host ADDR      IPv4 address to listen on (default 127.0.0.1: this machine only)\n"
               "  --port N         (default 8080)\n"
               "  --parallel N     sequences decoding at once (default 4)\n"
               "  --ctx N          tokens per sequence, prompt and reply (default: the model's, at most 4096)\n"
               "  --queue N        requests that may wait for a sequence; beyond, 503 at once (default 64)\n"
               "  --name NAME      the id in the API of the model (or adapter) given before it (default: the\n"
               "                   name given to -m, or the file's stem; an adapter's directory name)\n"
               "  --chat-format F  deepseek-r1, chatml or chatml-think for the model given before it\n"
               "                   (default: from the model)\n"
               "  --cache-ram MIB  context cache in memory (default 1024; 0: none)\n"
               "  --cache-disk MIB context cache on disk (default 8192; 0: none)\n"
               "  --cache-dir DIR  where the disk tier lives, one folder per model\n"
               "                   (default $WHALE_HOME/kv-cache)\n"
               "  --kv-type T      KV cache rows as f32 (default), f16 or bf16: twice the tokens per GiB\n"
               "                   (every model served)\n"
               "  --lora PATH      serve the model given before it with a LoRA adapter (PEFT directory; Qwen2/\n"
               "                   Llama) as a model of its own, named after the adapter's directory\n"
               "  --draft MODEL    speculative decoding: a smaller model with the same vocabulary guesses\n"
               "                   each sequence's next tokens and the model checks every sequence's\n"
               "                   guesses in its one batched step (not JSON mode or tool calls); greedy\n"
               "                   replies are unchanged, sampled ones keep their distribution\n"
               "  --draft lookup   the guesses come from the prompt and reply themselves (the text after\n"
               "                   the last earlier occurrence of the latest tokens): free, pays on quoting\n"
               "                   and editing\n"
               "  --draft-max N    guesses per sequence per step (1..16; default 4 for a model, 7 for lookup)\n"
               "  --speculative mtp  the guess comes from the model's multi-token prediction module\n"
               "                   (DeepSeek-V3/R1): up to two tokens per step\n"
               "                   /metrics: whale_speculative_* by drafter (acceptance, tokens per step)\n"
               "  --accounts       multi-user mode: every request needs an API key (Authorization: Bearer),\n"
               "                   is refused with 402 at a zero balance and is charged per token when it\n"
               "                   ends; GET /user/balance. Manage users and keys with `whale admin`\n"
               "  --db PATH        the accounts database (default $WHALE_HOME/whale.db)\n"
               "  --signup MODE    accounts: open (default; limited per address), invite (a code from\n"
               "                   `whale admin invite` needed) or closed (`whale admin user add` only)\n"
               "  --secure-cookies mark session cookies Secure (clients reach the server over TLS, via a proxy)\n"
               "  --rpm N, --tpm N accounts: requests and tokens (prompt + output) per minute for each key and\n"
               "                   each user (429 with Retry-After beyond; default 0: none); with --db postgresql://\n"
               "                   kept in the database, so the limits hold across replicas\n"
               "  --signups-per-hour N  accounts: open sign-ups from one address per hour (default 3)\n"
               "  --user-storage MIB  accounts: the web page's conversations kept per user (default 8; at\n"
               "                   most 1024); a new one past it is refused (409)\n"
               "  --max-conns N    open connections (default 256; each has a thread)\n"
               "  --max-conns-per-ip N  open connections from one address (default 32; 0: no limit, e.g.\n"
               "                   behind a proxy that limits them itself); past it a request gets 429 with\n"
               "                   Retry-After and its connection is closed\n"
               "  --trusted-proxy ADDR  a reverse proxy (up to 8): for its requests the client's address,\n"
               "                   for per-address limits, is taken from X-Forwarded-For\n"
               "  --host-name NAME  a name clients reach the server by (repeatable); requests whose Host\n"
               "                   (or a trusted proxy's X-Forwarded-Host) names another get 421,\n"
               "                   so a web page cannot reach the server by DNS rebinding. Always served:\n"
               "                   the --host address, localhost, 127.0.0.1, [::1], and on 0.0.0.0 this\n"
               "                   machine's addresses and host name; Host's port must be --port or absent\n"
               "                   (X-Forwarded-Host's port is the proxy's and is not checked)\n"
               "  --metrics-token T  accounts: GET /metrics needs Authorization: Bearer T (also from\n"
               "                   $WHALE_METRICS_TOKEN); without one /metrics is refused (403)\n"
               "  --drain S        on SIGTERM/Ctrl-C: stop accepting, let running requests finish for up\n"
               "                   to S seconds (default 10), then cancel the rest (each charged for what it\n"
               "                   used); a second Ctrl-C cancels at once\n"
               "  -t N             threads (default: all cores)\n");
}

static int number(const char *flag, const char *v, long lo, long hi, long *out) {
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || *end || x < lo || x > hi) {
        fprintf(stderr, "whale serve: %s needs a number from %ld to %ld\n", flag, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

typedef struct entry { /* one served model as given: -m ARG, or --lora PATH on the one before */
    const char *arg, *lora, *name, *fmt;
    int implicit; /* made by a flag before any -m: the first -m fills it in */
    char path[4096], stem[256];
} entry;

/* The entry flags after it apply to (the last one; before any -m, the first model). */
static entry *last_entry(entry *v, int *n) {
    if (!*n) v[(*n)++] = (entry){.arg = "default", .implicit = 1};
    return &v[*n - 1];
}

/* What an entry is served as: --name, else the name it was given by (a catalog or registered
 * name, "default"), else the file's or directory's stem; a catalog entry's other names as
 * aliases. 0, or -1 with a message. */
static int entry_spec(entry *en, models_spec *sp) {
    whale_err err = {0};
    if (whale_model_resolve(en->arg, en->path, sizeof en->path, &err)) {
        fprintf(stderr, "whale serve: %s\n", err.msg);
        return -1;
    }
    const char *file = en->lora ? en->lora : en->path, *given = en->lora ? en->lora : en->arg;
    size_t n = strlen(file);
    while (n > 1 && file[n - 1] == '/') n--; /* "adapter/" is "adapter" */
    size_t b = n;
    while (b > 0 && file[b - 1] != '/') b--;
    snprintf(en->stem, sizeof en->stem, "%.*s", (int)(n - b), file + b);
    char *dot = strstr(en->stem, ".gguf");
    if (dot && !dot[5]) *dot = 0;
    int by_name = !en->lora && strcmp(given, en->path) && !strchr(given, '/');
    *sp = (models_spec){.path = en->path, .lora = en->lora, .chat_format = en->fmt,
                        .name = en->name ? en->name : by_name ? given : en->stem};
    const hub_entry *h = by_name && !en->lora ? hub_catalog_find(given) : NULL;
    for (int a = -1; h && a < h->n_aliases && sp->n_aliases < MODELS_MAX_ALIASES; a++) {
        const char *x = a < 0 ? h->name : h->aliases[a];
        if (strcmp(x, sp->name)) sp->aliases[sp->n_aliases++] = x;
    }
    return 0;
}

int cmd_serve(int argc, char **argv) {
    server_opts o = {0};
    long cache_ram = 1024, cache_disk = 8192;
    int kv_type = 0, accounts = 0;
    char db_default[4096];
    const char *db = whale_home_path("whale.db", db_default, sizeof db_default);
    char cache_dir[4096];
    o.cache_dir = whale_home_path("kv-cache", cache_dir, sizeof cache_dir);
    static entry ents[MODELS_MAX];
    int n_ents = 0;
    const char *draft_name = NULL;
    int threads = 0;
    long x, max_memory = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (v && (!strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "--lora"))) {
            if (n_ents == MODELS_MAX) {
                fprintf(stderr, "whale serve: at most %d models (each -m and --lora is one)\n", MODELS_MAX);
                return 2;
            }
            if (!strcmp(a, "--lora")) { /* the model before it, with the adapter */
                entry *base = last_entry(ents, &n_ents);
                if (n_ents == MODELS_MAX) {
                    fprintf(stderr, "whale serve: at most %d models (each -m and --lora is one)\n", MODELS_MAX);
                    return 2;
                }
                ents[n_ents++] = (entry){.arg = base->arg, .fmt = base->fmt, .lora = v};
            } else if (n_ents == 1 && ents[0].implicit) {
                ents[0].arg = v; /* flags given before the first -m are its */
                ents[0].implicit = 0;
            } else ents[n_ents++] = (entry){.arg = v};
            i++;
        }
        else if (v && !strcmp(a, "--host")) { o.host = v; i++; }
        else if (v && !strcmp(a, "--name")) { last_entry(ents, &n_ents)->name = v; i++; }
        else if (v && !strcmp(a, "--chat-format")) { last_entry(ents, &n_ents)->fmt = v; i++; }
        else if (!strcmp(a, "--max-loaded")) { if (number(a, v, 1, MODELS_MAX, &x)) return 2; o.max_loaded = (int)x; i++; }
        else if (!strcmp(a, "--max-memory")) { if (number(a, v, 1, 1L << 30, &max_memory)) return 2; i++; }
        else if (v && !strcmp(a, "--cache-dir")) { o.cache_dir = v; i++; }
        else if (!strcmp(a, "--accounts")) accounts = 1;
        else if (v && !strcmp(a, "--signup") && (!strcmp(v, "open") || !strcmp(v, "closed") || !strcmp(v, "invite"))) {
            o.signup = !strcmp(v, "open") ? 0 : !strcmp(v, "closed") ? 1 : 2;
            i++;
        }
        else if (!strcmp(a, "--secure-cookies")) o.secure_cookies = 1;
        else if (!strcmp(a, "--rpm")) { if (number(a, v, 0, 1000000, &x)) return 2; o.rpm = x; i++; }
        else if (!strcmp(a, "--tpm")) { if (number(a, v, 0, 1L << 40, &x)) return 2; o.tpm = x; i++; }
        else if (!strcmp(a, "--signups-per-hour")) {
            if (number(a, v, 1, 1000000, &x)) return 2;
            o.signups_per_hour = (int)x;
            i++;
        }
        else if (!strcmp(a, "--user-storage")) {
            if (number(a, v, 1, STORE_MAX_CONV_TOTAL >> 20, &x)) return 2;
            o.user_storage = x << 20;
            i++;
        }
        else if (v && !strcmp(a, "--db")) { db = v; i++; }
        else if (!strcmp(a, "--speculative")) {
            if (!v || (strcmp(v, "mtp") && strcmp(v, "lookup"))) {
                fprintf(stderr, "whale serve: --speculative takes 'mtp' (DeepSeek-V3's multi-token prediction) or "
                                "'lookup'; a draft model is --draft MODEL\n");
                return 2;
            }
            o.speculative = !strcmp(v, "mtp") ? WHALE_SPEC_MTP : WHALE_SPEC_LOOKUP;
            i++;
        }
        else if (!strcmp(a, "--draft")) {
            if (!v) {
                fprintf(stderr, "whale serve: --draft needs a model (name or path) or 'lookup'\n");
                return 2;
            }
            o.speculative = !strcmp(v, "lookup") ? WHALE_SPEC_LOOKUP : WHALE_SPEC_DRAFT;
            draft_name = o.speculative == WHALE_SPEC_DRAFT ? v : NULL;
            i++;
        }
        else if (!strcmp(a, "--draft-max")) { if (number(a, v, 1, 16, &x)) return 2; o.draft_max = (int)x; i++; }
        else if (!strcmp(a, "--kv-type")) { if (cli_kv_type("serve", v, &kv_type)) return 2; i++; }
        else if (!strcmp(a, "--cache-ram")) { if (number(a, v, 0, 1L << 24, &cache_ram)) return 2; i++; }
        else if (!strcmp(a, "--cache-disk")) { if (number(a, v, 0, 1L << 30, &cache_disk)) return 2; i++; }
        else if (!strcmp(a, "--port")) { if (number(a, v, 1, 65535, &x)) return 2; o.port = (int)x; i++; }
        else if (!strcmp(a, "--parallel")) { if (number(a, v, 1, 256, &x)) return 2; o.n_parallel = (int)x; i++; }
        else if (!strcmp(a, "--ctx")) { if (number(a, v, 16, 1 << 24, &x)) return 2; o.n_ctx = x; i++; }
        else if (!strcmp(a, "--queue")) { if (number(a, v, 1, 100000, &x)) return 2; o.max_queue = (int)x; i++; }
        else if (!strcmp(a, "-t")) { if (number(a, v, 1, 1024, &x)) return 2; threads = (int)x; i++; }
        else if (!strcmp(a, "--max-conns")) { if (number(a, v, 1, 10000, &x)) return 2; o.max_conns = (int)x; i++; }
        else if (!strcmp(a, "--max-conns-per-ip")) {
            if (number(a, v, 0, 10000, &x)) return 2;
            o.max_conns_per_ip = x ? (int)x : -1;
            i++;
        }
        else if (!strcmp(a, "--drain")) { if (number(a, v, 0, 3600, &x)) return 2; o.drain_s = x ? (int)x : -1; i++; }
        else if (!strcmp(a, "--trusted-proxy")) {
            unsigned char bin[16];
            if (!v || (inet_pton(AF_INET, v, bin) != 1 && inet_pton(AF_INET6, v, bin) != 1)) {
                fprintf(stderr, "whale serve: --trusted-proxy needs an IP address\n");
                return 2;
            }
            if (o.n_trusted_proxies == SERVER_MAX_PROXIES) {
                fprintf(stderr, "whale serve: at most %d --trusted-proxy addresses\n", SERVER_MAX_PROXIES);
                return 2;
            }
            o.trusted_proxies[o.n_trusted_proxies++] = v;
            i++;
        }
        else if (!strcmp(a, "--host-name")) {
            if (!v || !*v || strlen(v) > 255) {
                fprintf(stderr, "whale serve: --host-name needs a host name (as a browser sends it in Host)\n");
                return 2;
            }
            if (o.n_host_names == SERVER_MAX_HOST_NAMES) {
                fprintf(stderr, "whale serve: at most %d --host-name names\n", SERVER_MAX_HOST_NAMES);
                return 2;
            }
            o.host_names[o.n_host_names++] = v;
            i++;
        }
        else if (v && !strcmp(a, "--metrics-token")) { o.metrics_token = v; i++; }
        else { fprintf(stderr, "whale serve: bad option '%s' (see whale serve --help)\n", a); return 2; }
    }
    last_entry(ents, &n_ents); /* no -m: the default model */
    for (int k = 0; k < n_ents; k++)
        if (entry_spec(&ents[k], &o.models[k])) return 1;
    o.n_models = n_ents;
    o.max_memory = (size_t)max_memory << 20;
    o.cache_ram = (size_t)cache_ram << 20;
    o.cache_disk = (size_t)cache_disk << 20;
    if (!cache_disk) o.cache_dir = NULL;
    whale_err err = {0};
    store *st = NULL; /* the database first: a wrong --db fails before a long model load */
    if (accounts && store_open(&st, db, &err)) {
        fprintf(stderr, "whale serve: %s\n", err.msg);
        return 1;
    }
    whale_model_params mp = {.n_threads = threads, .kv_type = kv_type};
    o.mp = mp;
    o.mp.progress = isatty(2);
    whale_model *draft = NULL;
    if (draft_name) {
        if (mp.kv_type == WHALE_KV_Q8) mp.kv_type = WHALE_KV_BF16; /* a draft is dense: q8 is for MLA caches */
        if (whale_model_open(&draft, draft_name, &mp, &err)) {
            fprintf(stderr, "whale serve: --draft: %s\n", err.msg);
            store_close(st);
            return 1;
        }
        o.draft = draft;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    o.accounts = st;
    if (!o.metrics_token && getenv("WHALE_METRICS_TOKEN") && *getenv("WHALE_METRICS_TOKEN"))
        o.metrics_token = getenv("WHALE_METRICS_TOKEN");
    int rc = server_run(&o, &g_stop, &err);
    store_close(st);
    if (rc) fprintf(stderr, "whale serve: %s\n", err.msg);
    whale_model_close(draft);
    return rc ? 1 : 0;
}
