/* dsp_ssrf: address classes and the allow lists. See dsp_ssrf.h. */
#include "dsp_ssrf.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static const char *class4(const unsigned char *a)
{
    if (a[0] == 169 && a[1] == 254 && a[2] == 169 && a[3] == 254)
        return "cloud metadata";
    if (a[0] == 127)
        return "loopback";
    if (a[0] == 0)
        return "unspecified";
    if (a[0] == 10 || (a[0] == 172 && (a[1] & 0xf0) == 16) || (a[0] == 192 && a[1] == 168))
        return "private";
    if (a[0] == 169 && a[1] == 254)
        return "link-local";
    if (a[0] == 100 && (a[1] & 0xc0) == 64)
        return "CGNAT";
    if ((a[0] & 0xf0) == 224)
        return "multicast";
    if ((a[0] & 0xf0) == 240)
        return "reserved";
    return NULL;
}

int dsp_addr_embedded4(const unsigned char *a, unsigned char v4[DSP_EMBEDDED_MAX][4],
                       const char **how)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char siit[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0};
    static const unsigned char zero[12] = {0};
    static const unsigned char nat64[12] = {0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    static const unsigned char nat64l[6] = {0x00, 0x64, 0xff, 0x9b, 0x00, 0x01};
    const char *h = NULL;
    int n = 0;
    if (memcmp(a, mapped, 12) == 0) {
        h = "IPv4-mapped";
        memcpy(v4[n++], a + 12, 4);
    } else if (memcmp(a, siit, 12) == 0) {
        /* SIIT IPv4-translated ::ffff:0:0/96 (RFC 6145, RFC 7915): a
         * translator sends it to the IPv4 address as such */
        h = "SIIT";
        memcpy(v4[n++], a + 12, 4);
    } else if (memcmp(a, zero, 12) == 0) {
        /* IPv4-compatible (RFC 4291, deprecated): ::/96 but :: and ::1,
         * which are themselves */
        if (!(a[12] == 0 && a[13] == 0 && a[14] == 0 && a[15] <= 1)) {
            h = "IPv4-compatible";
            memcpy(v4[n++], a + 12, 4);
        }
    } else if (memcmp(a, nat64, 12) == 0) {
        h = "NAT64"; /* RFC 6052 well-known prefix 64:ff9b::/96 */
        memcpy(v4[n++], a + 12, 4);
    } else if (memcmp(a, nat64l, 6) == 0) {
        /* RFC 8215 local-use 64:ff9b:1::/48, read as a /96 (the IPv4 in
         * the last 32 bits). The shorter RFC 6052 layouts it also allows
         * put the IPv4 elsewhere, and an address of one cannot be told
         * from a /96 one with the operator's bits set. /48 and /56 leave
         * the last 32 bits zero (their suffix): 0.0.0.0, refused. /64
         * puts it in bytes 9-12 (byte 8, "u", zero; a zero suffix after
         * it): read as a /96 it is the IPv4's last byte and three zeros,
         * public for most (10.0.0.5 as 5.0.0.0), so an address of that
         * shape is judged by the /64 reading too. Not when that reading
         * is 0.0.0.x (no destination): a /96 address of x.0.0.0 */
        h = "NAT64";
        memcpy(v4[n++], a + 12, 4);
        if (a[8] == 0 && a[13] == 0 && a[14] == 0 && a[15] == 0 &&
            (a[9] != 0 || a[10] != 0 || a[11] != 0))
            memcpy(v4[n++], a + 9, 4);
    } else if (a[0] == 0x20 && a[1] == 0x02) {
        h = "6to4"; /* 2002:V4ADDR::/48 (RFC 3056) */
        memcpy(v4[n++], a + 2, 4);
    } else if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0 && a[3] == 0) {
        /* Teredo 2001::/32 (RFC 4380): the client's IPv4 (where the packets
         * go) in bytes 12-15 with every bit inverted, the server's in 4-7 */
        h = "Teredo";
        for (int i = 0; i < 4; i++)
            v4[n][i] = (unsigned char)~a[12 + i];
        n++;
        memcpy(v4[n++], a + 4, 4);
    }
    if (how != NULL)
        *how = h;
    return n;
}

const char *dsp_addr_class(int family, const unsigned char *a)
{
    static const unsigned char zero[16] = {0};
    static const unsigned char metadata6[16] = {0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0,    0,
                                                0,    0,    0,    0,    0, 0, 0x02, 0x54};
    if (family == AF_INET)
        return class4(a);
    if (family != AF_INET6)
        return "not IP";
    unsigned char v4[DSP_EMBEDDED_MAX][4];
    int n = dsp_addr_embedded4(a, v4, NULL);
    for (int i = 0; i < n; i++) {
        const char *c = class4(v4[i]);
        if (c != NULL)
            return c;
    }
    if (n > 0)
        return NULL;
    if (memcmp(a, metadata6, 16) == 0)
        return "cloud metadata";
    if (memcmp(a, zero, 15) == 0 && a[15] == 1)
        return "loopback";
    if (memcmp(a, zero, 16) == 0)
        return "unspecified";
    if ((a[0] & 0xfe) == 0xfc)
        return "private";
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
        return "link-local";
    if (a[0] == 0xff)
        return "multicast";
    return NULL;
}

int dsp_ssrf_allowed(const struct sockaddr *sa, const wh_cidr_list *global,
                     const wh_cidr_list *target, char *why, size_t whylen)
{
    const unsigned char *a;
    int fam = sa->sa_family;
    if (fam == AF_INET)
        a = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
    else if (fam == AF_INET6)
        a = (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    else {
        snprintf(why, whylen, "address family %d is not IP", fam);
        return 0;
    }
    const char *cls = dsp_addr_class(fam, a);
    if (cls == NULL)
        return 1;
    if ((global != NULL && wh_cidr_list_match(global, fam, a)) ||
        (target != NULL && wh_cidr_list_match(target, fam, a)))
        return 1;
    /* an IPv6 address that carries an IPv4 one: the lists' IPv4 prefixes
     * allow it when they name every embedded address that is not public */
    unsigned char v4[DSP_EMBEDDED_MAX][4];
    const char *how = NULL;
    int n = fam == AF_INET6 ? dsp_addr_embedded4(a, v4, &how) : 0;
    const unsigned char *shown = NULL;
    for (int i = 0; i < n; i++) {
        if (class4(v4[i]) == NULL)
            continue;
        if ((global != NULL && wh_cidr_list_match(global, AF_INET, v4[i])) ||
            (target != NULL && wh_cidr_list_match(target, AF_INET, v4[i])))
            continue;
        shown = v4[i];
        break;
    }
    if (n > 0 && shown == NULL)
        return 1;
    char txt[INET6_ADDRSTRLEN], in4[INET_ADDRSTRLEN + 64] = "";
    if (inet_ntop(fam, a, txt, sizeof(txt)) == NULL)
        snprintf(txt, sizeof(txt), "?");
    if (shown != NULL) {
        cls = class4(shown);
        char t4[INET_ADDRSTRLEN];
        if (how != NULL && strcmp(how, "IPv4-mapped") != 0 &&
            inet_ntop(AF_INET, shown, t4, sizeof(t4)) != NULL)
            snprintf(in4, sizeof(in4), " (%s, embedded by %s)", t4, how);
    }
    snprintf(why, whylen,
             "%s is %s%s (allow it with dispatcher.allow_private_networks or the target's "
             "allow_private)",
             txt, cls, in4);
    return 0;
}
