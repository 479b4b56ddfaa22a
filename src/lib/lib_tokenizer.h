/* lib_tokenizer.h — the tokenizer behind a whale_model, for code inside this project that reads
 * a vocabulary at a lower level than whale.h offers: the service's request parsing and replies
 * (service/api.c: chat formats with tools, fill-in-the-middle markers, streamed pieces), until
 * they are written on whale.h's token functions. Not part of libwhale's exports. */
#ifndef WHALE_LIB_TOKENIZER_H
#define WHALE_LIB_TOKENIZER_H

#include "tokenizer/tokenizer.h"
#include "whale.h"

/* Borrowed: valid while the model is open. NULL for a model without a tokenizer. */
const tokenizer *lib_model_tokenizer(const whale_model *m);

#endif
