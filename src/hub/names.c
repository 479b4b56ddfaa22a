/* names.c — where models live, the names users register, and the one -m resolver. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "formats/json_file.h"
#include "hub/hub.h"

const char *hub_home_path(const char *sub, char *buf, size_t cap) {
    const char *home = getenv("WHALE_HOME");
    if (home && *home) snprintf(buf, cap, "%s/%s", home, sub);
    else snprintf(buf, cap, "%s/.cache/whale/%s", getenv("HOME") ? getenv("HOME") : ".", sub);
    return buf;
}

const char *hub_models_path(const char *rel, char *buf, size_t cap) {
    char sub[600];
    snprintf(sub, sizeof sub, "models/%s", rel);
    return hub_home_path(sub, buf, cap);
}

int hub_entry_path(const hub_entry *e, char *buf, size_t cap) {
    struct stat st;
    hub_models_path(e->file, buf, cap);
    return stat(buf, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---- names.json: {"name": {"path": "/abs/path"}, ...} ---------------------------------------- */

static int read_names(cJSON **out, whale_err *err) {
    char path[4096];
    hub_models_path("names.json", path, sizeof path);
    whale_err e = {0};
    *out = json_read_file(path, 16 << 20, &e);
    if (!*out && e.code == WHALE_E_NOTFOUND) { /* nothing registered yet */
        *out = cJSON_CreateObject();
        return *out ? 0 : err_set(err, WHALE_E_NOMEM, "out of memory");
    }
    if (!*out && e.code == WHALE_E_IO) return err_set(err, WHALE_E_IO, "%s", e.msg);
    if (!cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return err_set(err, WHALE_E_FORMAT, "%s is damaged (not a JSON object): fix or remove it", path);
    }
    return 0;
}

static const char *entry_path(const cJSON *item) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(item, "path");
    return cJSON_IsString(p) ? p->valuestring : NULL;
}

int hub_registry_find(const char *name, char *buf, size_t cap, whale_err *err) {
    cJSON *j;
    int rc = read_names(&j, err);
    if (rc) return rc;
    const char *p = entry_path(cJSON_GetObjectItemCaseSensitive(j, name));
    if (p) snprintf(buf, cap, "%s", p);
    cJSON_Delete(j);
    return p != NULL;
}

static int cmp_reg(const void *a, const void *b) {
    return strcmp(((const hub_registered *)a)->name, ((const hub_registered *)b)->name);
}

int hub_registry_list(hub_registered **out, whale_err *err) {
    cJSON *j, *it;
    *out = NULL;
    int rc = read_names(&j, err), n = 0;
    if (rc) return rc;
    hub_registered *r = calloc((size_t)cJSON_GetArraySize(j) + 1, sizeof *r);
    if (!r) {
        cJSON_Delete(j);
        return err_set(err, WHALE_E_NOMEM, "out of memory");
    }
    cJSON_ArrayForEach(it, j) {
        const char *p = entry_path(it);
        if (!p || !hub_valid_name(it->string)) continue;
        snprintf(r[n].name, sizeof r[n].name, "%s", it->string);
        snprintf(r[n].path, sizeof r[n].path, "%s", p);
        n++;
    }
    cJSON_Delete(j);
    qsort(r, (size_t)n, sizeof *r, cmp_reg);
    *out = r;
    return n;
}

/* Run change(j, name, path) on names.json under an exclusive lock, then write it back whole
 * (a temporary file renamed into place: a reader sees the old or the new list, never half). */
static int update_names(int (*change)(cJSON *j, const char *name, const char *path, int replace, whale_err *err),
                        const char *name, const char *path, int replace, whale_err *err) {
    char dir[4096], lock[4200], file[4200], tmp[4300];
    hub_models_path("", dir, sizeof dir);
    if (mkdir(dir, 0755) && errno != EEXIST) {
        /* $WHALE_HOME itself may be missing */
        char home[4096];
        hub_home_path("", home, sizeof home);
        if (mkdir(home, 0755) && errno != EEXIST) return err_set(err, WHALE_E_IO, "%s: %m", home);
        if (mkdir(dir, 0755) && errno != EEXIST) return err_set(err, WHALE_E_IO, "%s: %m", dir);
    }
    snprintf(lock, sizeof lock, "%snames.json.lock", dir);
    snprintf(file, sizeof file, "%snames.json", dir);
    snprintf(tmp, sizeof tmp, "%snames.json.%d", dir, (int)getpid());
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || flock(fd, LOCK_EX)) {
        if (fd >= 0) close(fd);
        return err_set(err, WHALE_E_IO, "%s: %m", lock);
    }
    cJSON *j = NULL;
    int rc = read_names(&j, err);
    if (!rc) rc = change(j, name, path, replace, err);
    if (rc > 0) { /* changed: write it */
        char *text = cJSON_Print(j);
        FILE *f = text ? fopen(tmp, "wb") : NULL;
        int bad = !f || fputs(text, f) < 0 || fputc('\n', f) < 0 || fflush(f) || fsync(fileno(f));
        if (f && fclose(f)) bad = 1;
        if (bad || rename(tmp, file)) {
            rc = err_set(err, WHALE_E_IO, "%s: %m", file);
            unlink(tmp);
        }
        free(text);
    }
    cJSON_Delete(j);
    flock(fd, LOCK_UN);
    close(fd);
    return rc;
}

