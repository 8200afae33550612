/* Unit tests of st_crc32c, the CRC32C walhook-store links in place of
 * librocksdb's table-driven one: RFC 3720 check values, the SSE4.2 path
 * equal to the table-driven one at every length and alignment and when
 * continued (Extend), and Crc32cCombine equal to the CRC of the
 * concatenation. That Debian's librocksdb reads what the store wrote is
 * test_store_crc32c.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "../../services/store/st_crc32c.h"

static void test_check_values(void **state)
{
    unsigned char b[32];
    assert_int_equal(st_crc32c_extend(0, "123456789", 9), 0xE3069283u);
    memset(b, 0, sizeof(b));
    assert_int_equal(st_crc32c_extend(0, b, 32), 0x8A9136AAu);
    assert_int_equal(st_crc32c_extend_portable(0, b, 32), 0x8A9136AAu);
    memset(b, 0xff, sizeof(b));
    assert_int_equal(st_crc32c_extend(0, b, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        b[i] = (unsigned char)i;
    assert_int_equal(st_crc32c_extend(0, b, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        b[i] = (unsigned char)(31 - i);
    assert_int_equal(st_crc32c_extend(0, b, 32), 0x113FDB5Cu);
    assert_int_equal(st_crc32c_extend(0, b, 0), 0u);
}

static void test_paths_agree(void **state)
{
    static unsigned char buf[4096 + 16];
    uint64_t x = 88172645463325252u;
    for (size_t i = 0; i < sizeof(buf); i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (unsigned char)x;
    }
    for (size_t off = 0; off < 16; off++) {
        for (size_t n = 0; n < 300; n++) {
            uint32_t a = st_crc32c_extend(0, buf + off, n);
            assert_int_equal(a, st_crc32c_extend_portable(0, buf + off, n));
            /* continued in two parts: the same as at once (Extend) */
            size_t k = n / 3;
            uint32_t c = st_crc32c_extend(st_crc32c_extend(0, buf + off, k), buf + off + k, n - k);
            assert_int_equal(c, a);
            /* combined from the CRCs of the two parts */
            uint32_t c1 = st_crc32c_extend(0, buf + off, k);
            uint32_t c2 = st_crc32c_extend(0, buf + off + k, n - k);
            assert_int_equal(st_crc32c_combine(c1, c2, n - k), a);
        }
    }
    assert_int_equal(st_crc32c_extend(0, buf, 4096), st_crc32c_extend_portable(0, buf, 4096));
    /* around and past the three-chain rounds (3 x 512 bytes), continued */
    for (size_t off = 0; off < 8; off += 3)
        for (size_t n = 1500; n <= 4096; n++) {
            uint32_t a = st_crc32c_extend(0x12345678u, buf + off, n);
            assert_int_equal(a, st_crc32c_extend_portable(0x12345678u, buf + off, n));
        }
    /* long second parts: every bit of the length used by the combine */
    size_t big = (size_t)3 << 20;
    unsigned char *m = malloc(big);
    assert_non_null(m);
    for (size_t i = 0; i < big; i++)
        m[i] = buf[i % sizeof(buf)] ^ (unsigned char)(i >> 12);
    size_t cuts[] = {0, 1, 4095, 65537, (size_t)1 << 20, big - 1};
    uint32_t all = st_crc32c_extend(0, m, big);
    assert_int_equal(all, st_crc32c_extend_portable(0, m, big));
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        uint32_t c1 = st_crc32c_extend(0, m, cuts[i]);
        uint32_t c2 = st_crc32c_extend(0, m + cuts[i], big - cuts[i]);
        assert_int_equal(st_crc32c_combine(c1, c2, big - cuts[i]), all);
    }
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_values),
        cmocka_unit_test(test_paths_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
