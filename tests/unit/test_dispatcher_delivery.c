/* Unit tests of the dispatcher's delivery core: outcome classification,
 * Retry-After (both forms), the circuit breaker's transitions, the nack
 * window, the token buckets, the SSRF guard's address classes and allow
 * lists, by_key lane hashing, and the per-target delivery settings of the
 * runtime state (wh_delivery). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <string.h>
#include <time.h>

#include "../../services/dispatcher/dsp_breaker.h"
#include "../../services/dispatcher/dsp_lane.h"
#include "../../services/dispatcher/dsp_limit.h"
#include "../../services/dispatcher/dsp_outcome.h"
#include "../../services/dispatcher/dsp_ssrf.h"
#include "../../services/dispatcher/dsp_target.h"
#include "../../services/dispatcher/dsp_zone.h"
#include "wh_cidr.h"
#include "wh_config.h"
#include "wh_state.h"
#include "wh_util.h"

static void test_classify(void **state)
{
    (void)state;
    assert_int_equal(dsp_classify(CURLE_OK, 200), DSP_OUT_OK);
    assert_int_equal(dsp_classify(CURLE_OK, 204), DSP_OUT_OK);
    assert_int_equal(dsp_classify(CURLE_OK, 299), DSP_OUT_OK);
    long retry[] = {408, 425, 429, 500, 502, 503, 504, 599};
    for (size_t i = 0; i < sizeof(retry) / sizeof(retry[0]); i++)
        assert_int_equal(dsp_classify(CURLE_OK, retry[i]), DSP_OUT_RETRY);
    long perm[] = {100, 301, 302, 307, 308, 400, 401, 403, 404, 405, 409, 413, 422, 451};
    for (size_t i = 0; i < sizeof(perm) / sizeof(perm[0]); i++)
        assert_int_equal(dsp_classify(CURLE_OK, perm[i]), DSP_OUT_PERMANENT);
    assert_int_equal(dsp_classify(CURLE_OK, 410), DSP_OUT_GONE);
    /* transport errors are retryable; a bad URL is not */
    assert_int_equal(dsp_classify(CURLE_OPERATION_TIMEDOUT, 0), DSP_OUT_RETRY);
    assert_int_equal(dsp_classify(CURLE_COULDNT_CONNECT, 0), DSP_OUT_RETRY);
    assert_int_equal(dsp_classify(CURLE_RECV_ERROR, 0), DSP_OUT_RETRY);
    assert_int_equal(dsp_classify(CURLE_GOT_NOTHING, 0), DSP_OUT_RETRY);
    assert_int_equal(dsp_classify(CURLE_COULDNT_RESOLVE_HOST, 0), DSP_OUT_RETRY);
    /* an answer without a status line ("Received HTTP/0.9 when not
     * allowed") or a garbled one: the scheme was checked up front */
    assert_int_equal(dsp_classify(CURLE_UNSUPPORTED_PROTOCOL, 0), DSP_OUT_RETRY);
    assert_int_equal(dsp_classify(CURLE_WEIRD_SERVER_REPLY, 0), DSP_OUT_RETRY);
    assert_int_equal(dsp_classify(CURLE_URL_MALFORMAT, 0), DSP_OUT_PERMANENT);
    assert_string_equal(dsp_outcome_name(DSP_OUT_GONE), "gone");
}

static void test_retry_after(void **state)
{
    (void)state;
    int64_t ms = -1;
    assert_int_equal(dsp_retry_after_parse("120", 3, 0, &ms), WH_OK);
    assert_true(ms == 120000);
    assert_int_equal(dsp_retry_after_parse(" 0 \r\n", 5, 0, &ms), WH_OK);
    assert_true(ms == 0);
    /* IMF-fixdate: 1994-11-06 08:49:37 UTC = 784111777 */
    const char *d = "Sun, 06 Nov 1994 08:49:37 GMT";
    assert_int_equal(dsp_retry_after_parse(d, strlen(d), 784111777 - 30, &ms), WH_OK);
    assert_true(ms == 30000);
    /* in the past: at once */
    assert_int_equal(dsp_retry_after_parse(d, strlen(d), 784111777 + 5, &ms), WH_OK);
    assert_true(ms == 0);
    const char *rfc850 = "Sunday, 06-Nov-94 08:49:37 GMT";
    assert_int_equal(dsp_retry_after_parse(rfc850, strlen(rfc850), 784111777 - 2, &ms), WH_OK);
    assert_true(ms == 2000);
    const char *asc = "Sun Nov  6 08:49:37 1994";
    assert_int_equal(dsp_retry_after_parse(asc, strlen(asc), 784111777 - 1, &ms), WH_OK);
    assert_true(ms == 1000);
    /* garbage */
    assert_int_equal(dsp_retry_after_parse("soon", 4, 0, &ms), WH_ERR);
    assert_int_equal(dsp_retry_after_parse("12x", 3, 0, &ms), WH_ERR);
    assert_int_equal(dsp_retry_after_parse("", 0, 0, &ms), WH_ERR);
    assert_int_equal(dsp_retry_after_parse("-5", 2, 0, &ms), WH_ERR);
    /* the delay used: Retry-After wins over the backoff, capped */
    assert_int_equal(dsp_next_delay_ms("2", 1, 10, 20, 0), 2000);
    assert_int_equal(dsp_next_delay_ms("999999", 1, 10, 20, 0), DSP_RETRY_AFTER_MAX_MS);
    /* 0 or a date in the past: not at once, the backoff floor
     * (retry_base_ms) at least, whatever the attempt */
    assert_int_equal(dsp_next_delay_ms("0", 1, 250, 30000, 0), 250);
    assert_int_equal(dsp_next_delay_ms("0", 7, 250, 30000, 0), 250);
    assert_int_equal(dsp_next_delay_ms(d, 1, 250, 30000, 784111777 + 5), 250);
    assert_int_equal(dsp_next_delay_ms("1", 1, 2500, 30000, 0), 2500);
    assert_int_equal(dsp_next_delay_ms("3", 1, 2500, 30000, 0), 3000);
    int b = dsp_next_delay_ms(NULL, 3, 10, 20, 0);
    assert_true(b >= 1 && b <= 20);
    b = dsp_next_delay_ms("bogus", 1, 10, 20, 0);
    assert_true(b >= 1 && b <= 10);
}

