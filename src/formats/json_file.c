/* json_file.c — see json_file.h. */
#include "formats/json_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/err.h"
#include "base/readall.h"

cJSON *json_read_file(const char *path, size_t max_bytes, whale_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_set(err, errno == ENOENT ? WHALE_E_NOTFOUND : WHALE_E_IO, "%s: %m", path);
        return NULL;
    }
    size_t n = 0;
    int too_big = 0;
    char *text = read_all(f, max_bytes, &n, &too_big);
    fclose(f);
    if (!text) {
        err_set(err, WHALE_E_IO, too_big ? "%s: larger than %zu bytes" : "%s: cannot read", path, max_bytes);
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength(text, n);
    free(text);
    if (!j) err_set(err, WHALE_E_FORMAT, "%s: not JSON", path);
    return j;
}
