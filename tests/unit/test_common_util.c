/* Unit tests: LSNs, event ids, buffers, JSON strings, base64, backoff, metrics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "wh_buf.h"
#include "wh_lsn.h"
#include "wh_metrics.h"
#include "wh_util.h"

/* wh_grow: the first capacity, doubling to at least need, nothing done
 * when there is room, and the elements kept. */
/* wh_u32_in: in a sorted array, by bsearch in wh_u32_cmp's order; none
 * in an empty or NULL one; wh_u32_cmp sorts values above INT32_MAX last */
static void test_u32_in(void **state)
{
    (void)state;
    uint32_t v[5] = {0xfffffff0u, 7, 0, 0x80000000u, 42};
    qsort(v, 5, sizeof(*v), wh_u32_cmp);
    assert_int_equal(v[0], 0);
    assert_int_equal(v[4], 0xfffffff0u);
    for (size_t i = 0; i < 5; i++)
        assert_true(wh_u32_in(v, 5, v[i]));
    assert_false(wh_u32_in(v, 5, 8));
    assert_false(wh_u32_in(v, 5, 0xffffffffu));
    assert_false(wh_u32_in(NULL, 0, 0));
    assert_false(wh_u32_in(v, 0, 7));
}

static void test_grow(void **state)
{
    (void)state;
    int *v = NULL;
    size_t cap = 0;
    assert_int_equal(wh_grow(&v, 1, &cap, sizeof(*v), 4), WH_OK);
    assert_int_equal(cap, 4);
    for (int i = 0; i < 4; i++)
        v[i] = i;
    int *before = v;
    assert_int_equal(wh_grow(&v, 4, &cap, sizeof(*v), 4), WH_OK);
    assert_ptr_equal(v, before);
    assert_int_equal(cap, 4);
    assert_int_equal(wh_grow(&v, 5, &cap, sizeof(*v), 4), WH_OK);
    assert_int_equal(cap, 8);
    assert_int_equal(wh_grow(&v, 20, &cap, sizeof(*v), 4), WH_OK);
    assert_int_equal(cap, 32);
    for (int i = 0; i < 4; i++)
        assert_int_equal(v[i], i);
    free(v);
}

static void test_lsn_roundtrip(void **state)
{
    uint64_t v;
    char buf[WH_LSN_STRLEN];
    assert_int_equal(wh_lsn_parse("16/B374D848", &v), WH_OK);
    assert_true(v == 0x16B374D848ULL);
    wh_lsn_format(v, buf, sizeof(buf));
    assert_string_equal(buf, "16/B374D848");
    assert_int_equal(wh_lsn_parse("0/0", &v), WH_OK);
    assert_true(v == 0);
    assert_int_equal(wh_lsn_parse("FFFFFFFF/FFFFFFFF", &v), WH_OK);
    assert_true(v == UINT64_MAX);
    assert_int_equal(wh_lsn_format(v, buf, sizeof(buf)), 17);
    assert_string_equal(buf, "FFFFFFFF/FFFFFFFF");
    assert_int_equal(wh_lsn_format(0, buf, sizeof(buf)), 3);
    assert_string_equal(buf, "0/0");
    assert_int_equal(wh_lsn_format(UINT64_C(0x100000000), buf, sizeof(buf)), 3);
    assert_string_equal(buf, "1/0");
    assert_int_equal(wh_lsn_format(UINT64_C(0xA0000000F), buf, sizeof(buf)), 3);
    assert_string_equal(buf, "A/F");
    char small[6];
    wh_lsn_format(UINT64_C(0x16B374D848), small, sizeof(small));
    assert_string_equal(small, "16/B3"); /* truncated like snprintf */
}

static void test_lsn_bad(void **state)
{
    uint64_t v;
    const char *bad[] = {"", "/", "1/", "/1", "1/2/3", "G/1", "1 /2", "123456789/0", "1/2x", NULL};
    for (int i = 0; bad[i]; i++)
        assert_int_equal(wh_lsn_parse(bad[i], &v), WH_ERR);
    assert_int_equal(wh_lsn_parse(NULL, &v), WH_ERR);
}

