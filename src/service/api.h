/* api.h — the OpenAI / DeepSeek chat-completions API over the engine (whale.h), without HTTP: a
 * request body in, a prompt and parameters out (with the error status and body when the request
 * is bad), and the running text state of a reply (detokenizing, splitting reasoning from the
 * answer, stop strings) that turns token ids into response JSON or stream chunks.
 *
 * api_parse.c parses, api_reply.c builds replies; completions.c does the HTTP around them. Owns
 * the parsed request and reply state; borrows the model. */
#ifndef WHALE_SERVICE_API_H
#define WHALE_SERVICE_API_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "base/strbuf.h"
#include "whale.h"

#define API_MAX_BODY (8u << 20) /* request bytes: far above any prompt a context holds */
#define API_BODY_PER_TOKEN 16   /* request bytes per context token: a token is rarely more than 8
                                   bytes of text, and JSON escaping may double that */
#define API_BODY_EXTRA (256u << 10) /* request bytes beside the prompt's text: tool schemas,
                                       parameters, message framing */
#define API_MAX_MESSAGES 4096   /* messages per request */
#define API_MAX_STOP 16         /* stop strings, as OpenAI allows 4 and DeepSeek 16 */
#define API_MAX_STOP_LEN 256    /* bytes per stop string */
#define API_MAX_TOOLS 128       /* function tools per request, as OpenAI allows */
#define API_MAX_JSON_DEPTH 64   /* nesting of a request body: tool schemas need a few levels, a
                                   parser's stack should not meet 100,000 */

typedef struct api_ctx {
    const whale_model *m;   /* its vocabulary and chat formats (whale.h) */
    const char *fmt;        /* the chat format's name: "deepseek-r1", "chatml" */
    const char *model_name; /* the file's name, as /models lists it */
    const char *alias;      /* deepseek-reasoner or deepseek-chat, or NULL (another model has it) */
    int reasoning;          /* the format starts replies inside <think> */
    int64_t n_ctx;
    int32_t fim[3];         /* fill-in-the-middle prefix, suffix, middle tokens, or -1 */
    size_t max_token_bytes; /* the most text one token stands for: B bytes of text are at least
                               B / max_token_bytes tokens (0: unknown) */
} api_ctx;

/* The largest request body worth reading for a context of n_ctx tokens: API_BODY_PER_TOKEN bytes
 * per token plus API_BODY_EXTRA, never above API_MAX_BODY. A larger body cannot hold a prompt
 * that fits, so it is refused (413) before it is read or tokenized. */
size_t api_max_body(int64_t n_ctx);

/* Fill in the fill-in-the-middle markers and max_token_bytes from the vocabulary. */
void api_ctx_tokens(api_ctx *a);

typedef enum api_kind { API_CHAT = 0, API_COMPLETION } api_kind;
/* How the reply is written: OpenAI's JSON and server-sent events, or Ollama's JSON and
 * newline-delimited JSON (api_ollama.c) for /api/chat (a message) and /api/generate (a response). */
typedef enum api_dialect { API_OPENAI = 0, API_OLLAMA_CHAT, API_OLLAMA_GENERATE } api_dialect;

#define API_MAX_TOOL_NAME 64

typedef struct api_req api_req;
struct api_req {
    api_kind kind;
    int prefix;       /* chat prefix completion: the last (assistant) message starts the reply */
    whale_ids prompt;
    whale_request sp; /* the engine's request: prompt, sampling, limits, JSON mode, tools */
    int stream, include_usage;
    int resumable;    /* stream_options.resumable: the answer goes on when its client goes away, and
                         can be read again from any event (answers.h) */
    int json;         /* response_format json_object */
    int logprobs;     /* return log probabilities (top_logprobs best alternatives) */
    char *stop[API_MAX_STOP];
    int n_stop;
    char *tools[API_MAX_TOOLS]; /* each tool's JSON as the template renders it */
    int n_tools;
    int tool_force;             /* tool_choice: 1 "required", 2 the function named below */
    char tool_force_name[API_MAX_TOOL_NAME + 1];
    api_dialect dialect;        /* set by the caller after parsing */
};

/* A request body's JSON object (*j, to cJSON_Delete) and the model it names (*model, inside *j;
 * NULL when it names none): what routing needs before the rest is parsed for that model. 0, or
 * the HTTP status (400 not a JSON object, 422 a model that is not a string) with the error body
 * in *err_body (malloc'd). */
