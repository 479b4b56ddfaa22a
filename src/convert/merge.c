/* merge.c — a LoRA adapter baked into a GGUF model (convert_merge, see convert.h): the PEFT
 * adapter read by formats/peft.c, each of its modules matched to the base's tensor (through the
 * public Hugging Face -> GGUF name mapping of model/model.h), and the writer told to add the
 * scaled update B A to every row of those tensors while the file is written; the rest of the
 * tensors and the metadata are copied byte for byte.
 * Owns: which tensors change and the scaled, reordered B each gets. Does not own the update's
 * arithmetic per row (writer.c), the adapter's files (peft.c) or the inference path
 * (model/lora.c, which applies the same adapter without merging). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "convert/convert.h"
#include "formats/gguf.h"
#include "formats/gguf_hparams.h"
#include "formats/peft.h"
#include "model/model.h"

/* Longest GGUF tensor name handled (ggml caps them at 64). */
#define MERGE_MAX_NAME 256

/* The GGUF matrices of a dense layer an adapter may change (those model/lora.c applies). */
static const char *const merge_mats[] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                         "ffn_gate", "ffn_up", "ffn_down"};

/* One changed tensor: its GGUF name and the update the writer adds. */
typedef struct merge_upd {
    char name[MERGE_MAX_NAME];
    const float *a; /* borrowed from the adapter */
    float *b;       /* owned: scaled, rows in the file's order */
} merge_upd;

/* The GGUF tensor name an adapter module changes ("model.layers.3.self_attn.q_proj" ->
 * "blk.3.attn_q.weight"): 0, or -1 for a module Whale does not merge. */
static int module_tensor(const char *module, char *out, size_t cap) {
    char hf[PEFT_MAX_NAME + 16];
    snprintf(hf, sizeof hf, "%s.weight", module);
    if (!model_name_from_hf(hf, out, cap)) return -1;
    long long l;
    int n = 0;
    char mat[32];
    if (sscanf(out, "blk.%lld.%31[a-z_].weight%n", &l, mat, &n) != 2 || out[n]) return -1;
    for (size_t i = 0; i < sizeof merge_mats / sizeof merge_mats[0]; i++)
        if (!strcmp(mat, merge_mats[i])) return 0;
    return -1;
}

static const gguf_tensor *find(const gguf_file *f, const char *name) {
    size_t n = strlen(name);
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].name.n == n && !memcmp(f->tensors[i].name.s, name, n))
            return &f->tensors[i];
    return NULL;
}

/* Check every module against the base and build its update into u (a->n_mods entries). */
static int plan(const gguf_file *f, const model_hparams *hp, const peft_adapter *a, merge_upd *u,
                whale_err *err) {
    /* GGUF Llama files hold q and k with each head's rows reordered for adjacent-pair rotation;
     * B's rows are put in the same order. */
    int permute = hp->arch == MODEL_ARCH_LLAMA;
    int64_t hd = hp->head_dim;
    static const char *const known[] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                        "gate_proj", "up_proj", "down_proj"};
    for (int i = 0; i < a->n_targets; i++) {
        const char *dot = strrchr(a->targets[i], '.'), *last = dot ? dot + 1 : a->targets[i];
        size_t k = 0;
        while (k < sizeof known / sizeof known[0] && strcmp(known[k], last)) k++;
        if (k == sizeof known / sizeof known[0])
            return err_set(err, WHALE_E_UNSUPPORTED,
                           "target module '%s' is not one Whale merges "
                           "(q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)",
                           a->targets[i]);
    }
    for (int i = 0; i < a->n_mods; i++) {
        const peft_module *pm = &a->mods[i];
        if (module_tensor(pm->name, u[i].name, sizeof u[i].name))
            return err_set(
                err, WHALE_E_UNSUPPORTED,
                "module '%s' is not one Whale merges "
                "(model.layers.N.self_attn.{q,k,v,o}_proj, model.layers.N.mlp.{gate,up,down}_proj)",
                pm->name);
        const gguf_tensor *gt = find(f, u[i].name);
        if (!gt)
            return err_set(err, WHALE_E_FORMAT, "module '%s': the base has no tensor %s", pm->name,
                           u[i].name);
        if (gt->n_dims != 2 || gt->ne[0] != pm->n_in || gt->ne[1] != pm->n_out)
            return err_set(
                err, WHALE_E_FORMAT,
                "module '%s': the adapter is for a [%lld x %lld] matrix, %s is [%lld x %lld] "
                "(an adapter for another model?)",
                pm->name, (long long)pm->n_out, (long long)pm->n_in, u[i].name,
                (long long)(gt->n_dims > 1 ? gt->ne[1] : 1), (long long)gt->ne[0]);
        if (!dtype_get(gt->type) || !dtype_get(gt->type)->can_dequantize)
            return err_set(err, WHALE_E_UNSUPPORTED, "%s is %s, which Whale cannot dequantize",
                           u[i].name, dtype_name(gt->type));
        for (int j = 0; j < i; j++)
            if (!strcmp(u[j].name, u[i].name))
                return err_set(err, WHALE_E_FORMAT, "module '%s' appears twice", pm->name);
        int qk = strstr(u[i].name, ".attn_q.") || strstr(u[i].name, ".attn_k.");
        int64_t r = a->r;
        if (!(u[i].b = malloc((size_t)(pm->n_out * r) * sizeof(float))))
            return err_set(err, WHALE_E_NOMEM, "out of memory");
        for (int64_t o = 0; o < pm->n_out; o++) {
            int64_t s = permute && qk ? o / hd * hd + (o % hd % 2) * (hd / 2) + o % hd / 2 : o;
            for (int64_t k = 0; k < r; k++) u[i].b[o * r + k] = pm->b[s * r + k] * a->scale;
        }
        u[i].a = pm->a;
    }
    return 0;
}