static void test_backoff(void **state)
{
    (void)state;
    for (int a = 1; a < 40; a++) {
        int d = dsp_backoff_ms(a, 100, 30000);
        assert_true(d >= 1 && d <= 30000);
        if (a == 1)
            assert_true(d <= 100);
    }
}

static void test_breaker(void **state)
{
    (void)state;
    dsp_breaker b;
    dsp_breaker_init(&b, 3, 50, 10, 1000);
    uint64_t now = 1000000;
    assert_int_equal(dsp_breaker_wait_ms(&b, now), 0);
    /* consecutive failures open it */
    dsp_breaker_record(&b, 1, now);
    dsp_breaker_record(&b, 1, now);
    assert_int_equal(b.state, DSP_BR_CLOSED);
    dsp_breaker_record(&b, 0, now); /* a success resets the run */
    dsp_breaker_record(&b, 1, now);
    dsp_breaker_record(&b, 1, now);
    assert_int_equal(b.state, DSP_BR_CLOSED);
    dsp_breaker_record(&b, 1, now);
    assert_int_equal(b.state, DSP_BR_OPEN);
    assert_true(b.opened == 1);
    assert_int_equal(dsp_breaker_wait_ms(&b, now + 400), 600);
    /* after the cool-down: half-open, one probe */
    assert_int_equal(dsp_breaker_wait_ms(&b, now + 1000), 0);
    assert_int_equal(b.state, DSP_BR_HALF_OPEN);
    dsp_breaker_on_send(&b);
    assert_true(dsp_breaker_wait_ms(&b, now + 1001) > 0); /* no second probe */
    /* the probe fails: open again */
    dsp_breaker_record(&b, 1, now + 1100);
    assert_int_equal(b.state, DSP_BR_OPEN);
    assert_true(b.opened == 2);
    assert_int_equal(dsp_breaker_wait_ms(&b, now + 2100), 0);
    dsp_breaker_on_send(&b);
    dsp_breaker_record(&b, 0, now + 2200); /* the probe succeeds: closed */
    assert_int_equal(b.state, DSP_BR_CLOSED);
    assert_int_equal(b.consecutive, 0);
    assert_int_equal(b.win.count, 0);

    /* ratio: 50 % of a full window of 10, never 3 in a row */
    dsp_breaker_init(&b, 3, 50, 10, 1000);
    for (int i = 0; i < 9; i++) {
        dsp_breaker_record(&b, i % 2 == 0, now);
        assert_int_equal(b.state, DSP_BR_CLOSED); /* window not full yet */
    }
    dsp_breaker_record(&b, 0, now); /* 5 of 10 failed */
    assert_int_equal(b.state, DSP_BR_OPEN);
    assert_string_equal(dsp_breaker_state_name(DSP_BR_HALF_OPEN), "half-open");

    /* defaults and a runtime change that keeps the state */
    dsp_breaker_init(&b, 0, 0, 0, 0);
    assert_int_equal(b.failures, 5);
    assert_int_equal(b.cooldown_ms, 30000);
    for (int i = 0; i < 5; i++)
        dsp_breaker_record(&b, 1, now);
    assert_int_equal(b.state, DSP_BR_OPEN);
    dsp_breaker_configure(&b, 10, 0, 0, 50);
    assert_int_equal(b.state, DSP_BR_OPEN);
}

