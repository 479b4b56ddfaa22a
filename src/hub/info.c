/* info.c — what `whale list` and `whale show` say of a model: architecture, parameters,
 * quantization, bytes on disk. Reads metadata and tensor tables only. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "formats/dtype_summary.h"
#include "formats/gguf.h"
#include "formats/json_file.h"
#include "formats/safetensors.h"
#include "hub/hub.h"

/* general.file_type, as llama.cpp numbers its LLAMA_FTYPE values. */
static const char *ftype_name(int64_t t) {
    static const struct { int v; const char *name; } names[] = {
        {0, "F32"},     {1, "F16"},     {2, "Q4_0"},     {3, "Q4_1"},     {7, "Q8_0"},     {8, "Q5_0"},
        {9, "Q5_1"},    {10, "Q2_K"},   {11, "Q3_K_S"},  {12, "Q3_K_M"},  {13, "Q3_K_L"},  {14, "Q4_K_S"},
        {15, "Q4_K_M"}, {16, "Q5_K_S"}, {17, "Q5_K_M"},  {18, "Q6_K"},    {32, "BF16"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].v == t) return names[i].name;
    return NULL;
}

/* The dtype holding most of the bytes. */
static const char *main_dtype(const dtype_summary *s) {
    int best = -1;
    for (int i = 0; i < s->n_rows; i++)
        if (best < 0 || s->row[i].bytes > s->row[best].bytes) best = i;
    return best < 0 ? "?" : dtype_name(s->row[best].type);
}

static int gguf_info(const char *path, hub_info *out, whale_err *err) {
    gguf_file f;
    int rc = gguf_open(&f, path, GGUF_OPEN_METADATA_ONLY, err);
    if (rc) return rc;
    gguf_str arch;
    if (!gguf_get_str(&f, "general.architecture", &arch, NULL))
        snprintf(out->arch, sizeof out->arch, "%.*s", (int)arch.n, arch.s);
    dtype_summary s;
    dtype_summary_init(&s);
    dtype_summary_gguf(&s, &f);
    out->params = (uint64_t)s.n_elems;
    int64_t ft;
    const char *q = gguf_get_i64(&f, "general.file_type", &ft, NULL) ? NULL : ftype_name(ft);
    snprintf(out->quant, sizeof out->quant, "%s", q ? q : main_dtype(&s));
    gguf_close(&f);
    return 0;
}

/* A Hugging Face checkpoint directory: config.json's model_type, the safetensors' tensors. */
static int dir_info(const char *path, hub_info *out, whale_err *err) {
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", path);
    cJSON *j = json_read_file(p, 1 << 20, NULL);
    if (!j) return err_set(err, WHALE_E_FORMAT, "%s: not a model directory (no readable config.json)", path);
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    snprintf(out->arch, sizeof out->arch, "%s", cJSON_IsString(mt) ? mt->valuestring : "?");
    cJSON_Delete(j);
    st_model m;
    if (st_open(&m, path, NULL) == 0) {
        dtype_summary s;
        dtype_summary_init(&s);
        dtype_summary_st(&s, &m);
        out->params = (uint64_t)s.n_elems;
        snprintf(out->quant, sizeof out->quant, "%s", main_dtype(&s));
        st_close(&m);
    }
    return 0;
}

static uint64_t dir_bytes(const char *path) {
    uint64_t sum = 0;
    DIR *d = opendir(path);
    struct dirent *de;
    char p[4200];
    struct stat st;
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.' && snprintf(p, sizeof p, "%s/%s", path, de->d_name) < (int)sizeof p &&
            !stat(p, &st) && S_ISREG(st.st_mode))
            sum += (uint64_t)st.st_size;
    if (d) closedir(d);
    return sum;
}

int hub_model_info(const char *path, hub_info *out, whale_err *err) {
    memset(out, 0, sizeof *out);
    snprintf(out->arch, sizeof out->arch, "?");
    snprintf(out->quant, sizeof out->quant, "?");
    struct stat st;
    if (stat(path, &st)) return err_set(err, WHALE_E_IO, "%s: %m", path);
    if (S_ISDIR(st.st_mode)) {
        out->bytes = dir_bytes(path);
        return dir_info(path, out, err);
    }
    out->bytes = (uint64_t)st.st_size;
    return gguf_info(path, out, err);
}
