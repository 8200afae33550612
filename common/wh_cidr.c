/* wh_cidr: prefix lists. See wh_cidr.h. */
#include "wh_cidr.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "wh_util.h"

static int parse_one(const char *item, wh_cidr *c, char *err, size_t errlen)
{
    char host[64];
    const char *slash = strchr(item, '/');
    size_t hl = slash ? (size_t)(slash - item) : strlen(item);
    if (hl == 0 || hl >= sizeof(host))
        return wh_seterr(err, errlen, "'%.64s' is not an address or prefix", item);
    memcpy(host, item, hl);
    host[hl] = '\0';
    memset(c, 0, sizeof(*c));
    if (inet_pton(AF_INET, host, c->addr) == 1) {
        c->family = AF_INET;
        c->bits = 32;
    } else if (inet_pton(AF_INET6, host, c->addr) == 1) {
        c->family = AF_INET6;
        c->bits = 128;
    } else {
        return wh_seterr(err, errlen, "'%.64s' is not an IPv4 or IPv6 address", host);
    }
    if (slash) {
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || *end != '\0' || b < 0 || b > c->bits)
            return wh_seterr(err, errlen, "'%.64s': prefix length must be 0..%d", item, c->bits);
        c->bits = (int)b;
    }
    return WH_OK;
}

int wh_cidr_list_parse(const char *s, wh_cidr_list *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    const char *p = s;
    while (*p) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ' && *e != '\t')
            e++;
        char item[80];
        size_t n = (size_t)(e - p);
        if (n >= sizeof(item))
            return wh_seterr(err, errlen, "'%.40s...' is too long for an address or prefix", p);
        memcpy(item, p, n);
        item[n] = '\0';
        if (out->n == WH_CIDR_MAX)
            return wh_seterr(err, errlen, "at most %d prefixes", WH_CIDR_MAX);
        if (parse_one(item, &out->v[out->n], err, errlen) != WH_OK)
            return WH_ERR;
        out->n++;
        p = e;
    }
    return WH_OK;
}

static int prefix_match(const unsigned char *a, const unsigned char *b, int bits)
{
    int full = bits / 8, rest = bits % 8;
    if (full > 0 && memcmp(a, b, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

int wh_cidr_list_match(const wh_cidr_list *l, int family, const unsigned char *addr)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    const unsigned char *v4 = NULL;
    if (family == AF_INET)
        v4 = addr;
    else if (family == AF_INET6 && memcmp(addr, mapped, 12) == 0)
        v4 = addr + 12;
    for (int i = 0; i < l->n; i++) {
        const wh_cidr *c = &l->v[i];
        if (c->family == AF_INET && v4 != NULL && prefix_match(v4, c->addr, c->bits))
            return 1;
        if (c->family == AF_INET6 && family == AF_INET6 && prefix_match(addr, c->addr, c->bits))
            return 1;
    }
    return 0;
}
