/* dedup.h — deduplication for `whale data prepare`: exact (a 128-bit hash of each document's
 * bytes) and near (MinHash signatures, Broder 1997, found by locality-sensitive hashing over
 * bands of the signature, confirmed by the signatures' estimated Jaccard similarity).
 *
 * Both sets keep in memory only hashes (16 bytes per distinct document, exact; 16 bytes per
 * band per kept document, near) and append what they add to a log file: the exact set its
 * hashes, the near set its signatures, which it reads back (pread) to confirm a candidate. A
 * log is the set's whole state, so a resumed run reopens a log cut to the length its last
 * checkpoint recorded and gets the set back exactly.
 * Owns: the hashes, the MinHash family, the LSH tables and the two logs. */
#ifndef WHALE_DATA_DEDUP_H
#define WHALE_DATA_DEDUP_H

#include <stddef.h>
#include <stdint.h>

#include "whale.h"

#define MINHASH_PERM 128  /* hash functions per signature: estimate's sd <= 0.044 (sqrt(.25/128))  \
                           */
#define MINHASH_SHINGLE 5 /* words (spaced text) or code points (CJK-heavy text) per shingle */

typedef struct doc_hash {
    uint64_t lo, hi;
} doc_hash;

/* SipHash-2-4 (128-bit output) of text[0..n) under a fixed key: the same bytes give the same hash
 * in every run. */
doc_hash doc_hash_text(const char *text, size_t n);

typedef struct exact_set exact_set;
/* Open a set whose log is log_path. n_resume > 0: read back the log's first n_resume hashes and
 * cut off the rest (WHALE_E_FORMAT when it holds fewer); 0: start a new, empty log.
 * Returns 0, WHALE_E_IO or WHALE_E_NOMEM. */
int exact_set_open(exact_set **out, const char *log_path, int64_t n_resume, whale_err *err);
/* 1: h was new (added and logged), 0: h was there already, or a negative status. */
int exact_set_add(exact_set *s, doc_hash h, whale_err *err);
int64_t exact_set_count(const exact_set *s);
/* Make the log durable (fsync). 0 or WHALE_E_IO. */
int exact_set_sync(exact_set *s, whale_err *err);
void exact_set_close(exact_set *s); /* NULL: no-op */

typedef struct minhash_sig {
    uint32_t v[MINHASH_PERM];
} minhash_sig;

/* The signature of text[0..n) (valid UTF-8): shingles of MINHASH_SHINGLE consecutive lower-cased
 * alnum runs (by_chars = 0) or non-space code points (by_chars = 1); a text with fewer is one
 * shingle; a text with none gets all-ones. */
void minhash_compute(minhash_sig *out, const char *text, size_t n, int by_chars);
/* Share of equal positions: an unbiased estimate of the shingle sets' Jaccard similarity. */
double minhash_similarity(const minhash_sig *a, const minhash_sig *b);

/* Probability that two documents of Jaccard similarity s share at least one band. */
double lsh_candidate_probability(double s, int bands, int rows);
/* A pair exactly at the threshold becomes a candidate with at least this probability; pairs
 * above it more surely still. */
#define LSH_RECALL_AT_THRESHOLD 0.9
/* The bands x rows (<= n_perm) with the least area of false candidates (pairs below the
 * threshold) among those meeting LSH_RECALL_AT_THRESHOLD: candidates are confirmed, so a false
 * one costs a compare while a missed one keeps a duplicate. (None meets it: the best recall.) */
void lsh_choose(double threshold, int n_perm, int *bands, int *rows);

typedef struct lsh_index lsh_index;
/* As exact_set_open, for signatures; threshold in (0, 1] picks the bands and confirms matches. */
int lsh_index_open(lsh_index **out, const char *log_path, double threshold, int64_t n_resume,
                   whale_err *err);
/* 1: sig is a near duplicate of an earlier signature (*match gets its number; sig is not added);
 * 0: added and logged; or a negative status. */
int lsh_index_add(lsh_index *x, const minhash_sig *sig, int64_t *match, whale_err *err);
int64_t lsh_index_count(const lsh_index *x);
void lsh_index_shape(const lsh_index *x, int *bands, int *rows);
int lsh_index_sync(lsh_index *x, whale_err *err);
void lsh_index_close(lsh_index *x); /* NULL: no-op */

#endif