static void test_nack_window(void **state)
{
    (void)state;
    dsp_nack n;
    dsp_nack_init(&n, 5, 3);
    dsp_nack_record(&n, 1);
    dsp_nack_record(&n, 1);
    assert_false(dsp_nack_degraded(&n));
    dsp_nack_record(&n, 1);
    assert_true(dsp_nack_degraded(&n));
    /* the window slides: three successes push two failures out */
    dsp_nack_record(&n, 0);
    dsp_nack_record(&n, 0);
    assert_true(dsp_nack_degraded(&n)); /* 1 1 1 0 0 */
    dsp_nack_record(&n, 0);
    assert_false(dsp_nack_degraded(&n)); /* 1 1 0 0 0 */
    /* a window larger than one word */
    dsp_window w;
    dsp_window_init(&w, 100);
    for (int i = 0; i < 250; i++)
        dsp_window_push(&w, i % 4 == 0);
    assert_int_equal(w.count, 100);
    assert_int_equal(w.fails, 25);
}

static void test_token_bucket(void **state)
{
    (void)state;
    uint64_t t0 = 1000000000ULL;
    wh_bucket b;
    wh_bucket_init(&b, 10, 5, t0); /* 10/s, burst 5, starts full */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(wh_bucket_wait_ms(&b, 1, t0), 0);
        wh_bucket_take(&b, 1, t0);
    }
    assert_int_equal(wh_bucket_wait_ms(&b, 1, t0), 100);
    assert_int_equal(wh_bucket_wait_ms(&b, 1, t0 + 100000), 0); /* 100 ms later */
    /* a request larger than the burst waits for a full bucket, then owes */
    wh_bucket_init(&b, 10, 5, t0);
    assert_int_equal(wh_bucket_wait_ms(&b, 50, t0), 0);
    wh_bucket_take(&b, 50, t0); /* 5 - 50 = -45 */
    assert_int_equal(wh_bucket_wait_ms(&b, 1, t0), 4600);
    /* unlimited */
    wh_bucket_init(&b, 0, 0, t0);
    wh_bucket_take(&b, 1e9, t0);
    assert_int_equal(wh_bucket_wait_ms(&b, 1e9, t0), 0);
    /* both buckets */
    dsp_limit l;
    dsp_limit_init(&l, 0, 2, 0, t0); /* 2 requests/s, burst 2 */
    assert_int_equal(dsp_limit_wait_ms(&l, 1000, t0), 0);
    dsp_limit_take(&l, 1000, t0);
    dsp_limit_take(&l, 1000, t0);
    assert_int_equal(dsp_limit_wait_ms(&l, 1, t0), 500);
}

/* A runtime change of a target's rate limits (dsp_target_reconfigure): a
 * burst changed alone is applied, and a change keeps the tokens left (the
 * debt of a large request too) instead of refilling the buckets. */
static void test_rate_change(void **state)
{
    (void)state;
    static wh_config cfg;
    wh_config_defaults(&cfg);
    wh_strlcpy(cfg.tenant, "t1", sizeof(cfg.tenant));
    static dsp_spec sp;
    memset(&sp, 0, sizeof(sp));
    wh_strlcpy(sp.name, "a", sizeof(sp.name));
    wh_strlcpy(sp.url, "http://127.0.0.1:9/x", sizeof(sp.url));
    dsp_settings_from_config(&sp.set, &cfg);
    sp.set.dl.rate_events_per_s = 10;
    sp.set.dl.rate_requests_per_s = 10;
    sp.set.dl.rate_burst = 10;
    static dsp_target t;
    char err[WH_ERRLEN];
    if (dsp_target_init(&t, &sp, NULL, NULL, err, sizeof(err)) != WH_OK)
        fail_msg("dsp_target_init: %s", err);
    assert_true(t.lim.events.burst == 10 && t.lim.requests.burst == 10);

    sp.set.dl.rate_burst = 1000; /* the burst alone */
    assert_int_equal(dsp_target_reconfigure(&t, &sp, err, sizeof(err)), WH_OK);
    assert_true(t.lim.events.burst == 1000 && t.lim.requests.burst == 1000);
    /* raised, it grants no tokens: they come at the rate, as before */
    assert_true(t.lim.events.tokens <= 11);

    /* a large request leaves the bucket in debt; a rate change keeps it */
    dsp_limit_take(&t.lim, 1000, wh_now_us());
    sp.set.dl.rate_events_per_s = 20;
    assert_int_equal(dsp_target_reconfigure(&t, &sp, err, sizeof(err)), WH_OK);
    assert_true(t.lim.events.rate == 20);
    assert_true(dsp_limit_wait_ms(&t.lim, 1, wh_now_us()) > 10000); /* ~990 tokens owed */

    /* lowered, the tokens left are at most the new burst */
    sp.set.dl.rate_events_per_s = 0; /* unlimited, then limited: starts full */
    assert_int_equal(dsp_target_reconfigure(&t, &sp, err, sizeof(err)), WH_OK);
    sp.set.dl.rate_events_per_s = 10;
    sp.set.dl.rate_burst = 3;
    assert_int_equal(dsp_target_reconfigure(&t, &sp, err, sizeof(err)), WH_OK);
    assert_true(t.lim.events.burst == 3 && t.lim.events.tokens <= 3);
    assert_true(t.lim.requests.burst == 3 && t.lim.requests.tokens <= 3);
    dsp_target_destroy(&t);
}

