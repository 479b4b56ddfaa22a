/* test_login_guard.c — the sign-in throttle (service/login_guard.h) in memory: waits start past
 * the free failures and double; a record that is backing off is never dropped to make room, even
 * when made-up emails fill every slot it could use (issue #18: 16 failures on colliding emails
 * reset the victim's wait); two IPv6 addresses in one /64 share a record, other /64s and IPv4
 * addresses do not. */
#include <stdio.h>

#include "check.h"
#include "service/login_guard.h"

static void test_waits_start_past_free_failures(void) {
    login_guard *g = login_guard_new_sized(LOGIN_SLOTS);
    CHECK(g);
    for (int i = 0; i < LOGIN_FREE_PER_ACCOUNT; i++)
        login_guard_failed(g, "victim@example.com", "10.0.0.1");
    CHECK(login_guard_wait(g, "victim@example.com", "10.0.0.2") == 0);
    login_guard_failed(g, "victim@example.com", "10.0.0.1");
    double w = login_guard_wait(g, "victim@example.com", "10.0.0.2");
    CHECKF(w > 0 && w <= LOGIN_FIRST_WAIT, "wait %g", w);
    CHECK(login_guard_wait(g, "someone@example.com", "10.0.0.2") == 0);
    login_guard_succeeded(g, "victim@example.com");
    CHECK(login_guard_wait(g, "victim@example.com", "10.0.0.2") == 0);
    login_guard_free(g);
}

/* A table of LOGIN_PROBES slots: every email lands on the victim's slots, as emails chosen
 * offline against an unkeyed hash did in the full table. */
static void test_backing_off_record_never_evicted(void) {
    login_guard *g = login_guard_new_sized(LOGIN_PROBES);
    CHECK(g);
    for (int i = 0; i <= LOGIN_FREE_PER_ACCOUNT; i++)
        login_guard_failed(g, "victim@example.com", "10.0.0.1");
    CHECK(login_guard_wait(g, "victim@example.com", "10.0.0.9") > 0);
    char email[64], ip[32];
    for (int i = 0; i < 4 * LOGIN_PROBES; i++) { /* each from its own address */
        snprintf(email, sizeof email, "made-up-%d@example.com", i);
        snprintf(ip, sizeof ip, "10.1.%d.%d", i / 200, i % 200);
        login_guard_failed(g, email, ip);
    }
    double w = login_guard_wait(g, "victim@example.com", "10.0.0.9");
    CHECKF(w > 0, "the victim's wait was reset (%g)", w);
    /* the table full of kept records: more failures still slow down (the shared overflow record) */
    login_guard *h = login_guard_new_sized(LOGIN_PROBES);
    for (int i = 0; i < LOGIN_PROBES; i++) {
        snprintf(email, sizeof email, "kept-%d@example.com", i);
        for (int k = 0; k <= LOGIN_FREE_PER_ACCOUNT; k++) login_guard_failed(h, email, "10.0.0.1");
    }
    for (int k = 0; k <= LOGIN_FREE_PER_ACCOUNT; k++)
        login_guard_failed(h, "late@example.com", "10.0.0.2");
    CHECK(login_guard_wait(h, "late@example.com", "10.0.0.3") > 0);
    CHECK(login_guard_wait(h, "kept-0@example.com", "10.0.0.3") > 0);
    login_guard_free(h);
    login_guard_free(g);
}

static void test_ipv6_grouped_by_64(void) {
    login_guard *g = login_guard_new_sized(LOGIN_SLOTS);
    char email[64];
    for (int i = 0; i <= LOGIN_FREE_PER_ADDRESS;
         i++) { /* a new email each time: only the address counts */
        snprintf(email, sizeof email, "guess-%d@example.com", i);
        login_guard_failed(g, email,
                           i % 2 ? "2001:db8:1:2::1" : "2001:db8:1:2:ffff:ffff:ffff:fffe");
    }
    CHECK(login_guard_wait(g, "new@example.com", "2001:db8:1:2:abcd::7") > 0); /* the same /64 */
    CHECK(login_guard_wait(g, "new@example.com", "2001:db8:1:3::1") == 0);     /* another /64 */
    CHECK(login_guard_wait(g, "new@example.com", "10.0.0.1") == 0);
    for (int i = 0; i <= LOGIN_FREE_PER_ADDRESS; i++) {
        snprintf(email, sizeof email, "v4-%d@example.com", i);
        login_guard_failed(g, email, "::ffff:192.0.2.7"); /* IPv4-mapped: the IPv4 address itself */
    }
    CHECK(login_guard_wait(g, "new@example.com", "192.0.2.7") > 0);
    CHECK(login_guard_wait(g, "new@example.com", "192.0.2.8") == 0);
    login_guard_free(g);
}

int main(void) {
    RUN(test_waits_start_past_free_failures);
    RUN(test_backing_off_record_never_evicted);
    RUN(test_ipv6_grouped_by_64);
    return check_report("test_login_guard");
}
