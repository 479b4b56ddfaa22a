/* safetensors_write.h — writing a safetensors file: tensors given as data, a JSON header
 * (names in the given order, 8-byte aligned), optional __metadata__ strings. Written to
 * PATH.part and renamed, so a reader never sees half a file. */
#ifndef WHALE_FORMATS_SAFETENSORS_WRITE_H
#define WHALE_FORMATS_SAFETENSORS_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "formats/dtype.h"
#include "whale.h"

typedef struct st_out_tensor {
    const char *name;
    whale_dtype dtype; /* F32, F16, BF16, I32 (as U32's bytes), ... with a safetensors name */
    int n_dims;
    int64_t shape[8];
    const void *data;
    size_t nbytes;
} st_out_tensor;

/* meta: n_meta key/value pairs (may be 0). */
int st_write(const char *path, const st_out_tensor *t, int n, const char *const *meta_kv, int n_meta, whale_err *err);

#endif