static int v4(const char *s, struct sockaddr_in *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    return inet_pton(AF_INET, s, &sa->sin_addr);
}

static int v6(const char *s, struct sockaddr_in6 *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sin6_family = AF_INET6;
    return inet_pton(AF_INET6, s, &sa->sin6_addr);
}

static const char *cls(const char *addr)
{
    struct sockaddr_in a;
    struct sockaddr_in6 b;
    if (v4(addr, &a) == 1)
        return dsp_addr_class(AF_INET, (const unsigned char *)&a.sin_addr);
    assert_int_equal(v6(addr, &b), 1);
    return dsp_addr_class(AF_INET6, (const unsigned char *)&b.sin6_addr);
}

static void test_ssrf_classes(void **state)
{
    (void)state;
    assert_string_equal(cls("127.0.0.1"), "loopback");
    assert_string_equal(cls("127.255.1.2"), "loopback");
    assert_string_equal(cls("::1"), "loopback");
    assert_string_equal(cls("10.1.2.3"), "private");
    assert_string_equal(cls("172.16.0.1"), "private");
    assert_string_equal(cls("172.31.255.255"), "private");
    assert_null(cls("172.32.0.1"));
    assert_string_equal(cls("192.168.1.1"), "private");
    assert_string_equal(cls("fc00::1"), "private");
    assert_string_equal(cls("fd12:3456::1"), "private");
    assert_string_equal(cls("169.254.1.1"), "link-local");
    assert_string_equal(cls("fe80::1"), "link-local");
    assert_string_equal(cls("100.64.0.1"), "CGNAT");
    assert_string_equal(cls("100.127.255.255"), "CGNAT");
    assert_null(cls("100.128.0.1"));
    assert_string_equal(cls("224.0.0.1"), "multicast");
    assert_string_equal(cls("ff02::1"), "multicast");
    assert_string_equal(cls("0.0.0.0"), "unspecified");
    assert_string_equal(cls("::"), "unspecified");
    assert_string_equal(cls("169.254.169.254"), "cloud metadata");
    assert_string_equal(cls("fd00:ec2::254"), "cloud metadata");
    assert_string_equal(cls("255.255.255.255"), "reserved");
    /* IPv4-mapped IPv6 is judged as IPv4 */
    assert_string_equal(cls("::ffff:127.0.0.1"), "loopback");
    assert_string_equal(cls("::ffff:10.0.0.1"), "private");
    /* public */
    assert_null(cls("93.184.216.34"));
    assert_null(cls("8.8.8.8"));
    assert_null(cls("2606:4700:4700::1111"));
    assert_null(cls("::ffff:8.8.8.8"));
}

