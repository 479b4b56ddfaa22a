/* cmd_tokenize.c — `whale tokenize`: standard input as one text, to token ids. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli.h"
#include "service/api.h"
#include "formats/gguf.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/readall.h"
#include "engine/chat_format.h"
#include "tokenizer/tokenizer.h"

/* Standard input is read whole; 1 GiB bounds what a runaway pipe can make us hold. */
#define TOKENIZE_MAX_INPUT (1u << 30)

static void usage(FILE *f) {
    fprintf(f, "usage: whale tokenize [-m MODEL] [--ids] [--special] [--bos] [--lines] < text\n\n"
               "Tokenize all of standard input as one text.\n"
               "  -m MODEL    a .gguf file, a tokenizer.json, or a directory holding one (default: the default model)\n"
               "  --ids       print only the ids, space-separated (no BOS unless --bos)\n"
               "  --special   recognize special-token spellings such as <｜User｜> (default: plain text)\n"
               "  --bos       prepend the BOS token\n"
               "  --lines     treat each input line as its own text; print one id line per input line\n"
               "  --jsonl     each input line is a JSON string holding one text; one id line per input line\n"
               "  --decode    read ids from standard input and print the text they decode to\n"
               "  --bench     report encode speed (tokens/s) instead of ids\n"
               "  --chat      standard input is a JSON array of {role, content} messages (or a chat-completions\n"
               "              request body with messages and tools, laid out as whale serve does): lay it out in\n"
               "              the model's chat format (--chat-format deepseek-r1|chatml|chatml-think to choose) with the\n"
               "              assistant's opening; print the ids (--ids) or, with --render, the text\n");
}

/* The GGUF chat template of the last file opened by cli_open_tokenizer (for --chat). */
static char *last_template;

int cli_open_tokenizer(const char *path, tokenizer **tok, whale_err *err) {
    struct stat st;
    char buf[4096];
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(buf, sizeof buf, "%s/tokenizer.json", path);
        path = buf;
    }
    size_t n = strlen(path);
    if (n >= 5 && !strcmp(path + n - 5, ".json")) return tokenizer_load_json(tok, path, err);
    gguf_file f;
    int rc = gguf_open(&f, path, GGUF_OPEN_METADATA_ONLY, err);
    if (rc) return rc;
    rc = tokenizer_load_gguf(tok, &f, err);
    if (rc) err_prefix(err, "%s", path);
    gguf_str tmpl;
    free(last_template);
    last_template = NULL;
    if (!rc && !gguf_get_str(&f, "tokenizer.chat_template", &tmpl, NULL) && (last_template = malloc((size_t)tmpl.n + 1))) {
        memcpy(last_template, tmpl.s, (size_t)tmpl.n);
        last_template[tmpl.n] = 0;
    }
    gguf_close(&f);
    return rc;
}

static int print_ids(const tok_ids *ids, int ids_only, const tokenizer *tok) {
    for (size_t i = 0; i < ids->n; i++) {
        if (ids_only) {
            printf(i ? " %d" : "%d", ids->v[i]);
        } else {
            char b[256];
            int l = tokenizer_token_bytes(tok, ids->v[i], b, sizeof b);
            if (l > (int)sizeof b) l = (int)sizeof b;
            printf("%8d  '", ids->v[i]);
            for (int k = 0; k < l; k++) {
                unsigned char c = (unsigned char)b[k];
                if (c == '\n') printf("\\n");
                else if (c == '\t') printf("\\t");
                else if (c == '\r') printf("\\r");
                else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
                else putchar(c);
            }
            printf("'\n");
        }
    }
    if (ids_only) printf("\n");
    return 0;
}