#define CHAT_TEMPLATE_KEY "tokenizer.chat_template"

int convert_merge(const char *base, const char *adapter, const char *out, whale_dtype type,
                  const char *chat_template, const convert_hooks *hooks, convert_report *rep, whale_err *err) {
    if (type != WHALE_DTYPE_F32 && type != WHALE_DTYPE_F16 && type != WHALE_DTYPE_Q8_0)
        return err_set(err, WHALE_E_UNSUPPORTED,
                       "merged matrices are written as f32, f16 or q8_0, not %s", dtype_name(type));
    gguf_file f;
    peft_adapter a = {0};
    merge_upd *u = NULL;
    convert_writer *o = NULL;
    model_hparams hp;
    int rc = gguf_open(&f, base, 0, err);
    if (rc) return rc;
    if ((rc = gguf_hparams_load(&hp, &f, err))) {
        err_prefix(err, "%s", base);
        goto done;
    }
    if (hp.arch != MODEL_ARCH_QWEN2 && hp.arch != MODEL_ARCH_LLAMA) {
        rc = err_set(err, WHALE_E_UNSUPPORTED,
                     "%s: merging LoRA adapters into %s models (MLA attention, MoE experts) is "
                     "not supported yet; Whale merges into dense Qwen2 and Llama models",
                     base, model_arch_name(hp.arch));
        goto done;
    }
    if ((rc = peft_load(&a, adapter, err))) goto done;
    if (!(u = calloc((size_t)a.n_mods, sizeof *u))) {
        rc = err_set(err, WHALE_E_NOMEM, "out of memory");
        goto done;
    }
    if ((rc = plan(&f, &hp, &a, u, err))) {
        err_prefix(err, "%s", adapter);
        goto done;
    }
    o = convert_writer_init();
    if (!o) {
        rc = err_set(err, WHALE_E_NOMEM, "out of memory");
        goto done;
    }
    for (uint64_t i = 0; i < f.n_kv && !rc; i++) {
        const gguf_str *k = &f.kv[i].key;
        if (chat_template && k->n == sizeof CHAT_TEMPLATE_KEY - 1 && !memcmp(k->s, CHAT_TEMPLATE_KEY, k->n))
            continue; /* replaced below */
        if (gguf_writer_copy_kv(convert_writer_gguf(o), &f.kv[i]))
            rc = err_set(err, WHALE_E_NOMEM, "out of memory");
    }
    if (!rc && chat_template &&
        gguf_writer_add_str(convert_writer_gguf(o), CHAT_TEMPLATE_KEY, chat_template))
        rc = err_set(err, WHALE_E_NOMEM, "out of memory");
    for (uint64_t i = 0; i < f.n_tensors && !rc; i++) {
        const gguf_tensor *gt = &f.tensors[i];
        char name[MERGE_MAX_NAME];
        if (gt->name.n >= sizeof name) {
            rc = err_set(err, WHALE_E_FORMAT, "%s: tensor name of %llu bytes is too long", base,
                         (unsigned long long)gt->name.n);
            break;
        }
        memcpy(name, gt->name.s, (size_t)gt->name.n);
        name[gt->name.n] = 0;
        const merge_upd *up = NULL;
        for (int k = 0; k < a.n_mods && !up; k++)
            if (!strcmp(u[k].name, name)) up = &u[k];
        convert_src src = {gt->type, 1, &gt->data, NULL, 0, 1, NULL, NULL, 0};
        whale_dtype want = gt->type, t = gt->type;
        if (up) {
            src.copy = 0;
            src.lora_a = up->a;
            src.lora_b = up->b;
            src.lora_r = a.r;
            want = type;
            t = convert_fit_type(type, gt->ne[0]);
        }
        rc = convert_writer_add(o, name, want, t, gt->n_dims, gt->ne, &src, NULL, err);
    }
    if (!rc) rc = convert_writer_write(o, out, hooks, rep, err);
    if (!rc && rep) rep->in_bytes = (double)f.map.size;
done:
    convert_writer_free(o);
    if (u)
        for (int k = 0; k < a.n_mods; k++) free(u[k].b);
    free(u);
    peft_free(&a);
    gguf_close(&f);
    return rc;
}