/* IPv6 addresses that carry an IPv4 address are judged by it */
static void test_ssrf_embedded_ipv4(void **state)
{
    (void)state;
    /* IPv4-compatible ::a.b.c.d (but :: and ::1 stay themselves) */
    assert_string_equal(cls("::127.0.0.1"), "loopback");
    assert_string_equal(cls("::7f00:1"), "loopback");
    assert_string_equal(cls("::10.0.0.1"), "private");
    assert_string_equal(cls("::0.0.0.2"), "unspecified");
    assert_string_equal(cls("::1"), "loopback");
    assert_string_equal(cls("::"), "unspecified");
    assert_null(cls("::8.8.8.8"));
    /* NAT64, the well-known prefix and the local-use one */
    assert_string_equal(cls("64:ff9b::7f00:1"), "loopback");
    assert_string_equal(cls("64:ff9b::10.0.0.1"), "private");
    assert_string_equal(cls("64:ff9b::169.254.169.254"), "cloud metadata");
    assert_null(cls("64:ff9b::8.8.8.8"));
    assert_string_equal(cls("64:ff9b:1::10.0.0.1"), "private");
    assert_string_equal(cls("64:ff9b:1:ab:cd::127.0.0.1"), "loopback");
    assert_null(cls("64:ff9b:1::8.8.8.8"));
    /* RFC 6052's /64 layout in the local-use prefix: 10.0.0.5 in bits
     * 72-104 (the last 32 bits read 5.0.0.0); a /96 x.0.0.0 stays public */
    assert_string_equal(cls("64:ff9b:1:0:a:0:500:0"), "private");
    assert_string_equal(cls("64:ff9b:1:ab:7f:0:100:0"), "loopback");
    assert_null(cls("64:ff9b:1:0:8:808:800:0"));
    assert_null(cls("64:ff9b:1::8.0.0.0"));
    /* SIIT IPv4-translated ::ffff:0:a.b.c.d (RFC 6145, RFC 7915) */
    assert_string_equal(cls("::ffff:0:127.0.0.1"), "loopback");
    assert_string_equal(cls("::ffff:0:7f00:1"), "loopback");
    assert_string_equal(cls("::ffff:0:10.0.0.1"), "private");
    assert_string_equal(cls("::ffff:0:169.254.169.254"), "cloud metadata");
    assert_string_equal(cls("::ffff:0:0.0.0.0"), "unspecified");
    assert_null(cls("::ffff:0:8.8.8.8"));
    /* not SIIT: other words between the ffff and the IPv4 are plain IPv6 */
    assert_null(cls("::ffff:1:7f00:1"));
    /* 6to4: the IPv4 in bits 16-48 */
    assert_string_equal(cls("2002:7f00:1::1"), "loopback");
    assert_string_equal(cls("2002:a9fe:a9fe::"), "cloud metadata");
    assert_string_equal(cls("2002:c0a8:101:1::5"), "private");
    assert_null(cls("2002:808:808::1"));
    /* Teredo: the server in bits 32-64, the client inverted in the last 32 */
    assert_string_equal(cls("2001:0:808:808:8000:ffff:80ff:fffe"), "loopback"); /* client */
    assert_string_equal(cls("2001:0:a00:1:8000:ffff:f7f7:f7f7"), "private");    /* server */
    assert_null(cls("2001:0:808:808:8000:ffff:f7f7:f7f7"));                     /* 8.8.8.8 both */
    /* not Teredo: 2001:db8::/32 and other 2001: prefixes are plain IPv6 */
    assert_null(cls("2001:4860::7f00:1"));

    unsigned char v4[DSP_EMBEDDED_MAX][4];
    const char *how = NULL;
    struct sockaddr_in6 b;
    v6("2001:0:4136:e378:8000:63bf:3fff:fdd2", &b); /* RFC 4380's example */
    assert_int_equal(dsp_addr_embedded4(b.sin6_addr.s6_addr, v4, &how), 2);
    assert_string_equal(how, "Teredo");
    const unsigned char client[4] = {192, 0, 2, 45}, server[4] = {65, 54, 227, 120};
    assert_memory_equal(v4[0], client, 4);
    assert_memory_equal(v4[1], server, 4);
    v6("::ffff:0:10.1.2.3", &b);
    assert_int_equal(dsp_addr_embedded4(b.sin6_addr.s6_addr, v4, &how), 1);
    assert_string_equal(how, "SIIT");
    const unsigned char siit[4] = {10, 1, 2, 3};
    assert_memory_equal(v4[0], siit, 4);
    v6("64:ff9b:1::10.1.2.3", &b);
    assert_int_equal(dsp_addr_embedded4(b.sin6_addr.s6_addr, v4, &how), 1);
    assert_string_equal(how, "NAT64");
    assert_memory_equal(v4[0], siit, 4);
    v6("64:ff9b:1:0:a:0:500:0", &b);
    assert_int_equal(dsp_addr_embedded4(b.sin6_addr.s6_addr, v4, &how), 2);
    const unsigned char l96[4] = {5, 0, 0, 0}, l64[4] = {10, 0, 0, 5};
    assert_memory_equal(v4[0], l96, 4);
    assert_memory_equal(v4[1], l64, 4);
    v6("2606:4700::1111", &b);
    assert_int_equal(dsp_addr_embedded4(b.sin6_addr.s6_addr, v4, &how), 0);

    /* the allow lists: an IPv4 prefix allows the address it carries */
    char err[WH_ERRLEN], why[256];
    wh_cidr_list g;
    assert_int_equal(wh_cidr_list_parse("127.0.0.3/32", &g, err, sizeof(err)), WH_OK);
    static const struct {
        const char *addr;
        int target;  /* the list is the target's (else the global one) */
        int allowed; /* dsp_ssrf_allowed's answer */
        const char *why;
    } al[] = {
        {"64:ff9b::7f00:1", 0, 0, "64:ff9b::7f00:1 is loopback (127.0.0.1, embedded by NAT64)"},
        {"64:ff9b::7f00:3", 0, 1, NULL},
        {"2002:a00:1::", 0, 0, "is private (10.0.0.1, embedded by 6to4)"},
        {"::7f00:3", 1, 1, NULL},
        {"::ffff:0:7f00:1", 0, 0, "::ffff:0:7f00:1 is loopback (127.0.0.1, embedded by SIIT)"},
        {"::ffff:0:7f00:3", 0, 1, NULL},
        {"64:ff9b:1::7f00:1", 0, 0, "is loopback (127.0.0.1, embedded by NAT64)"},
        {"64:ff9b:1::7f00:3", 1, 1, NULL},
    };
    for (size_t i = 0; i < sizeof(al) / sizeof(al[0]); i++) {
        v6(al[i].addr, &b);
        assert_int_equal(dsp_ssrf_allowed((struct sockaddr *)&b, al[i].target ? NULL : &g,
                                          al[i].target ? &g : NULL, why, sizeof(why)),
                         al[i].allowed);
        if (al[i].why != NULL && strstr(why, al[i].why) == NULL)
            fail_msg("%s: \"%s\" lacks \"%s\"", al[i].addr, why, al[i].why);
    }
}

