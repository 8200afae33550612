/* wh_cidr: lists of network prefixes ("127.0.0.0/8, ::1, 10.1.2.3") for the
 * dispatcher's SSRF guard (dispatcher.allow_private_networks and a target's
 * allow_private) and for the checks of the config and the runtime state,
 * which share the syntax. Pure functions, no allocation. */
#ifndef WH_CIDR_H
#define WH_CIDR_H

#include <stddef.h>

#define WH_CIDR_MAX 16 /* prefixes in one list */

typedef struct wh_cidr {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int bits;
} wh_cidr;

typedef struct wh_cidr_list {
    wh_cidr v[WH_CIDR_MAX];
    int n;
} wh_cidr_list;

/* Parses a comma- or space-separated list; an address without "/bits" is a
 * single host. "" gives an empty list. err names the bad item. */
int wh_cidr_list_parse(const char *s, wh_cidr_list *out, char *err, size_t errlen);
/* 1 when addr (4 bytes for AF_INET, 16 for AF_INET6) is inside a prefix of
 * l. An IPv4-mapped IPv6 address (::ffff:a.b.c.d) also matches IPv4
 * prefixes. */
int wh_cidr_list_match(const wh_cidr_list *l, int family, const unsigned char *addr);

#endif
