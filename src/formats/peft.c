/* peft.c — LoRA adapters in PEFT's layout (see peft.h): adapter_config.json read through cJSON
 * with a size bound, adapter_model.safetensors through the checked safetensors reader, every
 * tensor name, shape and the config's options validated before anything is kept; and the
 * writer of the same two files. */
#include "formats/peft.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "formats/dtype.h"
#include "formats/json_file.h"
#include "formats/safetensors.h"
#include "formats/safetensors_write.h"

/* Longest adapter path we build file names from (PATH_MAX on Linux). */
#define PEFT_MAX_PATH 4096

static const char PREFIX[] = "base_model.model.";

float peft_scale(double alpha, int64_t r, int rslora) {
    return (float)(rslora ? alpha / sqrt((double)r) : alpha / (double)r);
}

void peft_free(peft_adapter *a) {
    if (!a) return;
    for (int i = 0; i < a->n_mods; i++) {
        free(a->mods[i].a);
        free(a->mods[i].b);
    }
    free(a->mods);
    for (int i = 0; i < a->n_targets; i++) free(a->targets[i]);
    free(a->targets);
    memset(a, 0, sizeof *a);
}

/* ---- adapter_config.json --------------------------------------------------------------- */

/* 1 when j is absent, null, false, an empty string "none", or an empty array/object: an option
 * left at PEFT's default. */
static int is_default(const cJSON *j, const char *none) {
    if (!j || cJSON_IsNull(j) || cJSON_IsFalse(j)) return 1;
    if (none && cJSON_IsString(j) && !strcmp(j->valuestring, none)) return 1;
    if ((cJSON_IsArray(j) || cJSON_IsObject(j)) && !j->child) return 1;
    return 0;
}