static void test_event_id_and_order(void **state)
{
    char id[128];
    assert_int_equal(wh_event_id("default", 0x1A2B3C8, 7, id, sizeof(id)), 19);
    assert_string_equal(id, "default:0/1A2B3C8:7");
    assert_int_equal(wh_event_id("default", 1, 1, id, 5), -1);
    uint8_t a[12], b[12];
    wh_put_be64(a, 0x100000000ULL);
    wh_put_be32(a + 8, 0);
    wh_put_be64(b, 0xFFFFFFFFULL);
    wh_put_be32(b + 8, 5);
    assert_true(memcmp(a, b, 12) > 0); /* byte order is position order */
    assert_true(wh_get_be64(a) == 0x100000000ULL);
    assert_int_equal(wh_get_be32(b + 8), 5);
    assert_true(wh_pos_cmp(1, 2, 1, 3) < 0);
    assert_true(wh_pos_cmp(2, 0, 1, 3) > 0);
    assert_int_equal(wh_pos_cmp(2, 3, 2, 3), 0);
}

static void test_buf_limits(void **state)
{
    wh_buf b;
    wh_buf_init(&b, 8);
    assert_int_equal(wh_buf_append(&b, "12345678", 8), WH_OK);
    assert_int_equal(wh_buf_putc(&b, 'x'), WH_ERR);
    assert_int_equal(b.len, 8);
    assert_int_equal(wh_buf_cstr(&b), WH_OK);
    assert_string_equal(b.data, "12345678");
    wh_buf_free(&b);
    wh_buf_init(&b, 0);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(wh_buf_printf(&b, "%d,", i), WH_OK);
    assert_true(b.len > 40000);
    wh_buf_free(&b);
}

static void test_json_str(void **state)
{
    wh_buf b;
    wh_buf_init(&b, 0);
    const char in[] = "a\"b\\c\n\x01\xc3\xa9\xff";
    assert_int_equal(wh_json_str(&b, in, sizeof(in) - 1), WH_OK);
    wh_buf_cstr(&b);
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\xef\xbf\xbd\"");
    wh_buf_free(&b);
}

/* JSON text with bytes that are not UTF-8 (a SQL_ASCII database): each
 * such byte becomes U+FFFD, the rest is copied; counted. */
static void test_append_utf8(void **state)
{
    wh_buf b;
    wh_buf_init(&b, 0);
    uint64_t before = wh_utf8_replaced();
    const char ok[] = "{\"k\": \"caf\xc3\xa9 \xe2\x98\x83\"}";
    assert_int_equal(wh_buf_append_utf8(&b, ok, sizeof(ok) - 1), WH_OK);
    wh_buf_cstr(&b);
    assert_string_equal(b.data, ok);
    assert_int_equal(wh_utf8_replaced(), before);
    wh_buf_reset(&b);
    /* a lone Latin-1 byte, a truncated sequence at the end, a surrogate */
    const char bad[] = "{\"k\": \"caf\xe9\", \"s\": \"\xed\xa0\x80\xc3\"}\xe2\x98";
    assert_int_equal(wh_buf_append_utf8(&b, bad, sizeof(bad) - 1), WH_OK);
    wh_buf_cstr(&b);
    assert_string_equal(b.data, "{\"k\": \"caf\xef\xbf\xbd\", \"s\": \"\xef\xbf\xbd\xef\xbf\xbd"
                                "\xef\xbf\xbd\xef\xbf\xbd\"}\xef\xbf\xbd\xef\xbf\xbd");
    assert_int_equal(wh_utf8_replaced(), before + 7);
    /* past the buffer's maximum: WH_ERR, the buffer unchanged */
    wh_buf small;
    wh_buf_init(&small, 8);
    assert_int_equal(wh_buf_append_utf8(&small, "ab", 2), WH_OK);
    assert_int_equal(wh_buf_append_utf8(&small, "\xff\xff\xffxy", 5), WH_ERR);
    assert_int_equal(small.len, 2);
    wh_buf_free(&small);
    wh_buf_free(&b);
}

