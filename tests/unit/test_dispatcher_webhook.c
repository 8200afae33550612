/* Unit tests for the dispatcher's wire format: body, headers, signature,
 * batches and retry delays. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../services/dispatcher/dsp_target.h"
#include "../../services/dispatcher/dsp_webhook.h"
#include "wh_util.h"

static void test_body_concat(void **state)
{
    (void)state;
    wh_buf b;
    wh_buf_init(&b, 0);
    const char *j[] = {"{\"a\":1}", "{\"b\":\"x,y\"}", "{}"};
    const void *p[3] = {j[0], j[1], j[2]};
    size_t l[3] = {strlen(j[0]), strlen(j[1]), strlen(j[2])};
    assert_int_equal(dsp_body_build(&b, p, l, 3), WH_OK);
    assert_string_equal(b.data, "[{\"a\":1},{\"b\":\"x,y\"},{}]");
    assert_int_equal(b.len, strlen("[{\"a\":1},{\"b\":\"x,y\"},{}]"));
    /* reuse: shorter body in the same buffer, memory kept */
    char *mem = b.data;
    assert_int_equal(dsp_body_build(&b, p, l, 1), WH_OK);
    assert_string_equal(b.data, "[{\"a\":1}]");
    assert_ptr_equal(b.data, mem);
    assert_int_equal(dsp_body_build(&b, p, l, 0), WH_OK);
    assert_string_equal(b.data, "[]");
    wh_buf_free(&b);
}

static void test_signature_vector(void **state)
{
    (void)state;
    dsp_key k;
    char err[WH_ERRLEN];
    assert_int_equal(dsp_key_parse(&k, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", err, sizeof(err)),
                     WH_OK);
    assert_true(k.len > 0);
    const char *body = "{\"test\": 2432232314}";
    char sig[DSP_SIG_MAX];
    assert_int_equal(dsp_sign(&k, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, strlen(body),
                              sig, sizeof(sig)),
                     WH_OK);
    assert_string_equal(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    /* the prefix is optional */
    dsp_key k2;
    assert_int_equal(dsp_key_parse(&k2, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", err, sizeof(err)),
                     WH_OK);
    assert_int_equal(k2.len, k.len);
    assert_memory_equal(k2.bytes, k.bytes, k.len);
}

static void test_key_parse_errors(void **state)
{
    (void)state;
    dsp_key k;
    char err[WH_ERRLEN];
    assert_int_equal(dsp_key_parse(&k, "", err, sizeof(err)), WH_OK);
    assert_int_equal(k.len, 0);
    assert_int_equal(dsp_key_parse(&k, "whsec_", err, sizeof(err)), WH_ERR);
    assert_int_equal(dsp_key_parse(&k, "whsec_not base64!", err, sizeof(err)), WH_ERR);
    assert_null(strstr(err, "base64!")); /* never echo the secret */
}

static void test_headers(void **state)
{
    (void)state;
    dsp_headers h;
    char err[WH_ERRLEN];
    dsp_key none = {.len = 0};
    assert_int_equal(
        dsp_headers_build(&h, &none, 1, "t1:0/16B3748:2", 3, 1700000000, "[]", 2, err, sizeof(err)),
        WH_OK);
    assert_string_equal(h.content_type, "Content-Type: application/json");
    assert_string_equal(h.batch_size, "X-Batch-Size: 3");
    assert_string_equal(h.id, "webhook-id: t1:0/16B3748:2");
    assert_string_equal(h.timestamp, "webhook-timestamp: 1700000000");
    assert_string_equal(h.signature, "");

    dsp_key k;
    assert_int_equal(dsp_key_parse(&k, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", err, sizeof(err)),
                     WH_OK);
    const char *body = "{\"test\": 2432232314}";
    assert_int_equal(dsp_headers_build(&h, &k, 1, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1, 1614265330,
                                       body, strlen(body), err, sizeof(err)),
                     WH_OK);
    assert_string_equal(h.signature,
                        "webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");

    /* rotation: every secret signs, space-separated; an empty key is skipped */
    dsp_key two[3] = {k, {.len = 0}, k};
    assert_int_equal(dsp_headers_build(&h, two, 3, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1, 1614265330,
                                       body, strlen(body), err, sizeof(err)),
                     WH_OK);
    assert_string_equal(h.signature,
                        "webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= "
                        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

static Walhook__Event *mkev(uint64_t lsn, uint32_t seq, int64_t ts, const char *json)
{
    Walhook__Event *e = calloc(1, sizeof(*e));
    walhook__event__init(e);
    e->commit_lsn = lsn;
    e->seq = seq;
    e->commit_ts_us = ts;
    e->json.data = (uint8_t *)json;
    e->json.len = strlen(json);
    return e;
}

static void test_batch_fill(void **state)
{
    (void)state;
    Walhook__Event *ev[4] = {
        mkev(0x100, 0, 11, "{\"n\":0}"),
        mkev(0x100, 1, 12, "{\"n\":1}"),
        mkev(0x100, 1, 12, "{\"dup\":1}"), /* duplicate position: skipped */
        mkev(0x16B3748, 0, 13, "{\"n\":2}"),
    };
    dsp_batch b;
    memset(&b, 0, sizeof(b));
    wh_buf_init(&b.body, 0);
    assert_int_equal(dsp_batch_fill(&b, "t1", ev, 4, 0, 0, 0), 3);
    assert_string_equal(b.body.data, "[{\"n\":0},{\"n\":1},{\"n\":2}]");
    assert_int_equal(b.nbytes, b.body.len);
    assert_ptr_equal(b.ptrs[1], b.body.data + 9); /* each event's bytes in the body */
    assert_int_equal(b.plens[1], 7);
    assert_string_equal(b.id, "t1:0/16B3748:0");
    assert_true(b.last_lsn == 0x16B3748);
    assert_int_equal(b.last_seq, 0);
    assert_int_equal(b.commit_ts[0], 11);
    assert_int_equal(b.commit_ts[2], 13);
    /* events at or before `after` are not posted again */
    assert_int_equal(dsp_batch_fill(&b, "t1", ev, 4, 1, 0x100, 1), 1);
    assert_string_equal(b.body.data, "[{\"n\":2}]");
    assert_int_equal(dsp_batch_fill(&b, "t1", ev, 4, 1, 0x16B3748, 0), 0);
    dsp_batch_free(&b);
    for (int i = 0; i < 4; i++)
        free(ev[i]);
}

static void test_backoff_bounds(void **state)
{
    (void)state;
    for (int attempt = 1; attempt <= 40; attempt++) {
        long cap = 100;
        for (int i = 1; i < attempt && cap < 5000; i++)
            cap *= 2;
        if (cap > 5000)
            cap = 5000;
        int maxseen = 0;
        for (int k = 0; k < 2000; k++) {
            int d = dsp_retry_delay_ms(attempt, 100, 5000);
            assert_true(d >= 1);
            assert_true(d <= cap);
            if (d > maxseen)
                maxseen = d;
        }
        assert_true(maxseen > cap / 2); /* jitter spans the range */
    }
    /* degenerate settings stay sane */
    for (int k = 0; k < 100; k++) {
        int d = dsp_retry_delay_ms(1000, 1, 1);
        assert_true(d >= 1 && d <= 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_concat),      cmocka_unit_test(test_signature_vector),
        cmocka_unit_test(test_key_parse_errors), cmocka_unit_test(test_headers),
        cmocka_unit_test(test_batch_fill),       cmocka_unit_test(test_backoff_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
