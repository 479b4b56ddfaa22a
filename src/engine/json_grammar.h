/* json_grammar.h — a byte-level recognizer of JSON prefixes, for constrained decoding (the API's
 * response_format {"type": "json_object"}): a candidate token is allowed when its bytes keep the
 * text a prefix of some valid JSON object.
 *
 * A small pushdown automaton over RFC 8259: objects and arrays (a stack of JSON_MAX_DEPTH open
 * brackets), strings with escapes and \uXXXX, numbers, true/false/null, whitespace (at most
 * JSON_MAX_WS bytes in a row, so a model cannot stall in blank space). The top-level value must
 * be an object. State is a plain struct: copy it to try bytes without committing. */
#ifndef WHALE_ENGINE_JSON_GRAMMAR_H
#define WHALE_ENGINE_JSON_GRAMMAR_H

#include <stddef.h>
#include <stdint.h>

#define JSON_MAX_DEPTH 64
#define JSON_MAX_WS 8

typedef struct json_grammar {
    uint8_t stack[JSON_MAX_DEPTH]; /* '{' or '[' */
    int depth;
    int state;   /* lexical state (json_grammar.c) */
    int sub;     /* position inside a literal or \u escape */
    int ws;      /* whitespace bytes in a row */
    int in_key;  /* the string being read is an object key */
} json_grammar;

void json_grammar_init(json_grammar *g);
/* Feed bytes: 0 if they keep the text a valid JSON prefix (g advanced), -1 if not (g is then
 * undefined: feed a copy to test). */
int json_grammar_feed(json_grammar *g, const char *s, size_t n);
/* 1 when a complete top-level object has been read (only whitespace may follow). */
int json_grammar_complete(const json_grammar *g);

/* ---- checking many tokens against one state (masking a vocabulary) ---------------------- */

/* Token classes: kinds of byte strings some states keep whole without looking at each byte.
 * A vocabulary's classes are worked out once (json_token_class), then each state's probe says
 * which classes it takes. */
enum {
    JSON_TOKEN_STRING = 1, /* every byte >= 0x20, none '"' or '\\': inside a string, stays there */
    JSON_TOKEN_DIGITS = 2, /* every byte a digit: inside a number's digits, stays there */
};
int json_token_class(const char *s, size_t n);

/* What one state accepts, worked out once per state: json_probe_accepts then answers for a
 * token by its class or its first bytes where they decide, and feeds a copy of the state only
 * where they do not. */
typedef struct json_probe {
    json_grammar g;
    int classes;           /* JSON_TOKEN_* this state keeps whole */
    int ws_counts;         /* whitespace only counts here (outside strings, literals, a number's
                            * middle): after any run of it the same bytes may come */
    uint8_t first[256];    /* byte c may come next */
    uint8_t after_ws[256]; /* ws_counts: byte c may come after whitespace */
} json_probe;
void json_probe_init(json_probe *p, const json_grammar *g);
/* 1 when s[0..n) (of class cls) keeps the text a valid prefix, 0 if not: always what
 * json_grammar_feed on a copy of the probed state says. */
int json_probe_accepts(const json_probe *p, const char *s, size_t n, int cls);

#endif