/* The 16-byte ASCII scan of wh_buf_append_utf8: a multi-byte character or
 * an invalid byte at every position of ASCII strings of 0..40 bytes,
 * against the text written out by hand. */
static void test_utf8_scan(void **state)
{
    static const struct {
        const char *in, *out;
    } sp[] = {{"\xc3\xa9", "\xc3\xa9"},
              {"\xe2\x98\x83", "\xe2\x98\x83"},
              {"\x80", "\xef\xbf\xbd"},
              {"\xff", "\xef\xbf\xbd"},
              {"\xe2\x98", "\xef\xbf\xbd\xef\xbf\xbd"}};
    for (size_t k = 0; k < sizeof(sp) / sizeof(sp[0]); k++) {
        for (size_t n = 0; n <= 40; n++) {
            for (size_t at = 0; at <= n; at++) {
                char in[64], want[128];
                size_t il = 0, wl = 0;
                for (size_t i = 0; i <= n; i++) {
                    if (i == at) {
                        memcpy(in + il, sp[k].in, strlen(sp[k].in));
                        il += strlen(sp[k].in);
                        memcpy(want + wl, sp[k].out, strlen(sp[k].out));
                        wl += strlen(sp[k].out);
                    }
                    if (i < n) {
                        in[il++] = (char)('a' + i % 26);
                        want[wl++] = (char)('a' + i % 26);
                    }
                }
                want[wl] = '\0';
                wh_buf b;
                wh_buf_init(&b, 0);
                assert_int_equal(wh_buf_append_utf8(&b, in, il), WH_OK);
                wh_buf_cstr(&b);
                assert_string_equal(b.data, want);
                wh_buf_free(&b);
            }
        }
    }
}

/* The 16-byte scan of wh_json_str: a byte to escape (or UTF-8, or a control
 * byte) at every position of strings of 0..40 bytes, in buffers that start
 * empty and non-empty, against the escape written out by hand. */
static void test_json_str_scan(void **state)
{
    static const struct {
        const char *in, *out;
    } sp[] = {{"\"", "\\\""},  {"\\", "\\\\"},           {"\x1f", "\\u001f"},
              {"\t", "\\t"},   {"\xc3\xa9", "\xc3\xa9"}, {"\x80", "\xef\xbf\xbd"},
              {"\x7f", "\x7f"}};
    for (size_t k = 0; k < sizeof(sp) / sizeof(sp[0]); k++) {
        for (size_t n = 0; n <= 40; n++) {
            for (size_t at = 0; at <= n; at++) {
                char in[64], want[128];
                size_t il = 0, wl = 0;
                want[wl++] = '"';
                for (size_t i = 0; i < n; i++) {
                    if (i == at) {
                        memcpy(in + il, sp[k].in, strlen(sp[k].in));
                        il += strlen(sp[k].in);
                        memcpy(want + wl, sp[k].out, strlen(sp[k].out));
                        wl += strlen(sp[k].out);
                    } else {
                        in[il++] = (char)('a' + i % 26);
                        want[wl++] = (char)('a' + i % 26);
                    }
                }
                want[wl++] = '"';
                for (int pre = 0; pre < 2; pre++) {
                    wh_buf b;
                    wh_buf_init(&b, 0);
                    if (pre)
                        wh_buf_append(&b, "x", 1);
                    assert_int_equal(wh_json_str(&b, in, il), WH_OK);
                    assert_int_equal(b.len, wl + (size_t)pre);
                    assert_memory_equal(b.data + pre, want, wl);
                    wh_buf_free(&b);
                }
            }
        }
    }
}

static void test_base64(void **state)
{
    const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        wh_buf b, d;
        wh_buf_init(&b, 0);
        wh_buf_init(&d, 0);
        assert_int_equal(wh_base64(&b, plain[i], strlen(plain[i])), WH_OK);
        wh_buf_cstr(&b);
        assert_string_equal(b.data, enc[i]);
        assert_int_equal(wh_base64_decode(&d, b.data, b.len), WH_OK);
        wh_buf_cstr(&d);
        assert_string_equal(d.data, plain[i]);
        wh_buf_free(&b);
        wh_buf_free(&d);
    }
    wh_buf d;
    wh_buf_init(&d, 0);
    assert_int_equal(wh_base64_decode(&d, "Zm9v!", 5), WH_ERR);
    assert_int_equal(wh_base64_decode(&d, "Z=m9", 4), WH_ERR);
    wh_buf_free(&d);
}