/* --chat: JSON messages -> formatted ids (or the rendered text with --render). */
static int tokenize_chat(const char *path, const tokenizer *tok, const char *in, size_t len, const char *format, int render,
                         tok_ids *ids, whale_err *err) {
    cJSON *root = cJSON_ParseWithLength(in, len);
    int rc = 1;
    chat_msg *msgs = NULL;
    int n = cJSON_IsArray(root) ? cJSON_GetArraySize(root) : -1;
    chat_format_kind k = chat_format_detect(last_template, tok, format);
    if (cJSON_IsObject(root) && k != CHAT_FORMAT_NONE && !render) {
        /* a chat-completions request body (messages, tools): laid out as `whale serve` does, by the
         * same parser over the vocabulary opened through whale.h */
        whale_model *vm = NULL;
        whale_model_params mp = {.vocab_only = 1};
        if (whale_model_open(&vm, path, &mp, err)) {
            fprintf(stderr, "whale tokenize: %s\n", err->msg);
            goto done;
        }
        api_ctx a = {.m = vm, .fmt = chat_format_name(k), .model_name = "", .alias = "",
                     .reasoning = k == CHAT_FORMAT_DEEPSEEK_R1, .n_ctx = INT64_MAX / 2};
        api_ctx_tokens(&a);
        api_req q;
        char *e = NULL;
        if (api_parse_chat(&a, in, len, &q, &e)) {
            fprintf(stderr, "whale tokenize: --chat: %s\n", e ? e : "bad request");
            free(e);
            whale_model_close(vm);
            goto done;
        }
        whale_model_close(vm);
        for (size_t j = 0; j < q.prompt.n; j++) tok_ids_push(ids, q.prompt.v[j]);
        api_req_free(&q);
        rc = 0;
        goto done;
    }
    if (n < 0) {
        fprintf(stderr, "whale tokenize: --chat: standard input is not a JSON array of messages\n");
        goto done;
    }
    if (k == CHAT_FORMAT_NONE) {
        fprintf(stderr, "whale tokenize: no chat format for this model (use --chat-format deepseek-r1|chatml|chatml-think)\n");
        goto done;
    }
    msgs = calloc((size_t)n + 1, sizeof *msgs);
    if (!msgs) goto done;
    int i = 0;
    for (cJSON *it = root->child; it; it = it->next, i++) {
        cJSON *role = cJSON_GetObjectItemCaseSensitive(it, "role"), *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsString(role) || !cJSON_IsString(content)) {
            fprintf(stderr, "whale tokenize: --chat: message %d needs string role and content\n", i);
            goto done;
        }
        const char *r = role->valuestring;
        msgs[i].role = !strcmp(r, "system") ? CHAT_SYSTEM : !strcmp(r, "assistant") ? CHAT_ASSISTANT : CHAT_USER;
        msgs[i].content = content->valuestring;
    }
    if (render) {
        char *s = chat_format_render(k, msgs, (size_t)n, CHAT_GENERATION_PROMPT);
        if (s) fputs(s, stdout);
        rc = s ? 0 : 1;
        free(s);
    } else if (chat_format_encode(tok, k, msgs, (size_t)n, CHAT_GENERATION_PROMPT, ids, err)) {
        fprintf(stderr, "whale tokenize: %s\n", err->msg);
    } else {
        rc = 0;
    }
