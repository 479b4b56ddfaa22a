/* gguf_hparams.h — reading model_hparams out of GGUF metadata. */
#ifndef WHALE_FORMATS_GGUF_HPARAMS_H
#define WHALE_FORMATS_GGUF_HPARAMS_H

#include "formats/gguf.h"
#include "formats/hparams.h"

/* Fill hp from f's metadata. Returns 0, or WHALE_E_FORMAT when general.architecture is
 * missing or a key has the wrong type. Unknown architectures load with arch UNKNOWN. */
int gguf_hparams_load(model_hparams *hp, const gguf_file *f, whale_err *err);

#endif
