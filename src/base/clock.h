/* clock.h — the program's one clock: seconds as a double from a monotonic source, for
 * durations, rates and timeouts, and the wall clock in whole seconds for what is stored
 * (expiry times, created stamps). Owns nothing; no state. */
#ifndef WHALE_BASE_CLOCK_H
#define WHALE_BASE_CLOCK_H

#include <stdint.h>

/* Seconds since an arbitrary fixed point (CLOCK_MONOTONIC): only differences mean anything;
 * never goes backwards when the system time is set. */
double clock_now_s(void);

/* Seconds since the Unix epoch (the system time; may jump when it is set). */
int64_t clock_wall_s(void);
/* The same in milliseconds (stored times finer than a second: sign-in waits). */
int64_t clock_wall_ms(void);

struct timespec;
/* The time ms milliseconds from now on CLOCK_REALTIME, as pthread_cond_timedwait wants it. */
void clock_deadline_ms(struct timespec *out, int ms);

#endif
