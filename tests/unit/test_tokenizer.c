/* test_tokenizer.c — tokenizer invariants on the real DeepSeek LLM (V2) vocabulary from
 * ../shared/vocab: byte map, plain text vs special parsing, invalid input, streaming decode.
 * Exactness against Hugging Face tokenizers is tests/py/test_tokenizer_exact.py. */
#include "check.h"

#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_impl.h"
#include "base/utf8.h"
#include "base/err.h"
#include <pthread.h>
#include <unistd.h>

static tokenizer *tok;

static void test_byte_map_is_a_bijection(void) {
    int seen[400] = {0};
    for (int b = 0; b < 256; b++) {
        uint32_t cp = tok_byte_to_cp((unsigned char)b);
        CHECK(cp < 400);
        if (cp < 400) seen[cp]++;
        CHECKF(tok_cp_to_byte(cp) == b, "byte %d -> U+%04X -> %d", b, cp, tok_cp_to_byte(cp));
    }
    for (int i = 0; i < 400; i++) CHECK(seen[i] <= 1);
    CHECK(tok_byte_to_cp(' ') == 0x120); /* 'Ġ' */
    CHECK(tok_byte_to_cp('\n') == 0x10A); /* 'Ċ' */
    CHECK(tok_cp_to_byte(0x41) == 'A');
    CHECK(tok_cp_to_byte(0x20) == -1);
    /* Every byte that valid UTF-8 can contain has a token (this vocabulary covers the others,
     * 0xC0, 0xC1 and 0xF5-0xFF, only through added tokens). */
    for (int b = 0; b < 256; b++)
        if (b != 0xC0 && b != 0xC1 && b < 0xF5) CHECKF(tok->byte_tok[b] >= 0, "byte %d has no token", b);
}

static void test_roundtrip_and_empty(void) {
    const char *s = "DeepSeek-R1 于2025年1月发布。 Привет, мир! 🐋\n\tx  y";
    tok_ids ids = {0};
    whale_err err = {0};
    CHECK(tokenizer_encode(tok, s, strlen(s), 0, &ids, &err) == 0);
    CHECK(ids.n > 5);
    size_t n;
    char *back = tokenizer_decode(tok, ids.v, ids.n, &n);
    CHECK(back && n == strlen(s) && !memcmp(back, s, n));
    free(back);
    ids.n = 0;
    CHECK(tokenizer_encode(tok, "", 0, 0, &ids, &err) == 0 && ids.n == 0);
    CHECK(tokenizer_encode(tok, "", 0, TOK_ADD_BOS, &ids, &err) == 0 && ids.n == 1 && ids.v[0] == tokenizer_bos(tok));
    tok_ids_free(&ids);
}

static void test_invalid_utf8_is_an_error(void) {
    const char *bad[] = {"abc\xff", "\xc0\x80", "x\xed\xa0\x80", "\xe4\xbd"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tok_ids ids = {0};
        whale_err err = {0};
        CHECK(tokenizer_encode(tok, bad[i], strlen(bad[i]), 0, &ids, &err) == WHALE_E_ARG);
        CHECK(strstr(err.msg, "UTF-8") != NULL);
        tok_ids_free(&ids);
    }
    /* An embedded NUL is valid text. */
    tok_ids ids = {0};
    CHECK(tokenizer_encode(tok, "a\0b", 3, 0, &ids, NULL) == 0 && ids.n >= 2);
    tok_ids_free(&ids);
}

