/* pretokenize.c — regex pre-tokenization over PCRE2, and the builtin programs for GGUF files.
 *
 * The builtin patterns are the ones the models' own tokenizer.json files carry (Hugging Face
 * `tokenizers` syntax, which PCRE2 accepts for these patterns); non-ASCII characters are
 * written as \x{...} so the source stays ASCII. Tests compare the result with `tokenizers`
 * on the multilingual corpus. */
#include "tokenizer/pretokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/utf8.h"

typedef struct pretok_step {
    pcre2_code *re;
    char *src; /* the pattern as given, to recognize builtin programs */
} pretok_step;

struct pretok_program {
    pretok_step steps[PRETOK_MAX_STEPS];
    int n; /* read-only once built: any number of threads may run the program at once */
};

/* ---- the builtin programs ------------------------------------------------------------- */

/* Llama 3 / R1-Distill-Llama ("llama-bpe"): GPT-4-style split with digits in runs of 1-3. */
static const char *const pat_llama3[] = {
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{"
     "N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
/* Qwen2 / R1-Distill-Qwen: as Llama 3 but single digits. */
static const char *const pat_qwen2[] = {
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+["
     "\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
/* DeepSeek-V3 / R1 ("deepseek-v3"). */
static const char *const pat_deepseek_v3[] = {
    "\\p{N}{1,3}",
    "[\\x{4e00}-\\x{9fa5}\\x{3040}-\\x{309f}\\x{30a0}-\\x{30ff}]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L"
     "}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
/* DeepSeek LLM / V2 / V2-Lite ("deepseek-llm"); the last step is tokenizers' Digits. */
static const char *const pat_deepseek_llm[] = {
    "[\\r\\n]",
    "\\s?[A-Za-z\\x{b5}\\x{c0}-\\x{d6}\\x{d8}-\\x{f6}\\x{f8}-\\x{1ba}\\x{1bc}-\\x{1bf}"
     "\\x{1c4}-\\x{293}\\x{295}-\\x{2af}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37b}-\\x{37d}"
     "\\x{37f}\\x{386}\\x{388}-\\x{38a}\\x{38c}\\x{38e}-\\x{3a1}\\x{3a3}-\\x{3f5}\\x{3f7}-"
     "\\x{481}\\x{48a}-\\x{52f}\\x{531}-\\x{556}\\x{10a0}-\\x{10c5}\\x{13a0}-\\x{13f5}"
     "\\x{13f8}-\\x{13fd}\\x{1c90}-\\x{1cba}\\x{1cbd}-\\x{1cbf}\\x{1d00}-\\x{1d2b}\\x{1d6b}-"
     "\\x{1d77}\\x{1d79}-\\x{1d9a}\\x{1e00}-\\x{1f15}\\x{1f18}-\\x{1f1d}\\x{1f20}-\\x{1f45}"
     "\\x{1f48}-\\x{1f4d}\\x{1f50}-\\x{1f57}\\x{1f59}\\x{1f5b}\\x{1f5d}\\x{1f5f}-\\x{1f7d}"
     "\\x{1f80}-\\x{1fb4}\\x{1fb6}-\\x{1fbc}\\x{1fbe}\\x{1fc2}-\\x{1fc4}\\x{1fc6}-\\x{1fcc}"
     "\\x{1fd0}-\\x{1fd3}\\x{1fd6}-\\x{1fdb}\\x{1fe0}-\\x{1fec}\\x{1ff2}-\\x{1ff4}\\x{1ff6}-"
     "\\x{1ffc}\\x{2102}\\x{2107}\\x{210a}-\\x{2113}\\x{2115}\\x{2119}-\\x{211d}\\x{2124}"
     "\\x{2126}\\x{2128}\\x{212a}-\\x{212d}\\x{212f}-\\x{2134}\\x{2139}\\x{213c}-\\x{213f}"
     "\\x{2145}-\\x{2149}\\x{214e}\\x{2183}\\x{2184}\\x{2c00}-\\x{2c7b}\\x{2c7e}-\\x{2ce4}"
     "\\x{2ceb}-\\x{2cee}\\x{2cf2}\\x{2cf3}\\x{a640}-\\x{a66d}\\x{a680}-\\x{a69b}\\x{a722}-"
     "\\x{a76f}\\x{a771}-\\x{a787}\\x{a78b}-\\x{a78e}\\x{ab70}-\\x{abbf}\\x{fb00}-\\x{fb06}"
     "\\x{fb13}-\\x{fb17}\\x{ff21}-\\x{ff3a}\\x{ff41}-\\x{ff5a}\\x{10400}-\\x{1044f}\\x{104b0}"
     "-\\x{104d3}\\x{104d8}-\\x{104fb}\\x{10c80}-\\x{10cb2}\\x{10cc0}-\\x{10cf2}\\x{118a0}-"
     "\\x{118df}\\x{1e900}-\\x{1e943}]+",
    "\\s?[!-/:-~\\x{ff01}-\\x{ff0f}\\x{ff1a}-\\x{ff5e}\\x{2018}-\\x{201f}\\x{3000}-\\x{3002}]"
     "+",
    "\\s+$",
    "[\\x{4e00}-\\x{9fa5}\\x{800}-\\x{4e00}\\x{ac00}-\\x{d7ff}]+",
    "\\p{N}",
    NULL};
/* DeepSeek-Coder ("deepseek-coder"); the last step is tokenizers' Digits. */
static const char *const pat_deepseek_coder[] = {
    "[\\r\\n]",
    "\\s?\\p{L}+",
    "\\s?\\p{P}+",
    "[\\x{4e00}-\\x{9fa5}\\x{800}-\\x{4e00}\\x{ac00}-\\x{d7ff}]+",
    "\\p{N}",
    NULL};
/* GPT-2 (tokenizers' ByteLevel with use_regex true). */
const char pretok_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char *const pat_gpt2[] = {pretok_gpt2_pattern, NULL};

static const struct {
    const char *name;
    const char *const *pats;
    int nfc, ignore_merges;
} builtins[] = {
    {"llama-bpe", pat_llama3, 0, 1},
    {"llama3", pat_llama3, 0, 1},
    {"qwen2", pat_qwen2, 1, 0},
    {"deepseek-r1-qwen", pat_qwen2, 1, 0},
    {"deepseek-v3", pat_deepseek_v3, 0, 0},
    {"deepseek-llm", pat_deepseek_llm, 0, 0},
    {"deepseek-coder", pat_deepseek_coder, 0, 0},
    {"gpt2", pat_gpt2, 0, 0},
    {"default", pat_gpt2, 0, 0},
};

const char *const pretok_builtin_names[] = {
    "llama-bpe", "llama3", "qwen2", "deepseek-r1-qwen", "deepseek-v3", "deepseek-llm",
    "deepseek-coder", "gpt2", "default", NULL};

/* ---- programs ------------------------------------------------------------------------- */

pretok_program *pretok_new(void) {
    return calloc(1, sizeof(pretok_program));
}

void pretok_free(pretok_program *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++) {
        pcre2_code_free(p->steps[i].re);
        free(p->steps[i].src);
    }
    free(p);
}

int pretok_add_split(pretok_program *p, const char *pattern, size_t len, whale_err *err) {
    if (p->n >= PRETOK_MAX_STEPS)
        return err_set(err, WHALE_E_UNSUPPORTED, "more than %d pre-tokenizer steps", PRETOK_MAX_STEPS);
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, len, PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK,
                                   &ec, &eo, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return err_set(err, WHALE_E_FORMAT, "pre-tokenizer regex does not compile at offset %zu: %s",
                       (size_t)eo, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* best effort: the interpreter is the fallback */
    char *src = malloc(len + 1);
    if (!src) {
        pcre2_code_free(re);
        return err_set(err, WHALE_E_NOMEM, "out of memory");
    }
    memcpy(src, pattern, len);
    src[len] = 0;
    p->steps[p->n].re = re;
    p->steps[p->n].src = src;
    p->n++;
    return 0;
}

int pretok_add_digits(pretok_program *p, whale_err *err) {
    return pretok_add_split(p, "\\p{N}", 5, err);
}

int pretok_builtin(pretok_program **out, const char *name, int *nfc, int *ignore_merges, whale_err *err) {
    *out = NULL;
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) {
        if (strcmp(builtins[i].name, name)) continue;
        pretok_program *p = pretok_new();
        if (!p) return err_set(err, WHALE_E_NOMEM, "out of memory");
        for (const char *const *s = builtins[i].pats; *s; s++) {
            int rc = pretok_add_split(p, *s, strlen(*s), err);
            if (rc) {
                pretok_free(p);
                return rc;
            }
        }
        *nfc = builtins[i].nfc;
        *ignore_merges = builtins[i].ignore_merges;
        *out = p;
        return 0;
    }
    return err_set(err, WHALE_E_UNSUPPORTED, "unknown pre-tokenizer '%s'", name);
}

const char *const *pretok_builtin_patterns(const char *name, int *nfc, int *ignore_merges) {
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) {
        if (strcmp(builtins[i].name, name)) continue;
        if (nfc) *nfc = builtins[i].nfc;
        if (ignore_merges) *ignore_merges = builtins[i].ignore_merges;
        return builtins[i].pats;
    }
    return NULL;
}

/* Spell a pattern the way the builtin table does: non-ASCII characters as \x{...}, CR and LF
 * as \r and \n. Returns 0, or -1 if out does not have room. */
static int spell_ascii(const char *src, char *out, size_t cap) {
    size_t k = 0;
    const unsigned char *s = (const unsigned char *)src;
    for (size_t i = 0; s[i];) {
        char tmp[16];
        int n;
        if (s[i] >= 0x80) {
            int l = utf8_seq_len(s + i, strlen((const char *)s + i));
            if (!l) return -1;
            n = snprintf(tmp, sizeof tmp, "\\x{%x}", (unsigned)utf8_decode(s + i, l));
            i += (size_t)l;
        } else {
            n = s[i] == '\r' ? snprintf(tmp, sizeof tmp, "\\r") : s[i] == '\n' ? snprintf(tmp, sizeof tmp, "\\n")
                                                                  : snprintf(tmp, sizeof tmp, "%c", s[i]);
            i++;
        }
        if (k + (size_t)n + 1 > cap) return -1;
        memcpy(out + k, tmp, (size_t)n);
        k += (size_t)n;
    }
    out[k] = 0;
    return 0;
}

const char *pretok_builtin_match(const pretok_program *p) {
    static char buf[8192]; /* the longest builtin pattern (deepseek-llm letters) is ~2 KiB */
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) {
        int n = 0;
        while (builtins[i].pats[n]) n++;
        if (n != p->n) continue;
        int same = 1;
        for (int k = 0; k < n && same; k++)
            same = !spell_ascii(p->steps[k].src, buf, sizeof buf) && !strcmp(buf, builtins[i].pats[k]);
        if (same) return builtins[i].name;
    }
    return NULL;
}

/* ---- running -------------------------------------------------------------------------- */

static int pieces_push(pretok_pieces *ps, size_t start, size_t len) {
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 256;
        pretok_piece *v = realloc(ps->v, cap * sizeof *v);
        if (!v) return -1;
        ps->v = v;
        ps->cap = cap;
    }
    ps->v[ps->n].start = start;
    ps->v[ps->n].len = len;
    ps->n++;
    return 0;
}

void pretok_pieces_free(pretok_pieces *ps) {
    free(ps->v);
    memset(ps, 0, sizeof *ps);
}

/* Split one piece by re: matches and the gaps between them, in order, empty ones dropped. md:
 * the caller's match data (one per call of pretok_run: sharing one between threads corrupted
 * the offsets, and a bad piece length made the BPE's work buffer grow until it wrapped). */
static int split_piece(pcre2_match_data *md, pcre2_code *re, const char *text, pretok_piece in, pretok_pieces *out,
                       whale_err *err) {
    PCRE2_SPTR subj = (PCRE2_SPTR)(text + in.start);
    size_t pos = 0, gap = 0;
    while (pos <= in.len) {
        int rc = pcre2_match(re, subj, in.len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return err_set(err, WHALE_E_FORMAT, "pre-tokenizer regex failed: %s", (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) {
            /* Empty match: tokenizers skips it; step one character forward. */
            if (ms >= in.len) break;
            size_t step = 1;
            while (ms + step < in.len && (subj[ms + step] & 0xC0) == 0x80) step++;
            pos = ms + step;
            continue;
        }
        if (ms > gap && pieces_push(out, in.start + gap, ms - gap)) goto oom;
        if (pieces_push(out, in.start + ms, me - ms)) goto oom;
        gap = pos = me;
    }
    if (in.len > gap && pieces_push(out, in.start + gap, in.len - gap)) goto oom;
    return 0;
oom:
    return err_set(err, WHALE_E_NOMEM, "out of memory splitting text");
}

int pretok_run(const pretok_program *p, const char *text, size_t n, pretok_pieces *out, whale_err *err) {
    out->n = 0;
    if (n == 0) return 0;
    if (pieces_push(out, 0, n)) return err_set(err, WHALE_E_NOMEM, "out of memory");
    pcre2_match_data *md = p->n ? pcre2_match_data_create(4, NULL) : NULL;
    if (p->n && !md) return err_set(err, WHALE_E_NOMEM, "out of memory");
    pretok_pieces tmp = {0};
    for (int s = 0; s < p->n; s++) {
        tmp.n = 0;
        for (size_t i = 0; i < out->n; i++) {
            int rc = split_piece(md, p->steps[s].re, text, out->v[i], &tmp, err);
            if (rc) {
                pretok_pieces_free(&tmp);
                pcre2_match_data_free(md);
                return rc;
            }
        }
        pretok_pieces swap = *out;
        *out = tmp;
        tmp = swap;
    }
    pretok_pieces_free(&tmp);
    pcre2_match_data_free(md);
    return 0;
}