static void test_backoff(void **state)
{
    for (int attempt = 0; attempt < 40; attempt++) {
        int cap = 100;
        for (int i = 0; i < attempt && cap < 5000; i++)
            cap *= 2;
        if (cap > 5000)
            cap = 5000;
        for (int k = 0; k < 50; k++) {
            int v = wh_backoff_ms(attempt, 100, 5000);
            assert_true(v >= 0 && v <= cap);
        }
    }
}

static void test_metrics_render(void **state)
{
    wh_histogram h;
    memset(&h, 0, sizeof(h));
    wh_hist_observe_us(&h, 500);     /* 0.0005 s -> le 0.001 */
    wh_hist_observe_us(&h, 2000000); /* 2 s -> le 2.5 */
    wh_hist_observe_us(&h, 90000000);
    /* the bounds are inclusive (le), in microseconds as in seconds */
    assert_int_equal(wh_hist_bucket_us(0), 0);
    assert_int_equal(wh_hist_bucket_us(1000), 0);
    assert_int_equal(wh_hist_bucket_us(1001), 1);
    assert_int_equal(wh_hist_bucket_us(60000000), WH_HIST_BUCKETS - 1);
    assert_int_equal(wh_hist_bucket_us(60000001), WH_HIST_BUCKETS);
    for (int i = 0; i < WH_HIST_BUCKETS; i++) { /* each bound is its bucket's last value */
        assert_int_equal(wh_hist_bucket_us(wh_hist_bounds_us[i]), i);
        assert_int_equal(wh_hist_bucket_us(wh_hist_bounds_us[i] + 1), i + 1);
    }
    /* gathered, then added at once: as if observed one by one */
    wh_hist_acc acc = {0};
    wh_hist_acc_add(&acc, 700);
    wh_hist_acc_add(&acc, 2400000);
    wh_hist_add(&h, &acc);
    wh_hist_add(&h, &(wh_hist_acc){0}); /* nothing gathered: no change */
    wh_buf b;
    wh_buf_init(&b, 0);
    assert_int_equal(wh_metric_hist(&b, "lat", "target=\"a\"", &h), WH_OK);
    wh_buf_cstr(&b);
    assert_non_null(strstr(b.data, "lat_bucket{target=\"a\",le=\"0.001\"} 2\n"));
    assert_non_null(strstr(b.data, "lat_bucket{target=\"a\",le=\"2.5\"} 4\n"));
    /* every bound rendered in seconds, as Prometheus' default buckets */
    assert_non_null(strstr(b.data, "le=\"0.0025\"} 2\n"));
    assert_non_null(strstr(b.data, "le=\"0.25\"} 2\n"));
    assert_non_null(strstr(b.data, "le=\"60\"} 4\n"));
    assert_non_null(strstr(b.data, "lat_bucket{target=\"a\",le=\"+Inf\"} 5\n"));
    assert_non_null(strstr(b.data, "lat_count{target=\"a\"} 5\n"));
    wh_buf_free(&b);
}

/* The checks of a lease owner and of an endpoint announced to the admin. */
/* wh_cut_words: whole when it fits; else cut after a word, with "..." */
static void test_cut_words(void **state)
{
    (void)state;
    char b[24];
    assert_int_equal(wh_cut_words(b, sizeof(b), "%s %d", "fits", 42), WH_OK);
    assert_string_equal(b, "fits 42");
    assert_int_equal(wh_cut_words(b, sizeof(b), "%s", "exceeds max_wal_senders (currently 2)"),
                     WH_ERR);
    assert_string_equal(b, "exceeds...");
    /* one long word: cut where it must be, never inside a UTF-8 sequence */
    assert_int_equal(wh_cut_words(b, sizeof(b), "%s", "aaaaaaaaaaaaaaaaaa\xc3\xa9\xc3\xa9\xc3\xa9"),
                     WH_ERR);
    assert_string_equal(b, "aaaaaaaaaaaaaaaaaa\xc3\xa9...");
}