static void test_special_only_when_asked(void) {
    int32_t bos = tokenizer_bos(tok);
    CHECK(bos >= 0);
    size_t l;
    const char *spell = tokenizer_token_text(tok, bos, &l);
    char text[256];
    snprintf(text, sizeof text, "hi %.*s there", (int)l, spell);
    tok_ids plain = {0}, special = {0};
    CHECK(tokenizer_encode(tok, text, strlen(text), 0, &plain, NULL) == 0);
    CHECK(tokenizer_encode(tok, text, strlen(text), TOK_PARSE_SPECIAL, &special, NULL) == 0);
    int plain_has = 0, special_has = 0;
    for (size_t i = 0; i < plain.n; i++) plain_has |= tokenizer_attr(tok, plain.v[i]) == TOK_CONTROL;
    for (size_t i = 0; i < special.n; i++) special_has |= special.v[i] == bos;
    CHECK(!plain_has);
    CHECK(special_has);
    /* Decoding the plain ids gives back the spelling as text. */
    char *back = tokenizer_decode(tok, plain.v, plain.n, NULL);
    CHECK(back && !strcmp(back, text));
    free(back);
    tok_ids_free(&plain);
    tok_ids_free(&special);
}

static void test_stream_holds_partial_characters(void) {
    /* Encode text whose tokens split multi-byte characters, then stream: every chunk emitted
     * must be valid UTF-8 on its own, and the chunks must join to the text. */
    const char *s = "🐋🐋 鲸鱼 ẞ 👨‍👩‍👧";
    tok_ids ids = {0};
    CHECK(tokenizer_encode(tok, s, strlen(s), 0, &ids, NULL) == 0);
    tok_stream st = {0};
    char all[256];
    size_t k = 0;
    int partial_seen = 0;
    for (size_t i = 0; i <= ids.n; i++) {
        char out[64];
        int n = tokenizer_stream(tok, &st, i < ids.n ? ids.v[i] : -1, out, sizeof out);
        CHECK(n >= 0);
        if (n < 0) break;
        CHECK(utf8_valid(out, (size_t)n));
        partial_seen |= st.n_pending > 0;
        memcpy(all + k, out, (size_t)n);
        k += (size_t)n;
    }
    CHECK(k == strlen(s) && !memcmp(all, s, k));
    CHECK(partial_seen); /* the test text does split characters across tokens */
    CHECK(tokenizer_stream(tok, &st, (int32_t)tokenizer_n_vocab(tok), all, sizeof all) == -1);
    tok_ids_free(&ids);
}

static void test_long_repeats_are_fast_and_exact(void) {
    /* One 200k-byte pre-token: the merge heap keeps this linear-ish; the result must decode back. */
    size_t n = 200000;
    char *s = malloc(n);
    memset(s, 'a', n);
    tok_ids ids = {0};
    CHECK(tokenizer_encode(tok, s, n, 0, &ids, NULL) == 0);
    CHECK(ids.n > 0 && ids.n < n);
    size_t m;
    char *back = tokenizer_decode(tok, ids.v, ids.n, &m);
    CHECK(back && m == n && !memcmp(back, s, n));
    free(back);
    free(s);
    tok_ids_free(&ids);
}

/* Threads encoding at once get what one thread gets (the server's connection threads share the
 * model's tokenizer; a pre-tokenizer state shared between them once corrupted the pieces). */
static const char *const race_texts[] = {
    "You are a helpful assistant. Answer in one sentence, please!",
    "def f(x):\n    return x * 2  # doubles 1234567 and 89\n",
    "\u4f60\u597d\uff0c\u4e16\u754c\u3002 Hello, world. It's 12:30, isn't it?",
    "   leading spaces, trailing tabs\t\t and newlines\n\n\nend",
};
#define RACE_N (sizeof race_texts / sizeof race_texts[0])
static tok_ids race_want[RACE_N];

static void *race_worker(void *arg) {
    long bad = 0, seed = (long)(intptr_t)arg;
    for (int it = 0; it < 3000; it++) {
        size_t k = (size_t)(it + seed) % RACE_N;
        tok_ids ids = {0};
        if (tokenizer_encode(tok, race_texts[k], strlen(race_texts[k]), 0, &ids, NULL) || ids.n != race_want[k].n ||
            memcmp(ids.v, race_want[k].v, ids.n * sizeof *ids.v))
            bad++;
        tok_ids_free(&ids);
    }
    return (void *)(intptr_t)bad;
}