static void test_ssrf_allow_lists(void **state)
{
    (void)state;
    char err[WH_ERRLEN], why[256];
    wh_cidr_list g, t;
    assert_int_equal(wh_cidr_list_parse("127.0.0.0/8, ::1", &g, err, sizeof(err)), WH_OK);
    assert_int_equal(g.n, 2);
    assert_int_equal(wh_cidr_list_parse("10.1.0.0/16", &t, err, sizeof(err)), WH_OK);
    struct sockaddr_in a;
    struct sockaddr_in6 b;
    v4("127.0.0.1", &a);
    assert_int_equal(dsp_ssrf_allowed((struct sockaddr *)&a, NULL, NULL, why, sizeof(why)), 0);
    assert_non_null(strstr(why, "127.0.0.1 is loopback"));
    assert_int_equal(dsp_ssrf_allowed((struct sockaddr *)&a, &g, NULL, why, sizeof(why)), 1);
    v4("10.1.200.3", &a);
    assert_int_equal(dsp_ssrf_allowed((struct sockaddr *)&a, &g, NULL, why, sizeof(why)), 0);
    assert_int_equal(dsp_ssrf_allowed((struct sockaddr *)&a, &g, &t, why, sizeof(why)), 1);
    v4("10.2.0.1", &a);
    assert_int_equal(dsp_ssrf_allowed((struct sockaddr *)&a, &g, &t, why, sizeof(why)), 0);
    v4("169.254.169.254", &a);
    assert_int_equal(dsp_ssrf_allowed((struct sockaddr *)&a, &g, &t, why, sizeof(why)), 0);
    assert_non_null(strstr(why, "metadata"));
    v6("::1", &b);
    assert_int_equal(dsp_ssrf_allowed((struct sockaddr *)&b, &g, NULL, why, sizeof(why)), 1);
    v6("::ffff:127.0.0.1", &b); /* mapped: matches the IPv4 prefix */
    assert_int_equal(dsp_ssrf_allowed((struct sockaddr *)&b, &g, NULL, why, sizeof(why)), 1);
    v4("8.8.8.8", &a);
    assert_int_equal(dsp_ssrf_allowed((struct sockaddr *)&a, NULL, NULL, why, sizeof(why)), 1);
    /* bad lists are named */
    assert_int_equal(wh_cidr_list_parse("127.0.0.0/33", &g, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "prefix length"));
    assert_int_equal(wh_cidr_list_parse("localhost", &g, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "localhost"));
    assert_int_equal(wh_cidr_list_parse("", &g, err, sizeof(err)), WH_OK);
    assert_int_equal(g.n, 0);
}

static void test_lanes(void **state)
{
    (void)state;
    const char *a1 = "{\"id\":\"t:0/1:0\",\"op\":\"insert\",\"table\":\"o\",\"key\":{\"id\":1},"
                     "\"before\":null,\"after\":{\"id\":1,\"key\":{\"id\":2}}}";
    const char *a2 = "{\"id\":\"t:0/2:0\",\"op\":\"update\",\"table\":\"o\",\"key\":{\"id\":1},"
                     "\"before\":null,\"after\":{\"id\":1,\"note\":\"x\"}}";
    const char *b1 = "{\"id\":\"t:0/3:0\",\"op\":\"insert\",\"table\":\"o\",\"key\":{\"id\":2},"
                     "\"before\":null,\"after\":{\"id\":2}}";
    const char *tr = "{\"id\":\"t:0/4:0\",\"op\":\"truncate\",\"table\":\"o\",\"key\":null}";
    const char *tricky = "{\"id\":\"t:0/5:0\",\"table\":\"a,\\\"key\\\":1\",\"key\":{\"id\":1},"
                         "\"after\":{}}";
    int f1, f2, f3, f4;
    uint64_t h1 = dsp_key_hash(a1, strlen(a1), &f1);
    uint64_t h2 = dsp_key_hash(a2, strlen(a2), &f2);
    uint64_t h3 = dsp_key_hash(b1, strlen(b1), &f3);
    uint64_t h4 = dsp_key_hash(tricky, strlen(tricky), &f4);
    assert_true(f1 && f2 && f3 && f4);
    assert_true(h1 == h2); /* same row: same lane, whatever else changed */
    assert_true(h1 != h3);
    assert_true(h1 == h4); /* an escaped quote in a string is not the key member */
    int f;
    dsp_key_hash(tr, strlen(tr), &f);
    assert_false(f);
    assert_int_equal(dsp_lane_of(tr, strlen(tr), 8), 0);
    assert_int_equal(dsp_lane_of(a1, strlen(a1), 1), 0);
    for (unsigned n = 2; n < 10; n++) {
        assert_int_equal(dsp_lane_of(a1, strlen(a1), n), dsp_lane_of(a2, strlen(a2), n));
        assert_true(dsp_lane_of(b1, strlen(b1), n) < n);
    }
    /* keys spread over lanes */
    int used[4] = {0};
    char ev[128];
    for (int i = 0; i < 64; i++) {
        int l = snprintf(ev, sizeof(ev), "{\"op\":\"insert\",\"key\":{\"id\":%d},\"after\":{}}", i);
        used[dsp_lane_of(ev, (size_t)l, 4)]++;
    }
    for (int i = 0; i < 4; i++)
        assert_true(used[i] > 0);
}

