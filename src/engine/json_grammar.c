/* json_grammar.c — JSON prefix recognizer for constrained decoding; see json_grammar.h. */
#include "engine/json_grammar.h"

#include <string.h>

enum {
    S_START,      /* before the top-level object */
    S_VALUE,      /* a value must come (after ':' or ',' in an array) */
    S_ARR_FIRST,  /* after '[': a value or ']' */
    S_OBJ_FIRST,  /* after '{': a key or '}' */
    S_OBJ_KEY,    /* after ',' in an object: a key */
    S_COLON,      /* after a key */
    S_AFTER,      /* after a value: ',' or the closing bracket */
    S_STRING,
    S_ESC,        /* after a backslash */
    S_UHEX,       /* inside \uXXXX (sub: digits read) */
    S_NUM_MINUS,  /* after '-' */
    S_NUM_ZERO,   /* a leading 0 */
    S_NUM_INT,
    S_NUM_DOT,    /* after '.' */
    S_NUM_FRAC,
    S_NUM_E,      /* after 'e' */
    S_NUM_ESIGN,  /* after 'e+' / 'e-' */
    S_NUM_EXP,
    S_LITERAL,    /* inside true/false/null (sub: index; the word is in `lit`) */
    S_DONE,
};

static const char *const literals[3] = {"true", "false", "null"};

void json_grammar_init(json_grammar *g) {
    memset(g, 0, sizeof *g);
    g->state = S_START;
}

int json_grammar_complete(const json_grammar *g) { return g->state == S_DONE; }

static int is_ws(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

/* A value has ended: back to the container, or done. */
static void value_done(json_grammar *g) { g->state = g->depth ? S_AFTER : S_DONE; }

/* Start a value with c; -1 if c cannot start one. */
static int start_value(json_grammar *g, char c) {
    switch (c) {
    case '{':
    case '[':
        if (g->depth == JSON_MAX_DEPTH) return -1;
        g->stack[g->depth++] = (uint8_t)c;
        g->state = c == '{' ? S_OBJ_FIRST : S_ARR_FIRST;
        return 0;
    case '"': g->state = S_STRING, g->in_key = 0; return 0;
    case '-': g->state = S_NUM_MINUS; return 0;
    case '0': g->state = S_NUM_ZERO; return 0;
    case 't': case 'f': case 'n':
        g->state = S_LITERAL;
        g->sub = 1;
        g->in_key = c == 't' ? 0 : c == 'f' ? 1 : 2; /* which literal (reuses in_key) */
        return 0;
    default:
        if (c >= '1' && c <= '9') { g->state = S_NUM_INT; return 0; }
        return -1;
    }
}

/* After a value inside a container: ',' or the matching close. */
static int after_value(json_grammar *g, char c) {
    char top = (char)g->stack[g->depth - 1];
    if (c == ',') { g->state = top == '{' ? S_OBJ_KEY : S_VALUE; return 0; }
    if ((c == '}' && top == '{') || (c == ']' && top == '[')) {
        g->depth--;
        value_done(g);
        return 0;
    }
    return -1;
}

/* A number ends at the first byte that cannot continue it: that byte then follows the value. */
static int end_number(json_grammar *g, char c) {
    value_done(g);
    if (is_ws(c)) return 0;
    return g->state == S_DONE ? -1 : after_value(g, c);
}

static int step(json_grammar *g, char c) {
    int ws_ok = g->state != S_STRING && g->state != S_ESC && g->state != S_UHEX && g->state != S_LITERAL &&
                g->state != S_NUM_MINUS && g->state != S_NUM_DOT && g->state != S_NUM_E && g->state != S_NUM_ESIGN;
    if (is_ws(c) && ws_ok) {
        if (++g->ws > JSON_MAX_WS) return -1;
        switch (g->state) {
        case S_NUM_ZERO: case S_NUM_INT: case S_NUM_FRAC: case S_NUM_EXP: return end_number(g, c);
        default: return 0;
        }
    }
    g->ws = 0;
    switch (g->state) {
    case S_START: return c == '{' ? start_value(g, c) : -1;
    case S_VALUE: return start_value(g, c);
    case S_ARR_FIRST:
        if (c == ']') { g->depth--; value_done(g); return 0; }
        return start_value(g, c);
    case S_OBJ_FIRST:
        if (c == '}') { g->depth--; value_done(g); return 0; }
        /* fall through */
    case S_OBJ_KEY:
        if (c != '"') return -1;
        g->state = S_STRING;
        g->in_key = 1;
        return 0;
    case S_COLON:
        if (c != ':') return -1;
        g->state = S_VALUE;
        return 0;
    case S_AFTER: return after_value(g, c);
    case S_STRING:
        if (c == '"') {
            if (g->in_key) g->state = S_COLON;
            else value_done(g);
            return 0;
        }
        if (c == '\\') { g->state = S_ESC; return 0; }
        return (unsigned char)c < 0x20 ? -1 : 0;
    case S_ESC:
        if (c == 'u') { g->state = S_UHEX; g->sub = 0; return 0; }
        if (!strchr("\"\\/bfnrt", c) || !c) return -1;
        g->state = S_STRING;
        return 0;
    case S_UHEX:
        if (!is_hex(c)) return -1;
        if (++g->sub == 4) g->state = S_STRING;
        return 0;
    case S_NUM_MINUS:
        if (c == '0') { g->state = S_NUM_ZERO; return 0; }
        if (is_digit(c)) { g->state = S_NUM_INT; return 0; }
        return -1;
    case S_NUM_ZERO:
        if (c == '.') { g->state = S_NUM_DOT; return 0; }
        if (c == 'e' || c == 'E') { g->state = S_NUM_E; return 0; }
        return end_number(g, c);
    case S_NUM_INT:
        if (is_digit(c)) return 0;
        if (c == '.') { g->state = S_NUM_DOT; return 0; }
        if (c == 'e' || c == 'E') { g->state = S_NUM_E; return 0; }
        return end_number(g, c);
    case S_NUM_DOT:
        if (!is_digit(c)) return -1;
        g->state = S_NUM_FRAC;
        return 0;
    case S_NUM_FRAC:
        if (is_digit(c)) return 0;
        if (c == 'e' || c == 'E') { g->state = S_NUM_E; return 0; }
        return end_number(g, c);
    case S_NUM_E:
        if (c == '+' || c == '-') { g->state = S_NUM_ESIGN; return 0; }
        /* fall through */
    case S_NUM_ESIGN:
        if (!is_digit(c)) return -1;
        g->state = S_NUM_EXP;
        return 0;
    case S_NUM_EXP:
        if (is_digit(c)) return 0;
        return end_number(g, c);
    case S_LITERAL: {
        const char *w = literals[g->in_key];
        if (c != w[g->sub]) return -1;
        if (!w[++g->sub]) value_done(g);
        return 0;
    }
    case S_DONE: return -1; /* only whitespace, handled above */
    default: return -1;
    }
}

int json_grammar_feed(json_grammar *g, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (step(g, s[i])) return -1;
    return 0;
}
