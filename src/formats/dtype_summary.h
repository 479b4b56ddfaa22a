/* dtype_summary.h — what a set of tensors holds per element type: tensors, elements and bytes
 * per dtype, in the order each dtype first appears, plus totals. One summary for GGUF files,
 * safetensors checkpoints and the files conversion writes (`whale info`, `whale quantize`).
 * Owns no memory; printing belongs to the CLI. */
#ifndef WHALE_FORMATS_DTYPE_SUMMARY_H
#define WHALE_FORMATS_DTYPE_SUMMARY_H

#include <stddef.h>
#include <stdint.h>

#include "formats/dtype.h"

/* Distinct dtypes kept apart: Whale knows fewer than 32 (dtype.h), and a parsed file holds only
 * known ones; more (a future type list) still count in the totals. */
#define DTYPE_SUMMARY_MAX 64

typedef struct dtype_summary_row {
    whale_dtype type;
    uint64_t n_tensors;
    double n_elems; /* double: the sum of a 671B model's elements still counts exactly enough */
    double bytes;
} dtype_summary_row;

typedef struct dtype_summary {
    dtype_summary_row row[DTYPE_SUMMARY_MAX];
    int n_rows;
    uint64_t n_tensors;
    double n_elems, bytes;
} dtype_summary;

struct gguf_file;
struct st_model;

void dtype_summary_init(dtype_summary *s);
/* Count one tensor of type t. */
void dtype_summary_add(dtype_summary *s, whale_dtype t, double n_elems, double bytes);
/* Sort the rows by tensor count, most first (ties keep their order). */
void dtype_summary_sort_by_count(dtype_summary *s);
/* Every tensor of an open GGUF file / safetensors checkpoint. */
void dtype_summary_gguf(dtype_summary *s, const struct gguf_file *f);
void dtype_summary_st(dtype_summary *s, const struct st_model *m);

#endif
