/* safetensors_write.c — see safetensors_write.h. */
#include "formats/safetensors_write.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "formats/safetensors.h"

int st_write(const char *path, const st_out_tensor *t, int n, const char *const *meta_kv, int n_meta, whale_err *err) {
    cJSON *h = cJSON_CreateObject();
    if (!h) return err_set(err, WHALE_E_NOMEM, "out of memory");
    if (n_meta) {
        cJSON *m = cJSON_AddObjectToObject(h, "__metadata__");
        for (int i = 0; i < n_meta; i++) cJSON_AddStringToObject(m, meta_kv[2 * i], meta_kv[2 * i + 1]);
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_AddObjectToObject(h, t[i].name), *shape = cJSON_AddArrayToObject(o, "shape"),
              *offs = cJSON_AddArrayToObject(o, "data_offsets");
        cJSON_AddStringToObject(o, "dtype", t[i].dtype == WHALE_DTYPE_I32 ? "I32" : st_dtype_name(t[i].dtype));
        for (int d = 0; d < t[i].n_dims; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].shape[d]));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += t[i].nbytes;
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
    }
    char *text = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (!text) return err_set(err, WHALE_E_NOMEM, "out of memory");
    size_t hl = strlen(text), padded = (hl + 8 + 7) / 8 * 8 - 8; /* data starts 8-aligned */
    char part[4200];
    snprintf(part, sizeof part, "%s.part", path);
    FILE *f = fopen(part, "wb");
    int rc = 0;
    if (!f) rc = err_set(err, WHALE_E_IO, "%s: %m", part);
    uint64_t len = padded;
    if (!rc && (fwrite(&len, 8, 1, f) != 1 || fwrite(text, 1, hl, f) != hl)) rc = err_set(err, WHALE_E_IO, "%s: %m", part);
    for (size_t i = hl; !rc && i < padded; i++)
        if (fputc(' ', f) == EOF) rc = err_set(err, WHALE_E_IO, "%s: %m", part);
    for (int i = 0; !rc && i < n; i++)
        if (t[i].nbytes && fwrite(t[i].data, 1, t[i].nbytes, f) != t[i].nbytes) rc = err_set(err, WHALE_E_IO, "%s: %m", part);
    if (f && (fflush(f) || fsync(fileno(f))) && !rc) rc = err_set(err, WHALE_E_IO, "%s: %m", part);
    if (f && fclose(f) && !rc) rc = err_set(err, WHALE_E_IO, "%s: %m", part);
    if (!rc && rename(part, path)) rc = err_set(err, WHALE_E_IO, "%s: %m", path);
    if (rc) unlink(part);
    free(text);
    return rc;
}