static int read_config(peft_adapter *a, const char *path, whale_err *err) {
    cJSON *j = json_read_file(path, PEFT_MAX_CONFIG_BYTES, err);
    if (!j) return err->code;
    int rc = 0;
    const cJSON *v;
    if (!cJSON_IsObject(j)) {
        rc = err_set(err, WHALE_E_FORMAT, "%s: not a JSON object", path);
        goto done;
    }
    v = cJSON_GetObjectItemCaseSensitive(j, "peft_type");
    if (v && !(cJSON_IsString(v) && !strcmp(v->valuestring, "LORA"))) {
        rc = err_set(err, WHALE_E_UNSUPPORTED,
                     "%s: peft_type is not \"LORA\" (Whale applies LoRA adapters only)", path);
        goto done;
    }
    v = cJSON_GetObjectItemCaseSensitive(j, "r");
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1 ||
        v->valuedouble > PEFT_MAX_RANK) {
        rc = err_set(err, WHALE_E_FORMAT, "%s: \"r\" must be an integer rank in 1..%d", path,
                     PEFT_MAX_RANK);
        goto done;
    }
    a->r = (int64_t)v->valuedouble;
    v = cJSON_GetObjectItemCaseSensitive(j, "lora_alpha");
    a->alpha = 8; /* PEFT's default */
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
            rc = err_set(err, WHALE_E_FORMAT, "%s: \"lora_alpha\" must be a number", path);
            goto done;
        }
        a->alpha = v->valuedouble;
    }
    v = cJSON_GetObjectItemCaseSensitive(j, "use_rslora");
    if (v && !cJSON_IsBool(v) && !cJSON_IsNull(v)) {
        rc = err_set(err, WHALE_E_FORMAT, "%s: \"use_rslora\" must be true or false", path);
        goto done;
    }
    a->rslora = cJSON_IsTrue(v);
    static const struct {
        const char *key, *none, *why;
    } refused[] = {
        {"fan_in_fan_out", NULL, "transposed (Conv1D) weights"},
        {"use_dora", NULL, "DoRA's magnitude vectors"},
        {"bias", "none", "trained biases"},
        {"lora_bias", NULL, "trained biases"},
        {"layer_replication", NULL, "replicated layers"},
        {"rank_pattern", NULL, "per-module ranks"},
        {"alpha_pattern", NULL, "per-module alphas"},
        {"modules_to_save", NULL, "fully trained module copies"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (!is_default(cJSON_GetObjectItemCaseSensitive(j, refused[i].key), refused[i].none)) {
            rc = err_set(err, WHALE_E_UNSUPPORTED, "%s: \"%s\" is set: Whale does not apply %s",
                         path, refused[i].key, refused[i].why);
            goto done;
        }
    v = cJSON_GetObjectItemCaseSensitive(j, "target_modules");
    if (cJSON_IsArray(v)) {
        int n = cJSON_GetArraySize(v);
        a->targets = calloc((size_t)(n ? n : 1), sizeof *a->targets);
        if (!a->targets) {
            rc = err_set(err, WHALE_E_NOMEM, "out of memory");
            goto done;
        }
        const cJSON *s;
        cJSON_ArrayForEach(s, v) {
            if (!cJSON_IsString(s) || strlen(s->valuestring) >= PEFT_MAX_NAME) {
                rc = err_set(err, WHALE_E_FORMAT, "%s: \"target_modules\" must list module names",
                             path);
                goto done;
            }
            if (!(a->targets[a->n_targets] = strdup(s->valuestring))) {
                rc = err_set(err, WHALE_E_NOMEM, "out of memory");
                goto done;
            }
            a->n_targets++;
        }
    } else if (v && !cJSON_IsString(v) && !cJSON_IsNull(v)) {
        rc = err_set(err, WHALE_E_FORMAT,
                     "%s: \"target_modules\" must be a list of names or a string", path);
        goto done;
    }
    a->scale = peft_scale(a->alpha, a->r, a->rslora);
done:
    cJSON_Delete(j);
    return rc;
}

/* ---- adapter_model.safetensors --------------------------------------------------------- */

/* Split "base_model.model.<module>.lora_{A,B}[.default].weight" into module and which (0 A,
 * 1 B). Returns 0, or -1 when the name is not of that form. */
static int parse_name(const char *name, char *module, int *which) {
    size_t n = strlen(name), p = sizeof PREFIX - 1;
    if (n <= p || memcmp(name, PREFIX, p)) return -1;
    static const char *const tails[] = {".lora_A.weight", ".lora_B.weight",
                                        ".lora_A.default.weight", ".lora_B.default.weight"};
    for (int t = 0; t < 4; t++) {
        size_t tl = strlen(tails[t]);
        if (n > p + tl && !strcmp(name + n - tl, tails[t])) {
            size_t ml = n - tl - p;
            if (ml >= PEFT_MAX_NAME) return -1;
            memcpy(module, name + p, ml);
            module[ml] = 0;
            *which = t % 2;
            return 0;
        }
    }
    return -1;
}

static peft_module *find_mod(peft_adapter *a, const char *name) {
    for (int i = 0; i < a->n_mods; i++)
        if (!strcmp(a->mods[i].name, name)) return &a->mods[i];
    return NULL;
}

/* The tensor's elements as F32 (an owned copy). */
static float *to_f32(const st_tensor *t) {
    float *out = malloc((size_t)t->n_elems * sizeof *out);
    if (out) dequantize_row(t->dtype, t->data, out, t->n_elems);
    return out;
}

static int cmp_mod(const void *x, const void *y) {
    return strcmp(((const peft_module *)x)->name, ((const peft_module *)y)->name);
}

static int read_tensors(peft_adapter *a, const char *path, whale_err *err) {
    st_model st;
    int rc = st_open(&st, path, err);
    if (rc) return rc;
    a->mods = calloc(st.n_tensors ? st.n_tensors : 1, sizeof *a->mods);
    if (!a->mods) {
        rc = err_set(err, WHALE_E_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < st.n_tensors; i++) {
        const st_tensor *t = &st.tensors[i];
        char module[PEFT_MAX_NAME];
        int which;
        if (parse_name(t->name, module, &which)) {
            rc = err_set(err, WHALE_E_UNSUPPORTED,
                         "%s: tensor '%s' is not a LoRA A or B matrix "
                         "(base_model.model.<module>.lora_A.weight / lora_B.weight)",
                         path, t->name);
            goto done;
        }
        if (t->dtype != WHALE_DTYPE_F32 && t->dtype != WHALE_DTYPE_F16 &&
            t->dtype != WHALE_DTYPE_BF16) {
            rc = err_set(err, WHALE_E_UNSUPPORTED,
                         "%s: tensor '%s' is %s (F32, F16 or BF16 expected)", path, t->name,
                         st_dtype_name(t->dtype));
            goto done;
        }
        /* A is (r, n_in), B is (n_out, r) */
        if (t->n_dims != 2 || t->shape[which ? 1 : 0] != a->r || t->shape[which ? 0 : 1] < 1) {
            rc = err_set(err, WHALE_E_FORMAT,
                         "%s: tensor '%s' has shape [%lld, %lld], not [%s] for rank %lld", path,
                         t->name, (long long)t->shape[0],
                         (long long)(t->n_dims > 1 ? t->shape[1] : 0),
                         which ? "n_out, r" : "r, n_in", (long long)a->r);
            goto done;
        }
        peft_module *m = find_mod(a, module);
        if (!m) {
            m = &a->mods[a->n_mods++];
            snprintf(m->name, sizeof m->name, "%s", module);
        }
        float **dst = which ? &m->b : &m->a;
        if (*dst) {
            rc = err_set(err, WHALE_E_FORMAT, "%s: module '%s' has two lora_%c matrices", path,
                         module, which ? 'B' : 'A');
            goto done;
        }
        if (which)
            m->n_out = t->shape[0];
        else
            m->n_in = t->shape[1];
        if (!(*dst = to_f32(t))) {
            rc = err_set(err, WHALE_E_NOMEM, "out of memory");
            goto done;
        }
    }
    if (!a->n_mods) {
        rc = err_set(err, WHALE_E_FORMAT, "%s: the adapter holds no LoRA matrices", path);
        goto done;
    }
    for (int i = 0; i < a->n_mods; i++)
        if (!a->mods[i].a || !a->mods[i].b) {
            rc = err_set(err, WHALE_E_FORMAT, "%s: module '%s' has lora_%c but no lora_%c", path,
                         a->mods[i].name, a->mods[i].a ? 'A' : 'B', a->mods[i].a ? 'B' : 'A');
            goto done;
        }
    qsort(a->mods, (size_t)a->n_mods, sizeof *a->mods, cmp_mod);
done:
    st_close(&st);
    return rc;
}

/* ---- the two files together ------------------------------------------------------------- */

/* The adapter's directory from path (a directory, or one of its two files). */
static int adapter_dir(const char *path, char *dir, size_t cap, whale_err *err) {
    struct stat sb;
    if (stat(path, &sb))
        return err_set(err, errno == ENOENT ? WHALE_E_NOTFOUND : WHALE_E_IO, "%s: %m", path);
    if (S_ISDIR(sb.st_mode)) {
        if (snprintf(dir, cap, "%s", path) >= (int)cap)
            return err_set(err, WHALE_E_ARG, "%s: path too long", path);
        return 0;
    }
    const char *slash = strrchr(path, '/');
    if (!slash) return snprintf(dir, cap, "."), 0;
    size_t n = (size_t)(slash - path);
    if (n + 1 > cap) return err_set(err, WHALE_E_ARG, "%s: path too long", path);
    memcpy(dir, path, n);
    dir[n] = 0;
    if (!n) snprintf(dir, cap, "/");
    return 0;
}

int peft_load(peft_adapter *a, const char *path, whale_err *err) {
    memset(a, 0, sizeof *a);
    char dir[PEFT_MAX_PATH], file[PEFT_MAX_PATH + 64];
    int rc = adapter_dir(path, dir, sizeof dir, err);
    if (rc) return rc;
    snprintf(file, sizeof file, "%s/adapter_config.json", dir);
    if ((rc = read_config(a, file, err))) {
        if (rc == WHALE_E_NOTFOUND)
            err_set(err, rc,
                    "%s: no adapter_config.json (a LoRA adapter is a PEFT directory: "
                    "adapter_config.json "
                    "and adapter_model.safetensors)",
                    dir);
        goto fail;
    }
    snprintf(file, sizeof file, "%s/adapter_model.safetensors", dir);
    if ((rc = read_tensors(a, file, err))) goto fail;
    return 0;
fail:
    peft_free(a);
    return rc;
}

/* ---- writing ---------------------------------------------------------------------------- */

static int write_config(const char *path, const peft_adapter *a, const char *base_model,
                        whale_err *err) {
    cJSON *j = cJSON_CreateObject(), *t = cJSON_CreateArray();
    int rc = 0;
    if (!j || !t) goto oom;
    cJSON_AddItemToObject(j, "target_modules", t);
    for (int i = 0; i < a->n_targets; i++)
        if (!cJSON_AddItemToArray(t, cJSON_CreateString(a->targets[i]))) goto oom;
    t = NULL;
    if (!cJSON_AddStringToObject(j, "peft_type", "LORA") ||
        !cJSON_AddStringToObject(j, "task_type", "CAUSAL_LM") ||
        !cJSON_AddNumberToObject(j, "r", (double)a->r) ||
        !cJSON_AddNumberToObject(j, "lora_alpha", a->alpha) ||
        !cJSON_AddBoolToObject(j, "use_rslora", a->rslora) ||
        !cJSON_AddNumberToObject(j, "lora_dropout", 0) ||
        !cJSON_AddBoolToObject(j, "fan_in_fan_out", 0) ||
        !cJSON_AddStringToObject(j, "bias", "none") ||
        !cJSON_AddBoolToObject(j, "inference_mode", 1) ||
        !(base_model ? cJSON_AddStringToObject(j, "base_model_name_or_path", base_model)
                     : cJSON_AddNullToObject(j, "base_model_name_or_path")))
        goto oom;
    char *text = cJSON_Print(j);
    if (!text) goto oom;
    char part[PEFT_MAX_PATH + 80];
    snprintf(part, sizeof part, "%s.part", path);
    FILE *f = fopen(part, "wb");
    if (!f)
        rc = err_set(err, WHALE_E_IO, "%s: %m", part);
    else {
        if (fputs(text, f) == EOF || fputc('\n', f) == EOF)
            rc = err_set(err, WHALE_E_IO, "%s: %m", part);
        if (fclose(f) && !rc) rc = err_set(err, WHALE_E_IO, "%s: %m", part);
        if (!rc && rename(part, path)) rc = err_set(err, WHALE_E_IO, "%s: %m", path);
        if (rc) unlink(part);
    }
    free(text);
    cJSON_Delete(j);
    return rc;
oom:
    cJSON_Delete(t);
    cJSON_Delete(j);
    return err_set(err, WHALE_E_NOMEM, "out of memory");
}

int peft_write(const char *dir, const peft_adapter *a, const char *base_model, whale_err *err) {
    if (a->r < 1 || a->r > PEFT_MAX_RANK || a->n_mods < 1)
        return err_set(err, WHALE_E_ARG,
                       "an adapter to write needs a rank in 1..%d and at least one module",
                       PEFT_MAX_RANK);
    if (strlen(dir) >= PEFT_MAX_PATH) return err_set(err, WHALE_E_ARG, "%s: path too long", dir);
    if (mkdir(dir, 0777) && errno != EEXIST) return err_set(err, WHALE_E_IO, "%s: %m", dir);
    st_out_tensor *t = calloc((size_t)a->n_mods * 2, sizeof *t);
    char(*names)[PEFT_MAX_NAME + 64] = calloc((size_t)a->n_mods * 2, sizeof *names);
    int rc = 0;
    if (!t || !names) {
        rc = err_set(err, WHALE_E_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < a->n_mods; i++) {
        const peft_module *m = &a->mods[i];
        for (int w = 0; w < 2; w++) {
            st_out_tensor *o = &t[2 * i + w];
            snprintf(names[2 * i + w], sizeof names[0], "%s%s.lora_%c.weight", PREFIX, m->name,
                     w ? 'B' : 'A');
            o->name = names[2 * i + w];
            o->dtype = WHALE_DTYPE_F32;
            o->n_dims = 2;
            o->shape[0] = w ? m->n_out : a->r;
            o->shape[1] = w ? a->r : m->n_in;
            o->data = w ? m->b : m->a;
            o->nbytes = (size_t)(o->shape[0] * o->shape[1]) * sizeof(float);
        }
    }
    char path[PEFT_MAX_PATH + 64];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    const char *meta[] = {"format", "pt"};
    if ((rc = st_write(path, t, a->n_mods * 2, meta, 1, err))) goto done;
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    rc = write_config(path, a, base_model, err);
done:
    free(t);
    free(names);
    return rc;
}
