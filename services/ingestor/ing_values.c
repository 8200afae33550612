/* ing_values: text-format column values to JSON. */
#include "ing_values.h"
#include "wh_json.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "wh_util.h"

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int ing_is_json_number(const char *s, size_t n)
{
    return n > 0 && wh_json_number_len(s, n, NULL, NULL) == n;
}

/* bytea hex output "\x0a0b..." -> base64 string, decoded in chunks whose
 * size is a multiple of 3 so the concatenated base64 equals the whole. */
static int bytea_json(wh_buf *b, const char *s, size_t n)
{
    if (n < 2 || s[0] != '\\' || s[1] != 'x' || (n - 2) % 2 != 0)
        return ing_value_binary(b, s, n); /* not hex format: keep the text bytes */
    for (size_t i = 2; i < n; i++)
        if (wh_hexval(s[i]) < 0)
            return ing_value_binary(b, s, n);
    if (wh_buf_putc(b, '"'))
        return WH_ERR;
    unsigned char chunk[3072];
    size_t k = 0;
    for (size_t i = 2; i < n; i += 2) {
        chunk[k++] = (unsigned char)(wh_hexval(s[i]) << 4 | wh_hexval(s[i + 1]));
        if (k == sizeof(chunk)) {
            if (wh_base64(b, chunk, k))
                return WH_ERR;
            k = 0;
        }
    }
    if (k && wh_base64(b, chunk, k))
        return WH_ERR;
    return wh_buf_putc(b, '"');
}

/* "YYYY-MM-DD HH:MM:SS[.f]" prefix check: returns 1 when the date/time part
 * has the ISO shape with a 4-digit year. */
static int iso_shape(const char *s, size_t n)
{
    static const char pat[] = "dddd-dd-dd dd:dd:dd";
    if (n < sizeof(pat) - 1)
        return 0;
    for (size_t i = 0; i < sizeof(pat) - 1; i++) {
        if (pat[i] == 'd' ? !is_digit(s[i]) : s[i] != pat[i])
            return 0;
    }
    return 1;
}

/* timestamptz text "2026-11-22 01:02:03.123456+00" -> "...T...Z";
 * other offsets become "+HH:MM"; anything unusual (infinity, BC, 5-digit
 * years) is kept as its text. */
static int timestamptz_json(wh_buf *b, const char *s, size_t n)
{
    if (!iso_shape(s, n))
        return wh_json_str(b, s, n);
    size_t i = 19;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && is_digit(s[i]))
            i++;
    }
    size_t body = i;
    const char *off = s + i;
    size_t offn = n - i;
    char out[64];
    if (body > 40)
        return wh_json_str(b, s, n);
    memcpy(out, s, body);
    out[10] = 'T';
    size_t o = body;
    if (offn == 3 && (off[0] == '+' || off[0] == '-') && off[1] == '0' && off[2] == '0') {
        out[o++] = 'Z';
    } else if (offn == 3 && (off[0] == '+' || off[0] == '-') && is_digit(off[1]) &&
               is_digit(off[2])) {
        memcpy(out + o, off, 3);
        o += 3;
        memcpy(out + o, ":00", 3);
        o += 3;
    } else if ((offn == 6 || offn == 9) && (off[0] == '+' || off[0] == '-') && off[3] == ':') {
        memcpy(out + o, off, 6); /* seconds in an offset are dropped: rare */
        o += 6;
    } else {
        return wh_json_str(b, s, n);
    }
    return wh_json_str(b, out, o);
}

static int timestamp_json(wh_buf *b, const char *s, size_t n)
{
    if (!iso_shape(s, n) || n > 64)
        return wh_json_str(b, s, n);
    char out[64];
    memcpy(out, s, n);
    out[10] = 'T';
    return wh_json_str(b, out, n);
}

int ing_value_binary(wh_buf *b, const char *data, size_t len)
{
    if (wh_buf_putc(b, '"') || wh_base64(b, data, len))
        return WH_ERR;
    return wh_buf_putc(b, '"');
}

int ing_value_json(wh_buf *b, uint32_t type_oid, const char *s, size_t n)
{
    switch (type_oid) {
    case ING_INT2OID:
    case ING_INT4OID:
    case ING_INT8OID:
    case ING_OIDOID:
    case ING_FLOAT4OID:
    case ING_FLOAT8OID:
        /* NaN, Infinity, -Infinity (and anything odd) travel as strings */
        if (ing_is_json_number(s, n))
            return wh_buf_append(b, s, n);
        return wh_json_str(b, s, n);
    case ING_BOOLOID:
        if (n == 1 && s[0] == 't')
            return wh_buf_append(b, "true", 4);
        if (n == 1 && s[0] == 'f')
            return wh_buf_append(b, "false", 5);
        return wh_json_str(b, s, n);
    case ING_JSONOID:
    case ING_JSONBOID:
        /* PostgreSQL validated it on input; embed as is. */
        if (n == 0)
            return wh_buf_append(b, "null", 4);
        return wh_buf_append(b, s, n);
    case ING_BYTEAOID:
        return bytea_json(b, s, n);
    case ING_TIMESTAMPTZOID:
        return timestamptz_json(b, s, n);
    case ING_TIMESTAMPOID:
        return timestamp_json(b, s, n);
    default:
        /* numeric, text, varchar, bpchar, name, date, uuid, everything else */
        return wh_json_str(b, s, n);
    }
}

/* Writes v as n decimal digits, zero-padded. */
static void put_digits(char *p, unsigned v, int n)
{
    while (n-- > 0) {
        p[n] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* Any year (gmtime_r + snprintf): the slow path of ing_format_ts_utc. */
static int format_ts_slow(int64_t secs, int64_t us, char *buf, size_t len)
{
    time_t t = (time_t)secs;
    struct tm tm;
    if (!gmtime_r(&t, &tm))
        return -1;
    int n = snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)us);
    if (n < 0 || (size_t)n >= len)
        return -1;
    return n;
}

int ing_format_ts_utc(int64_t unix_us, char *buf, size_t len)
{
    int64_t secs = unix_us / 1000000;
    int64_t us = unix_us % 1000000;
    if (us < 0) {
        us += 1000000;
        secs -= 1;
    }
    /* civil date from days since 1970-01-01 (H. Hinnant's algorithm): no
     * gmtime_r (its time zone lock) and no printf, once per transaction */
    int64_t days = secs / 86400, sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        days -= 1;
    }
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    if (m <= 2)
        y++;
    if (y < 0 || y > 9999 || len < 28)
        return format_ts_slow(secs, us, buf, len);
    /* YYYY-MM-DDTHH:MM:SS.uuuuuuZ */
    put_digits(buf, (unsigned)y, 4);
    buf[4] = '-';
    put_digits(buf + 5, m, 2);
    buf[7] = '-';
    put_digits(buf + 8, d, 2);
    buf[10] = 'T';
    put_digits(buf + 11, (unsigned)(sod / 3600), 2);
    buf[13] = ':';
    put_digits(buf + 14, (unsigned)(sod / 60 % 60), 2);
    buf[16] = ':';
    put_digits(buf + 17, (unsigned)(sod % 60), 2);
    buf[19] = '.';
    put_digits(buf + 20, (unsigned)us, 6);
    buf[26] = 'Z';
    buf[27] = '\0';
    return 27;
}