done:
    free(msgs);
    cJSON_Delete(root);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model_arg = NULL;
    int ids_only = 0, special = 0, bos = 0, lines = 0, jsonl = 0, decode = 0, bench = 0, chat = 0, render = 0;
    const char *format = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--ids")) ids_only = 1;
        else if (!strcmp(a, "--special")) special = 1;
        else if (!strcmp(a, "--bos")) bos = 1;
        else if (!strcmp(a, "--lines")) lines = 1;
        else if (!strcmp(a, "--jsonl")) jsonl = lines = 1;
        else if (!strcmp(a, "--decode")) decode = 1;
        else if (!strcmp(a, "--bench")) bench = 1;
        else if (!strcmp(a, "--chat")) chat = 1;
        else if (!strcmp(a, "--render")) render = 1;
        else if (!strcmp(a, "--chat-format") && i + 1 < argc) format = argv[++i];
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (++i >= argc) { fprintf(stderr, "whale tokenize: -m needs a value\n"); return 2; }
            model_arg = argv[i];
        } else {
            fprintf(stderr, "whale tokenize: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    const char *path = cli_model_path(model_arg);
    tokenizer *tok = NULL;
    whale_err err = {0};
    if (cli_open_tokenizer(path, &tok, &err)) {
        fprintf(stderr, "whale: %s%s\n", err.msg,
                strstr(path, "default.gguf") ? " (run scripts/setup to fetch the default model)" : "");
        return 1;
    }
    size_t len = 0;
    int too_big;
    char *in = read_all(stdin, TOKENIZE_MAX_INPUT, &len, &too_big);
    if (!in) {
        tokenizer_free(tok);
        fprintf(stderr, "whale tokenize: cannot read standard input%s\n", too_big ? " (larger than 1 GiB)" : "");
        return 1;
    }
    int rc = 0;
    int flags = (special ? TOK_PARSE_SPECIAL : 0) | (bos ? TOK_ADD_BOS : 0);
    tok_ids ids = {0};
    if (chat) {
        rc = tokenize_chat(path, tok, in, len, format, render, &ids, &err);
        if (!rc && !render) print_ids(&ids, ids_only, tok);
    } else if (decode) {
        char *p = in, *end = in + len;
        while (p < end) {
            char *q;
            long v = strtol(p, &q, 10);
            if (q == p) { p++; continue; }
            if (v < 0 || v >= tokenizer_n_vocab(tok)) {
                fprintf(stderr, "whale tokenize: id %ld is outside the vocabulary (0..%lld)\n", v,
                        (long long)tokenizer_n_vocab(tok) - 1);
                rc = 1;
                break;
            }
            if (tok_ids_push(&ids, (int32_t)v)) { rc = 1; break; }
            p = q;
        }
        if (!rc) {
            size_t n;
            char *s = tokenizer_decode(tok, ids.v, ids.n, &n);
            if (s) fwrite(s, 1, n, stdout);
            free(s);
        }
    } else if (bench) {
        double t0 = clock_now_s(), s = 0;
        size_t total = 0;
        int reps = 0;
        do {
            ids.n = 0;
            if (tokenizer_encode(tok, in, len, flags, &ids, &err)) { rc = 1; break; }
            total += ids.n;
            reps++;
            s = clock_now_s() - t0;
        } while (s < 2.0);
        if (!rc)
            printf("%zu bytes -> %zu tokens; %d runs in %.2f s: %.0f tokens/s, %.1f MB/s (one thread)\n", len,
                   total / (size_t)reps, reps, s, (double)total / s, (double)len * reps / s / 1e6);
    } else if (lines) {
        char *p = in, *end = in + len;
        while (p < end && !rc) {
            char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
            ids.n = 0;
            if (jsonl) {
                cJSON *j = cJSON_ParseWithLength(p, n);
                if (!cJSON_IsString(j)) {
                    fprintf(stderr, "whale tokenize: --jsonl: a line is not a JSON string\n");
                    rc = 1;
                } else if (tokenizer_encode(tok, j->valuestring, strlen(j->valuestring), flags, &ids, &err)) {
                    rc = 1;
                } else {
                    print_ids(&ids, 1, tok);
                }
                cJSON_Delete(j);
            } else if (tokenizer_encode(tok, p, n, flags, &ids, &err)) {
                rc = 1;
            } else {
                print_ids(&ids, 1, tok);
            }
            p += n + 1;
        }
    } else {
        if (tokenizer_encode(tok, in, len, flags, &ids, &err)) rc = 1;
        else print_ids(&ids, ids_only, tok);
    }
    if (rc && err.msg[0]) fprintf(stderr, "whale tokenize: %s\n", err.msg);
    tok_ids_free(&ids);
    free(in);
    tokenizer_free(tok);
    free(last_template);
    last_template = NULL;
    return rc;
}