int api_parse_head(const char *body, size_t n, cJSON **j, const char **model, char **err_body);
/* 400 "Model Not Exist" naming model and what the server has instead (served: text). */
int api_model_unknown(const char *model, const char *served, char **err_body);
/* Parse a chat-completions object (from api_parse_head) for the model a. 0, or the HTTP status
 * (400 malformed, 422 a bad value) with the OpenAI-style error body in *err_body (malloc'd). */
int api_parse_chat_json(const api_ctx *a, const cJSON *j, api_req *out, char **err_body);
/* The same for /beta/completions: prompt (+ suffix: fill in the middle). */
int api_parse_completion_json(const api_ctx *a, const cJSON *j, api_req *out, char **err_body);
/* Both from a body, for a server of the one model a: a model field naming another is refused. */
int api_parse_chat(const api_ctx *a, const char *body, size_t n, api_req *out, char **err_body);
void api_req_free(api_req *r);
/* 1 if name is one of the request's tools. */
int api_req_offers(const api_req *q, const char *name);
int api_parse_completion(const api_ctx *a, const char *body, size_t n, api_req *out, char **err_body);

/* An OpenAI-style error body: {"error": {"message", "type", "param", "code"}}; malloc'd. */
char *api_error_body(const char *message, const char *type, const char *param, const char *code);
/* A request body parsed as a JSON object, or NULL with *why saying what is wrong with it (not
 * JSON, nested deeper than API_MAX_JSON_DEPTH, not an object), for a 400. */
cJSON *api_parse_object(const char *body, size_t n, const char **why);

/* The reply being written: token ids in, reasoning and answer text out. */
typedef struct api_reply {
    const api_ctx *a;
    const api_req *q;
    whale_text *tx;         /* detokenizing and the reasoning split */
    strbuf think, answer;   /* all text so far */
    size_t sent_think, sent_answer; /* bytes already sent as stream deltas */
    size_t n_reasoning_tokens;
    int stopped;          /* a stop string ended the answer */
    whale_job *req;       /* set after submitting: log probabilities are read from it */
    size_t n_fed;         /* ids fed so far */
    size_t *lp_idx;       /* answer tokens' indices among the generated ids (logprobs) */
    size_t n_lp, cap_lp, sent_lp;
    void *calls;          /* cJSON array of the tool calls found in the answer at the end, or NULL */
    size_t content_len;   /* with calls: the answer text before them */
    char id[40];
    long long created;
    double t0;            /* when it started (clock.h), for Ollama's durations */
    unsigned long long n_events; /* stream events written (each has "id: <id>:<n>") */
} api_reply;

/* 0, or -1 when out of memory (api_reply_free is still safe). */
int api_reply_init(api_reply *r, const api_ctx *a, const api_req *q);
/* Feed generated ids; returns 1 when a stop string was found (stop generating). */
int api_reply_feed(api_reply *r, const int32_t *ids, size_t n);
/* End of generation: flush held text. */
void api_reply_end(api_reply *r);
void api_reply_free(api_reply *r);

/* The whole response (non-streaming), malloc'd. */
char *api_reply_json(api_reply *r, const whale_result *res);
/* Stream events: the first chunk (role), the deltas not sent yet (0 bytes when none), the
 * final chunk with finish_reason, the usage chunk, and "data: [DONE]". Appended to out. */
void api_stream_first(api_reply *r, strbuf *out);
void api_stream_deltas(api_reply *r, strbuf *out, int final);
void api_stream_end(api_reply *r, const whale_result *res, strbuf *out);

/* Ollama's forms of the same (api_ollama.c; the calls above turn to them for its dialects): one
 * NDJSON line per delta of key "reasoning_content" or "content", the last line (done, counts,
 * durations), and the whole non-streamed body (malloc'd). */
void api_ollama_chunk(api_reply *r, strbuf *out, const char *key, const char *text, size_t n);
void api_ollama_end(api_reply *r, const whale_result *res, strbuf *out);
char *api_ollama_json(api_reply *r, const whale_result *res);
/* "2026-12-07T18:30:16.000000000Z": the time t in Ollama's form (created_at), into buf. */
const char *api_ollama_time(long long t, char *buf, size_t cap);
#endif