static void test_delivery_settings(void **state)
{
    (void)state;
    wh_delivery d;
    memset(&d, 0, sizeof(d));
    char err[WH_ERRLEN];
    json_t *v = json_string("block");
    assert_int_equal(wh_delivery_set(&d, "on_failure", v, err, sizeof(err)), WH_OK);
    assert_string_equal(d.on_failure, "block");
    json_decref(v);
    v = json_string("sometimes");
    assert_int_equal(wh_delivery_set(&d, "on_failure", v, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "on_failure"));
    json_decref(v);
    v = json_integer(5);
    assert_int_equal(wh_delivery_set(&d, "max_attempts", v, err, sizeof(err)), WH_OK);
    assert_int_equal(d.max_attempts, 5);
    json_decref(v);
    v = json_integer(101);
    assert_int_equal(wh_delivery_set(&d, "breaker_ratio_pct", v, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "breaker_ratio_pct"));
    json_decref(v);
    v = json_string("10.0.0.0/8,nonsense");
    assert_int_equal(wh_delivery_set(&d, "allow_private", v, err, sizeof(err)), WH_OK);
    assert_int_equal(wh_delivery_check(&d, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "allow_private"));
    json_decref(v);
    v = json_true();
    assert_int_equal(wh_delivery_set(&d, "no_such_field", v, err, sizeof(err)), 1);
    json_decref(v);

    /* through the document: parsed, validated, rendered when set */
    wh_config base;
    wh_config_defaults(&base);
    const char *doc =
        "{\"tenants\":[{\"name\":\"a\",\"source\":{\"slot\":\"s\",\"publication\":\"p\"},"
        "\"targets\":[{\"name\":\"t\",\"url\":\"http://h/x\",\"on_failure\":\"dlq\","
        "\"mode\":\"fast\",\"backlog_max_ms\":5000,\"breaker_failures\":3,"
        "\"rate_events_per_s\":100,\"envelope\":\"debezium\",\"filter_ops\":\"insert\","
        "\"allow_private\":\"127.0.0.0/8\"}]}]}";
    wh_state *s = NULL;
    assert_int_equal(wh_state_parse(&s, doc, strlen(doc), &base, err, sizeof(err)), WH_OK);
    const wh_state_target *tg = &s->tenants[0].targets[0];
    assert_string_equal(tg->dl.mode, "fast");
    assert_true(tg->dl.backlog_max_ms == 5000);
    assert_int_equal(tg->dl.breaker_failures, 3);
    assert_string_equal(tg->dl.envelope, "debezium");
    wh_buf out;
    wh_buf_init(&out, 0);
    assert_int_equal(wh_state_render(s, &out, 0), WH_OK);
    assert_int_equal(wh_buf_cstr(&out), WH_OK); /* strstr needs the NUL */
    assert_non_null(strstr(out.data, "\"mode\": \"fast\"") ? strstr(out.data, "\"mode\": \"fast\"")
                                                           : strstr(out.data, "\"mode\":\"fast\""));
    assert_null(strstr(out.data, "max_attempts")); /* unset: not rendered */
    wh_buf_free(&out);
    wh_state_unref(s);
    const char *bad =
        "{\"tenants\":[{\"name\":\"a\",\"source\":{\"slot\":\"s\",\"publication\":\"p\"},"
        "\"targets\":[{\"name\":\"t\",\"url\":\"http://h/x\",\"ordering\":\"random\"}]}]}";
    assert_int_equal(wh_state_parse(&s, bad, strlen(bad), &base, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "tenants[0].targets[0].ordering"));
    /* the global allow list is checked as a setting */
    const char *badset = "{\"settings\":{\"dispatcher.allow_private_networks\":\"::1/200\"},"
                         "\"tenants\":[]}";
    assert_int_equal(wh_state_parse(&s, badset, strlen(badset), &base, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "dispatcher.allow_private_networks"));
}

static void test_format_build(void **state)
{
    (void)state;
    wh_delivery d;
    memset(&d, 0, sizeof(d));
    dsp_format f;
    memset(&f, 0, sizeof(f));
    char err[WH_ERRLEN];
    assert_int_equal(dsp_format_build(&f, &d, NULL, err, sizeof(err)), WH_OK);
    assert_int_equal(f.render, 0); /* native without columns: bytes as stored */
    assert_null(f.filter);
    wh_strlcpy(d.envelope, "cloudevents_binary", sizeof(d.envelope));
    wh_strlcpy(d.filter_ops, "insert, update", sizeof(d.filter_ops));
    assert_int_equal(dsp_format_build(&f, &d, NULL, err, sizeof(err)), WH_OK);
    assert_int_equal(f.single, 1);
    assert_int_equal(f.render, 1);
    assert_non_null(f.filter);
    const char *ins = "{\"op\":\"insert\",\"table\":\"o\",\"key\":null}";
    const char *del = "{\"op\":\"delete\",\"table\":\"o\",\"key\":null}";
    assert_int_equal(wh_filter_match(f.filter, ins, strlen(ins)), 1);
    assert_int_equal(wh_filter_match(f.filter, del, strlen(del)), 0);
    wh_strlcpy(d.filter_expr, "after.amount >", sizeof(d.filter_expr));
    assert_int_equal(dsp_format_build(&f, &d, NULL, err, sizeof(err)), WH_ERR);
    assert_non_null(f.filter); /* untouched on error */
    dsp_format_free(&f);
}

