/* utf8.h — UTF-8 validation and decoding (strict: no overlongs, no surrogates, <= U+10FFFF). */
#ifndef WHALE_BASE_UTF8_H
#define WHALE_BASE_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if s[0..n) does not start with one. */
int utf8_seq_len(const unsigned char *s, size_t n);
/* 1 if all n bytes are valid UTF-8. */
int utf8_valid(const char *s, size_t n);
/* Decode one code point at s (must be valid, len from utf8_seq_len). */
uint32_t utf8_decode(const unsigned char *s, int len);
/* Encode cp into out (>= 4 bytes); returns bytes written. */
int utf8_encode(uint32_t cp, char *out);
/* Bytes at the end of s[0..n) that form an incomplete (but so far valid) sequence: 0..3. */
int utf8_incomplete_tail(const unsigned char *s, size_t n);
/* Bytes of s[0..n) to keep when it must fit max: n when it does, else max less the part of a
 * character the limit splits, so a shortened text stays UTF-8. */
size_t utf8_prefix(const char *s, size_t n, size_t max);

#endif
