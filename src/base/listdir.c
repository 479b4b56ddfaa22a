/* listdir.c — see listdir.h. */
#include "base/listdir.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void list_dir_free(char **names, size_t n) {
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

int list_dir(const char *path, char ***names, size_t *n, whale_err *err) {
    *names = NULL, *n = 0;
    DIR *d = opendir(path);
    if (!d) return err_set(err, WHALE_E_IO, "%s: %s", path, strerror(errno));
    char **v = NULL;
    size_t k = 0, cap = 0;
    int rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        if (k == cap) {
            cap = cap ? cap * 2 : 64;
            char **w = realloc(v, cap * sizeof *w);
            if (!w) {
                rc = err_set(err, WHALE_E_NOMEM, "out of memory listing %s", path);
                break;
            }
            v = w;
        }
        if (!(v[k] = strdup(e->d_name))) {
            rc = err_set(err, WHALE_E_NOMEM, "out of memory listing %s", path);
            break;
        }
        k++;
    }
    closedir(d);
    if (rc) {
        list_dir_free(v, k);
        return rc;
    }
    qsort(v, k, sizeof *v, cmp_names);
    *names = v, *n = k;
    return 0;
}

void remove_flat_dir(const char *dir) {
    DIR *d = opendir(dir);
    char p[4400];
    for (struct dirent *e; d && (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && snprintf(p, sizeof p, "%s/%s", dir, e->d_name) < (int)sizeof p)
            unlink(p);
    if (d) closedir(d);
    rmdir(dir);
}
