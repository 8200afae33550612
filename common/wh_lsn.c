/* wh_lsn: LSN text form, event ids, big-endian helpers. */
#include "wh_lsn.h"
#include "wh_util.h"

#include <inttypes.h>
#include <stdio.h>

static const char *parse_half(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    int n = 0;
    for (; wh_hexval(*s) >= 0; s++, n++) {
        if (n == 8)
            return NULL;
        v = (v << 4) | (uint32_t)wh_hexval(*s);
    }
    if (n == 0)
        return NULL;
    *out = v;
    return s;
}

int wh_lsn_parse(const char *s, uint64_t *out)
{
    uint32_t hi, lo;
    if (s == NULL)
        return WH_ERR;
    s = parse_half(s, &hi);
    if (s == NULL || *s != '/')
        return WH_ERR;
    s = parse_half(s + 1, &lo);
    if (s == NULL || *s != '\0')
        return WH_ERR;
    *out = ((uint64_t)hi << 32) | lo;
    return WH_OK;
}

/* Upper-case hex of v without leading zeros ("0" for 0) at p; returns its
 * length (at most 8). */
static size_t put_hex32(char *p, uint32_t v)
{
    static const char hex[] = "0123456789ABCDEF";
    char tmp[8];
    size_t n = 0;
    do {
        tmp[n++] = hex[v & 15];
        v >>= 4;
    } while (v);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

int wh_lsn_format(uint64_t lsn, char *buf, size_t len)
{
    /* "%X/%X" without printf (once per transaction on the hot path) */
    if (len < WH_LSN_STRLEN)
        return snprintf(buf, len, "%X/%X", (uint32_t)(lsn >> 32), (uint32_t)lsn);
    size_t n = put_hex32(buf, (uint32_t)(lsn >> 32));
    buf[n++] = '/';
    n += put_hex32(buf + n, (uint32_t)lsn);
    buf[n] = '\0';
    return (int)n;
}

int wh_event_id(const char *tenant, uint64_t lsn, uint32_t seq, char *buf, size_t len)
{
    int n =
        snprintf(buf, len, "%s:%X/%X:%" PRIu32, tenant, (uint32_t)(lsn >> 32), (uint32_t)lsn, seq);
    if (n < 0 || (size_t)n >= len)
        return -1;
    return n;
}

void wh_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

void wh_put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

uint64_t wh_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

uint32_t wh_get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

uint16_t wh_get_be16(const uint8_t *p)
{
    return (uint16_t)(((unsigned)p[0] << 8) | p[1]);
}

int wh_pos_cmp(uint64_t lsn_a, uint32_t seq_a, uint64_t lsn_b, uint32_t seq_b)
{
    if (lsn_a != lsn_b)
        return lsn_a < lsn_b ? -1 : 1;
    if (seq_a != seq_b)
        return seq_a < seq_b ? -1 : 1;
    return 0;
}
