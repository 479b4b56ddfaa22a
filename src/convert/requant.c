/* requant.c — a GGUF file to a GGUF file with its weight matrices in another type
 * (convert_gguf, see convert.h): metadata copied key by key (general.file_type updated), each
 * tensor re-quantized or copied by writer.c while the file is written. */
#include <string.h>

#include "base/err.h"
#include "convert/convert.h"
#include "formats/gguf.h"

/* Longest tensor name we accept; GGUF names are short ("blk.60.ffn_down_exps.weight"), and
 * ggml itself caps them at 64. */
#define REQUANT_MAX_NAME 512

/* The type a GGUF tensor gets: 1-D tensors and the router stay F32, other matrices take t's
 * type (when their rows fill its blocks). *want receives the type asked for. */
static whale_dtype target(const gguf_tensor *gt, const char *name, const convert_wtype *t, whale_dtype *want) {
    if (gt->n_dims < 2 || strstr(name, "ffn_gate_inp")) return *want = WHALE_DTYPE_F32;
    *want = convert_wtype_for(t, name);
    return convert_fit_type(*want, gt->ne[0]);
}

/* Metadata of f into w: every key as it is, general.file_type set to t's (added at the end
 * when f has none). Returns 0 or WHALE_E_NOMEM. */
static int copy_metadata(gguf_writer *w, const gguf_file *f, const convert_wtype *t) {
    int rc = 0, had = 0;
    for (uint64_t i = 0; i < f->n_kv && !rc; i++) {
        const gguf_kv *kv = &f->kv[i];
        if (kv->key.n == 17 && !memcmp(kv->key.s, "general.file_type", 17)) {
            rc = gguf_writer_add_u32(w, "general.file_type", t->ftype);
            had = 1;
        } else {
            rc = gguf_writer_copy_kv(w, kv);
        }
    }
    if (!rc && !had) rc = gguf_writer_add_u32(w, "general.file_type", t->ftype);
    return rc ? WHALE_E_NOMEM : 0;
}

int convert_gguf(const char *in, const char *out, const convert_wtype *t, const convert_hooks *hooks,
                 convert_report *rep, whale_err *err) {
    gguf_file f;
    int rc = gguf_open(&f, in, 0, err);
    if (rc) return rc;
    convert_writer *o = convert_writer_init();
    if (!o || copy_metadata(convert_writer_gguf(o), &f, t)) {
        rc = err_set(err, WHALE_E_NOMEM, "out of memory");
        goto done;
    }
    for (uint64_t i = 0; i < f.n_tensors; i++) {
        const gguf_tensor *gt = &f.tensors[i];
        char name[REQUANT_MAX_NAME];
        if (gt->name.n >= sizeof name) {
            rc = err_set(err, WHALE_E_FORMAT, "%s: tensor name of %llu bytes is too long", in,
                         (unsigned long long)gt->name.n);
            goto done;
        }
        memcpy(name, gt->name.s, (size_t)gt->name.n);
        name[gt->name.n] = 0;
        whale_dtype want, type = target(gt, name, t, &want);
        const dtype_info *di = dtype_get(gt->type);
        int copy = gt->type == type || !di->can_dequantize || gt->nbytes == 0;
        if (copy) want = type = gt->type; /* integer tensors (none in the models Whale runs) pass through */
        convert_src src = {gt->type, 1, &gt->data, NULL, 0, copy, NULL, NULL, 0};
        if ((rc = convert_writer_add(o, name, want, type, gt->n_dims, gt->ne, &src, NULL, err))) goto done;
    }
    rc = convert_writer_write(o, out, hooks, rep, err);
    if (!rc && rep) rep->in_bytes = (double)f.map.size;
done:
    convert_writer_free(o);
    gguf_close(&f);
    return rc;
}
