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

const char *dsp_addr_class(int family, const unsigned char *a)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char zero[16] = {0};
    static const unsigned char metadata6[16] = {0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0,    0,
                                                0,    0,    0,    0,    0, 0, 0x02, 0x54};
    if (family == AF_INET)
        return class4(a);
    if (family != AF_INET6)
        return "not IP";
    if (memcmp(a, mapped, 12) == 0)
        return class4(a + 12);
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
    char txt[INET6_ADDRSTRLEN];
    if (inet_ntop(fam, a, txt, sizeof(txt)) == NULL)
        snprintf(txt, sizeof(txt), "?");
    snprintf(why, whylen,
             "%s is %s (allow it with dispatcher.allow_private_networks or the target's "
             "allow_private)",
             txt, cls);
    return 0;
}
