/* dsp_ssrf: the SSRF guard (issue 8, "Safety"). Targets are URLs users give
 * us; the address a name resolves to is checked when curl opens the socket
 * (CURLOPT_OPENSOCKETFUNCTION, dsp_target.c), so DNS cannot point a public
 * looking name at an internal service. Refused unless an allow list names
 * them: loopback (127/8, ::1), private (10/8, 172.16/12, 192.168/16,
 * fc00::/7), link-local (169.254/16, fe80::/10), CGNAT (100.64/10),
 * multicast (224/4, ff00::/8), unspecified (0/8, ::), cloud metadata
 * (169.254.169.254, fd00:ec2::254), reserved (240/4, 255.255.255.255).
 * IPv4-mapped IPv6 addresses are judged as their IPv4 address. Pure. */
#ifndef DSP_SSRF_H
#define DSP_SSRF_H

#include <stddef.h>
#include <sys/socket.h>

#include "wh_cidr.h"

/* The class of a non-public address ("loopback", "private", ...), or NULL
 * for a public one. addr is 4 bytes (AF_INET) or 16 (AF_INET6). */
const char *dsp_addr_class(int family, const unsigned char *addr);

/* 1 when sa may be connected to: public, or named by global or target
 * (either may be NULL). Else 0 with why ("127.0.0.1 is loopback"). */
int dsp_ssrf_allowed(const struct sockaddr *sa, const wh_cidr_list *global,
                     const wh_cidr_list *target, char *why, size_t whylen);

#endif
