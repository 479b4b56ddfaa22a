/* whale_impl.h — what the public handles of whale.h hold (private to src/lib).
 *
 * libwhale is a thin layer: a whale_model is a loaded model plus what requests need from its
 * vocabulary (the reasoning budget's closing tokens, the model's identity for the context
 * cache); a whale_engine is a scheduler plus the vocabulary tables constraints read; a
 * whale_job is the scheduler's request itself. */
#ifndef WHALE_LIB_IMPL_H
#define WHALE_LIB_IMPL_H

#include "engine/chat_format.h"
#include "model/model.h"
#include "whale.h"

struct whale_model {
    model *m;              /* NULL when opened for its vocabulary only */
    const tokenizer *tok;  /* the model's, or own_tok; NULL: none */
    tokenizer *own_tok;    /* vocabulary only: loaded here */
    char *own_template;    /* vocabulary only: the GGUF chat template */
    char path[4096];
    char arch[32];
    uint64_t identity; /* of the weights' files: keeps another model's cache blocks out */
    int n_threads;
    chat_format_kind fmt; /* detected from the template and vocabulary; NONE: no chat format */
    /* the reasoning budget: </think>, and what a spent budget forces ("\n</think>\n\n") */
    int32_t think_end, close[8];
    size_t n_close;
};

#endif