/* dsp_zone: a zone note is taken at once; the zone of an answer to a
 * request sent before a note came is not (it may be older than the note) */
/* The reason of a dead letter (the record, its first log line and the
 * summary line): a long transport error is cut after a whole word and ends
 * with "...", within the same bound. Before, it was cut mid-word with no
 * sign of it. */
static void test_dlq_reason(void **state)
{
    (void)state;
    dsp_dlq_req rq;
    char *r = rq.reason;
    const size_t cap = sizeof(rq.reason);
    dsp_dlq_reason(r, cap, 1, "HTTP 400 (permanent)");
    assert_string_equal(r, "retries exhausted: HTTP 400 (permanent)");
    dsp_dlq_reason(r, cap, 0, "HTTP 400 (permanent)");
    assert_string_equal(r, "HTTP 400 (permanent)");
    /* curl's text of a failed TLS handshake, longer than the reason */
    const char *why = "SSL certificate problem: unable to get local issuer certificate "
                      "(the certificate chain of hooks.example.com could not be verified "
                      "against the CA bundle /etc/ssl/certs/ca-certificates.crt)";
    for (int ex = 0; ex <= 1; ex++) {
        memset(r, 'x', cap);
        dsp_dlq_reason(r, cap, ex, why);
        size_t n = strlen(r);
        assert_true(n < cap);
        assert_true(n > cap - 64);
        assert_string_equal(r + n - 3, "...");
        const char *text = ex ? r + strlen("retries exhausted: ") : r;
        if (ex)
            assert_true(strncmp(r, "retries exhausted: ", 19) == 0);
        /* a whole-word prefix of why: the cut is at a space of it */
        size_t k = (size_t)(r + n - 3 - text);
        assert_true(strncmp(text, why, k) == 0);
        assert_true(why[k] == ' ');
    }
    /* exactly as long as the reason holds: whole, no "..." */
    char fit[sizeof(rq.reason)];
    memset(fit, 'e', cap - 1);
    fit[cap - 1] = '\0';
    dsp_dlq_reason(r, cap, 0, fit);
    assert_string_equal(r, fit);
}

static void test_zone_notes(void **state)
{
    (void)state;
    assert_int_equal(dsp_zone_get("zt"), DSP_ZONE_GREEN);
    uint64_t n0 = dsp_zone_notes();
    uint64_t m = dsp_zone_mark();
    dsp_zone_set("zt", DSP_ZONE_YELLOW, m); /* a Read's answer */
    assert_int_equal(dsp_zone_get("zt"), DSP_ZONE_YELLOW);
    m = dsp_zone_mark();                                    /* a Read goes out */
    assert_int_equal(dsp_zone_note("zt", DSP_ZONE_RED), 1); /* a note meanwhile */
    assert_int_equal(dsp_zone_get("zt"), DSP_ZONE_RED);
    dsp_zone_set("zt", DSP_ZONE_YELLOW, m); /* the Read's older answer */
    assert_int_equal(dsp_zone_get("zt"), DSP_ZONE_RED);
    assert_int_equal(dsp_zone_note("zt", DSP_ZONE_RED), 0); /* no change */
    assert_int_equal(dsp_zone_notes(), n0 + 2);
    m = dsp_zone_mark();
    dsp_zone_set("zt", DSP_ZONE_GREEN, m); /* a newer answer: the fallback still works */
    assert_int_equal(dsp_zone_get("zt"), DSP_ZONE_GREEN);
    assert_int_equal(dsp_zone_note("zt", 7), 1); /* out of range: red */
    assert_int_equal(dsp_zone_get("zt"), DSP_ZONE_RED);
    assert_int_equal(dsp_zone_get("other"), DSP_ZONE_GREEN);
    assert_int_equal(dsp_zone_note("zt", DSP_ZONE_GREEN), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_breaker),
        cmocka_unit_test(test_nack_window),
        cmocka_unit_test(test_token_bucket),
        cmocka_unit_test(test_rate_change),
        cmocka_unit_test(test_ssrf_classes),
        cmocka_unit_test(test_ssrf_embedded_ipv4),
        cmocka_unit_test(test_ssrf_allow_lists),
        cmocka_unit_test(test_lanes),
        cmocka_unit_test(test_delivery_settings),
        cmocka_unit_test(test_format_build),
        cmocka_unit_test(test_dlq_reason),
        cmocka_unit_test(test_zone_notes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
