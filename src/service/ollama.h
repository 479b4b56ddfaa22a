/* ollama.h — Ollama's HTTP API over the served models, so that tools written for Ollama work
 * unchanged: requests are turned into OpenAI-shaped bodies and run by completions.c, replies are
 * written in Ollama's shapes (api_ollama.c), errors as {"error": "..."}.
 *   POST /api/chat       {model, messages, stream (default true), format, options, think}
 *   POST /api/generate   {model, prompt, suffix, system, raw, stream, format, options, think};
 *                        an empty prompt loads the model and answers done_reason "load"
 *   GET  /api/tags       the served models (and their aliases)
 *   GET  /api/ps         the loaded ones
 *   POST /api/show       {model}: its details and capabilities
 *   GET  /api/version
 * options: num_predict, temperature, top_p, seed, stop, presence_penalty, frequency_penalty
 * (others are ignored, as Ollama ignores what a model does not use); format "json" or a JSON
 * schema: the answer is a JSON object (a schema's shape is not enforced). Refused with a
 * message: images, tools (use /v1/chat/completions), template, context. keep_alive is ignored:
 * --max-loaded and --max-memory decide what stays loaded. */
#ifndef WHALE_SERVICE_OLLAMA_H
#define WHALE_SERVICE_OLLAMA_H

#include "service/completions.h"
#include "service/http.h"
#include "service/models.h"

/* The handlers (ctx: the server's completions, whose registry lists the models). */
void ollama_chat(void *ctx, http_req *q, http_reply *out);
void ollama_generate(void *ctx, http_req *q, http_reply *out);
void ollama_tags(void *ctx, http_req *q, http_reply *out);
void ollama_ps(void *ctx, http_req *q, http_reply *out);
void ollama_show(void *ctx, http_req *q, http_reply *out);
void ollama_version(void *ctx, http_req *q, http_reply *out);

#endif