static void test_threads_encode_alike(void) {
    alarm(120); /* the old race could also loop forever: fail in two minutes, not at ctest's limit */
    for (size_t k = 0; k < RACE_N; k++) CHECK(tokenizer_encode(tok, race_texts[k], strlen(race_texts[k]), 0, &race_want[k], NULL) == 0);
    pthread_t th[4];
    for (long i = 0; i < 4; i++) CHECK(pthread_create(&th[i], NULL, race_worker, (void *)(intptr_t)i) == 0);
    long bad = 0;
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(th[i], &r);
        bad += (long)(intptr_t)r;
    }
    CHECKF(bad == 0, "%ld of 12000 encodings differed from one thread's", bad);
    for (size_t k = 0; k < RACE_N; k++) tok_ids_free(&race_want[k]);
    alarm(0);
}

/* A text shortened to a byte limit never ends inside a character. */
static void test_utf8_prefix_keeps_characters_whole(void) {
    const char *s = "ab\xe4\xb8\xad\xe6\x96\x87\xf0\x9f\x90\xb3z"; /* a b 中 文 🐳 z: 1 1 3 3 4 1 bytes */
    size_t n = strlen(s);
    const size_t want[] = {0, 1, 2, 2, 2, 5, 5, 5, 8, 8, 8, 8, 12, 13};
    for (size_t max = 0; max <= n; max++) {
        CHECKF(utf8_prefix(s, n, max) == want[max], "max %zu: %zu", max, utf8_prefix(s, n, max));
        CHECK(utf8_valid(s, utf8_prefix(s, n, max)));
    }
    CHECK(utf8_prefix(s, n, 100) == n);
}

static void test_json_errors(void) {
    tokenizer *t = NULL;
    whale_err err = {0};
    CHECK(tokenizer_load_json(&t, "/nonexistent/tokenizer.json", &err) != 0 && t == NULL);
    CHECK(strstr(err.msg, "/nonexistent/tokenizer.json") != NULL);
    char path[] = "/tmp/whale-tok-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    const char *docs[] = {"{", "[]", "{\"model\":{\"type\":\"Unigram\"}}",
                          "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-5},\"merges\":[]}}",
                          ("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                          "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"}}")};
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        FILE *f = fopen(path, "wb");
        fputs(docs[i], f);
        fclose(f);
        err_clear(&err);
        CHECKF(tokenizer_load_json(&t, path, &err) != 0 && t == NULL, "doc %zu", i);
        CHECKF(err.msg[0] != 0, "doc %zu has no message", i);
    }
    close(fd);
    unlink(path);
}

int main(void) {
    gguf_file f;
    whale_err err = {0};
    RUN(test_json_errors); /* the only cases without the vocabulary */
    RUN(test_utf8_prefix_keeps_characters_whole);
    const char *path = check_shared("vocab/ggml-vocab-deepseek-llm.gguf");
    if (access(path, R_OK)) { /* every case below needs it */
        check_skip_rest_missing(path);
    } else if (gguf_open(&f, path, 0, &err) || tokenizer_load_gguf(&tok, &f, &err)) {
        fprintf(stderr, "cannot load the vocabulary: %s\n", err.msg);
        printf("test_tokenizer: 0 passed, 1 failed\n");
        return 1;
    } else {
        gguf_close(&f); /* the tokenizer owns copies of everything it needs */
    }
    RUN(test_byte_map_is_a_bijection);
    RUN(test_roundtrip_and_empty);
    RUN(test_invalid_utf8_is_an_error);
    RUN(test_special_only_when_asked);
    RUN(test_stream_holds_partial_characters);
    RUN(test_long_repeats_are_fast_and_exact);
    RUN(test_threads_encode_alike);
    tokenizer_free(tok);
    return check_report("test_tokenizer");
}
