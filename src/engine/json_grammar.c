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

/* Whitespace is only counted in this state (else it is a string byte, or an error). */
static int ws_counts(const json_grammar *g) {
    return g->state != S_STRING && g->state != S_ESC && g->state != S_UHEX && g->state != S_LITERAL &&
           g->state != S_NUM_MINUS && g->state != S_NUM_DOT && g->state != S_NUM_E && g->state != S_NUM_ESIGN;
}

static int step(json_grammar *g, char c) {
    if (is_ws(c) && ws_counts(g)) {
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

int json_token_class(const char *s, size_t n) {
    int string = n > 0, digits = n > 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        string &= c >= 0x20 && c != '"' && c != '\\';
        digits &= is_digit((char)c);
    }
    return (string ? JSON_TOKEN_STRING : 0) | (digits ? JSON_TOKEN_DIGITS : 0);
}

/* Why the shortcuts hold (step above): in S_STRING a byte >= 0x20 other than '"' and '\\'
 * leaves the state as it is (but for the whitespace count, which strings do not use); in a
 * number's digit states a digit does the same. Where whitespace counts, a run of it leaves the
 * state as its first byte did (a number ends at the first; later ones only count), and the
 * byte after the run is judged without the count: so a byte refused after one space is
 * refused after any run. */
void json_probe_init(json_probe *p, const json_grammar *g) {
    p->g = *g;
    p->classes = g->state == S_STRING ? JSON_TOKEN_STRING
                 : g->state == S_NUM_INT || g->state == S_NUM_FRAC || g->state == S_NUM_EXP ? JSON_TOKEN_DIGITS
                                                                                             : 0;
    p->ws_counts = ws_counts(g);
    json_grammar after = *g;
    int ws_ok = p->ws_counts && step(&after, ' ') == 0;
    for (int c = 0; c < 256; c++) {
        json_grammar t = *g;
        p->first[c] = step(&t, (char)c) == 0;
        t = after;
        p->after_ws[c] = ws_ok && step(&t, (char)c) == 0;
    }
}

int json_probe_accepts(const json_probe *p, const char *s, size_t n, int cls) {
    if (!n) return 1;
    if (!p->first[(unsigned char)s[0]]) return 0;
    if (cls & p->classes) return 1;
    if (p->ws_counts && is_ws(s[0])) {
        size_t k = 1;
        while (k < n && is_ws(s[k])) k++;
        if (k < n && !p->after_ws[(unsigned char)s[k]]) return 0;
    }
    if (n == 1) return 1; /* first[] has judged it */
    json_grammar g = p->g;
    return json_grammar_feed(&g, s, n) == 0;
}
