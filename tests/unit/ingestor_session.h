/* The pgoutput messages captured from PostgreSQL 15 (data/ingestor/), as
 * bytes, for the ingestor's unit tests. */
#ifndef INGESTOR_SESSION_H
#define INGESTOR_SESSION_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/ingestor/pgoutput_session.h"
#include "wh_util.h"

#define NMSG (sizeof(pgoutput_session_hex) / sizeof(pgoutput_session_hex[0]))

/* Decodes one captured hex message; the caller frees the result. */
static inline uint8_t *unhex(const char *h, size_t *len)
{
    size_t n = strlen(h) / 2;
    uint8_t *p = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(wh_hexval(h[2 * i]) << 4 | wh_hexval(h[2 * i + 1]));
    *len = n;
    return p;
}

#endif
