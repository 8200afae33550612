/* dsp_ssrf: the SSRF guard (issue 8, "Safety"). Targets are URLs users give
 * us; the address a name resolves to is checked when curl opens the socket
 * (CURLOPT_OPENSOCKETFUNCTION, dsp_target.c), so DNS cannot point a public
 * looking name at an internal service. Refused unless an allow list names
 * them: loopback (127/8, ::1), private (10/8, 172.16/12, 192.168/16,
 * fc00::/7), link-local (169.254/16, fe80::/10), CGNAT (100.64/10),
 * multicast (224/4, ff00::/8), unspecified (0/8, ::), cloud metadata
 * (169.254.169.254, fd00:ec2::254), reserved (240/4, 255.255.255.255).
 * IPv6 addresses that carry an IPv4 address are judged by it (and by
 * each when they carry two): IPv4-mapped ::ffff:0:0/96, SIIT
 * IPv4-translated ::ffff:0:0:0/96 (RFC 6145/7915), IPv4-compatible ::/96
 * (deprecated; but :: and ::1), NAT64 64:ff9b::/96 and 64:ff9b:1::/48
 * (RFC 8215), 6to4 2002::/16 and Teredo 2001::/32 (client and server).
 * Pure. */
#ifndef DSP_SSRF_H
#define DSP_SSRF_H

#include <stddef.h>
#include <sys/socket.h>

#include "wh_cidr.h"

/* Up to this many IPv4 addresses read from one IPv6 address. */
#define DSP_EMBEDDED_MAX 2

/* The IPv4 addresses a (16 bytes) carries by one of the formats above,
 * into v4; returns how many (0: none) and names the format in *how (may be
 * NULL). 64:ff9b:1::/48 is read as a /96 (the last 32 bits), and also
 * as a /64 (bits 72-104) when the address has that layout's zero "u"
 * byte and suffix; Teredo gives the client's then the server's. */
int dsp_addr_embedded4(const unsigned char *a, unsigned char v4[DSP_EMBEDDED_MAX][4],
                       const char **how);

/* The class of a non-public address ("loopback", "private", ...), or NULL
 * for a public one. addr is 4 bytes (AF_INET) or 16 (AF_INET6). */
const char *dsp_addr_class(int family, const unsigned char *addr);

/* 1 when sa may be connected to: public, or named by global or target
 * (either may be NULL; an IPv6 address that carries IPv4 ones is also
 * named when their IPv4 prefixes name each of those that is not public).
 * Else 0 with why ("127.0.0.1 is loopback", "64:ff9b::a00:1 is private
 * (private 10.0.0.1, embedded by NAT64)"). */
int dsp_ssrf_allowed(const struct sockaddr *sa, const wh_cidr_list *global,
                     const wh_cidr_list *target, char *why, size_t whylen);

#endif