static void test_visible_and_scheme(void **state)
{
    (void)state;
    assert_int_equal(wh_str_visible("d1#0000abcd"), 1);
    assert_int_equal(wh_str_visible(""), 1);
    assert_int_equal(wh_str_visible("a b"), 0);
    assert_int_equal(wh_str_visible("a\nb"), 0);
    assert_int_equal(wh_str_visible("caf\xc3\xa9"), 0);
    assert_int_equal(wh_str_visible("\x7f"), 0);
    assert_int_equal(wh_endpoint_scheme_ok("ipc:///x.sock"), 1);
    assert_int_equal(wh_endpoint_scheme_ok("tcp://h:1"), 1);
    assert_int_equal(wh_endpoint_scheme_ok("tls+tcp://h:1"), 1);
    assert_int_equal(wh_endpoint_scheme_ok("http://h:1"), 0);
    assert_int_equal(wh_endpoint_scheme_ok("tcp:/h"), 0);
}

/* Plain tcp:// beyond the loopback (no authentication): what the config
 * refuses without ipc.allow_plaintext_tcp. */
static void test_plain_beyond_loopback(void **state)
{
    (void)state;
    const char *beyond[] = {"tcp://0.0.0.0:7001",
                            "tcp://*:7001",
                            "tcp://:7001",
                            "tcp://[::]:7001",
                            "tcp://10.1.2.3:7001",
                            "tcp://192.168.1.5:7001",
                            "tcp://store:7001",
                            "tcp://localhost.:7001",
                            "tcp://[fd00::5]:7001",
                            "tcp://[::ffff:10.0.0.1]:7001",
                            "tcp://127.1:7001",
                            "tcp://2130706433:7001",
                            "tcp://127.0.0.1;10.0.0.1:7001",
                            "tcp://evil.example/127.0.0.1:7001",
                            "tcp://[::1:7001",
                            "tcp://[::1]@10.0.0.1:7001",
                            "tcp://localhost:7001@10.0.0.1",
                            "tcp://127.0.0.1:7001/x",
                            "tcp://127.0.0.1",
                            "tcp://127.0.0.1:",
                            "tcp://[::1]",
                            "tcp://[::1%lo]:7001",
                            "tcp://"};
    for (size_t i = 0; i < sizeof(beyond) / sizeof(beyond[0]); i++)
        if (wh_endpoint_plain_beyond_loopback(beyond[i]) != 1)
            fail_msg("%s: not counted as beyond the loopback", beyond[i]);
    const char *local[] = {"tcp://127.0.0.1:7001", "tcp://127.9.8.7:7001",
                           "tcp://[::1]:7001",     "tcp://localhost:7001",
                           "tcp://LocalHost:7001", "tcp://[::ffff:127.0.0.1]:7001",
                           "ipc:///x/store.sock",  "tls+tcp://0.0.0.0:7001",
                           "tls+tcp://store:7001", ""};
    for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++)
        if (wh_endpoint_plain_beyond_loopback(local[i]) != 0)
            fail_msg("%s: counted as plain tcp:// beyond the loopback", local[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lsn_roundtrip),
        cmocka_unit_test(test_visible_and_scheme),
        cmocka_unit_test(test_plain_beyond_loopback),
        cmocka_unit_test(test_lsn_bad),
        cmocka_unit_test(test_event_id_and_order),
        cmocka_unit_test(test_buf_limits),
        cmocka_unit_test(test_json_str),
        cmocka_unit_test(test_utf8_scan),
        cmocka_unit_test(test_json_str_scan),
        cmocka_unit_test(test_append_utf8),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_u32_in),
        cmocka_unit_test(test_grow),
        cmocka_unit_test(test_metrics_render),
        cmocka_unit_test(test_cut_words),
    };
    return cmocka_run_group_tests_name("common_util", tests, NULL, NULL);
}
