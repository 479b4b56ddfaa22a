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

#endif