static int add_name(cJSON *j, const char *name, const char *path, int replace, whale_err *err) {
    if (cJSON_GetObjectItemCaseSensitive(j, name)) {
        if (!replace)
            return err_set(err, WHALE_E_ARG, "the name '%s' is registered already (whale show %s); --force replaces it",
                           name, name);
        cJSON_DeleteItemFromObjectCaseSensitive(j, name);
    }
    cJSON *o = cJSON_AddObjectToObject(j, name);
    if (!o || !cJSON_AddStringToObject(o, "path", path)) return err_set(err, WHALE_E_NOMEM, "out of memory");
    return 1;
}

static int remove_name(cJSON *j, const char *name, const char *path, int replace, whale_err *err) {
    (void)path, (void)replace, (void)err;
    if (!cJSON_GetObjectItemCaseSensitive(j, name)) return 0;
    cJSON_DeleteItemFromObjectCaseSensitive(j, name);
    return 1;
}

int hub_registry_add(const char *name, const char *path, int replace, whale_err *err) {
    if (!hub_valid_name(name))
        return err_set(err, WHALE_E_ARG, "'%s' is not a valid name: use 1..63 of a-z 0-9 . - _ :, starting with a letter or digit", name);
    if (hub_catalog_find(name))
        return err_set(err, WHALE_E_ARG, "'%s' is a catalog name (whale show %s): choose another", name, name);
    int rc = update_names(add_name, name, path, replace, err);
    return rc < 0 ? rc : 0;
}

int hub_registry_remove(const char *name, whale_err *err) { return update_names(remove_name, name, NULL, 0, err); }

/* ---- resolving -m ----------------------------------------------------------------------------- */

const char *hub_size_text(uint64_t b, char *buf, size_t cap) {
    if (b >= 1000000000ull) snprintf(buf, cap, "%.1f GB", b / 1e9);
    else snprintf(buf, cap, "%.0f MB", b / 1e6);
    return buf;
}

int hub_resolve(const char *arg, char *buf, size_t cap, whale_err *err) {
    if (!arg) arg = "default";
    struct stat st;
    if (strchr(arg, '/')) { /* a path */
        snprintf(buf, cap, "%s", arg);
        return 0;
    }
    /* a name first (catalog, then registered), then a file here of that name */
    const hub_entry *e = hub_catalog_find(arg);
    if (e) {
        if (hub_entry_path(e, buf, cap)) return 0;
        /* the default as earlier versions kept it: default.gguf linked to the file */
        char link[4096];
        if (e->is_default && stat(hub_models_path("default.gguf", link, sizeof link), &st) == 0) {
            snprintf(buf, cap, "%s", link);
            return 0;
        }
        char sz[32];
        hub_size_text(e->size, sz, sizeof sz);
        return err_set(err, WHALE_E_NOTFOUND, "model '%s' is not pulled yet: `whale pull %s` fetches it (%s)", arg,
                       e->name, sz);
    }
    int rc = hub_registry_find(arg, buf, cap, err);
    if (rc < 0) return rc;
    if (rc == 1) {
        if (stat(buf, &st))
            return err_set(err, WHALE_E_NOTFOUND, "model '%s' is registered as %s, which is gone (`whale rm %s` forgets it)",
                           arg, buf, arg);
        return 0;
    }
    if (stat(arg, &st) == 0) {
        snprintf(buf, cap, "%s", arg);
        return 0;
    }
    size_t n = strlen(arg);
    int has_ext = n > 5 && (!strcmp(arg + n - 5, ".gguf") || !strcmp(arg + n - 5, ".json") ||
                            (n > 12 && !strcmp(arg + n - 12, ".safetensors")));
    if (!has_ext)
        return err_set(err, WHALE_E_NOTFOUND,
                       "'%s' is not a file, a catalog name or a registered name (`whale list` shows the models here, "
                       "`whale show NAME` a catalog entry)", arg);
    snprintf(buf, cap, "%s", arg); /* a missing file: the loader says so */
    return 0;
}
