/* answers.h — streamed answers kept for their clients to resume (a phone's connection drops in a
 * tunnel; the answer goes on and is read from where it stopped).
 *
 * A resumable answer's server-sent events are appended here as they are made (each with an
 * `id: <answer id>:<n>` line, n counting from 1), by a producer that runs apart from any
 * connection; readers attach from an event on and wait for more. An answer belongs to its owner
 * (the user in accounts mode, 0 in local mode): no one else finds it. It is kept
 * ANSWERS_KEEP_S after it ends, its events up to ANSWERS_MAX_BYTES; past ANSWERS_TOTAL_BYTES
 * the oldest ended answers go first. Thread-safe. */
#ifndef WHALE_SERVICE_ANSWERS_H
#define WHALE_SERVICE_ANSWERS_H

#include <stddef.h>
#include <stdint.h>

#define ANSWERS_KEEP_S 600              /* seconds an ended answer can still be read */
#define ANSWERS_GRACE_S 60              /* seconds a running answer goes on with no one reading it */
#define ANSWERS_MAX_BYTES (16u << 20)   /* events kept of one answer (a 4k-token answer makes ~1 MB) */
#define ANSWERS_TOTAL_BYTES (256u << 20) /* events kept of all answers */
#define ANSWERS_ID_MAX 48

typedef struct answers answers;
typedef struct answer answer;

answers *answers_new(void);
void answers_free(answers *as); /* after every answer has been let go */

/* A new running answer (its producer holds it: answer_end, then answer_put). hash: of its request
 * body, so that a resumed request is the same one. NULL when out of memory. */
answer *answers_add(answers *as, const char *id, int64_t owner, const uint8_t hash[32]);
/* The answer id of owner's, held for reading (answer_put when done), or NULL: no such answer,
 * ended too long ago, or another owner's. With hash, NULL also when the request differs. */
answer *answers_find(answers *as, const char *id, int64_t owner, const uint8_t *hash);
void answer_put(answer *a);

/* Producer: append complete events (each ends with a blank line) and wake the readers; 0, or
 * -1 once the answer passed ANSWERS_MAX_BYTES (nothing more is kept: readers get what there
 * is, then the end). */
int answer_append(answer *a, const char *bytes, size_t len);
void answer_end(answer *a);
/* Asked to stop (its owner's DELETE): the producer cancels its job when it sees this. */
void answer_cancel(answer *a);
int answer_cancelled(answer *a);
/* Seconds since the last reader went away (0 while one reads, or before any). */
double answer_unread_s(answer *a);

/* Reader: the byte offset just after event n (0: from the start); -1 when n was never made. */
long long answer_offset(answer *a, uint64_t n);
/* Copy bytes from *pos (advanced) into buf, waiting up to timeout_ms for some: the count, 0 on
 * timeout, -1 at the end (the answer ended and everything was read). */
long long answer_read(answer *a, size_t *pos, char *buf, size_t max, int timeout_ms);
void answer_attach(answer *a);
void answer_detach(answer *a);

#endif
