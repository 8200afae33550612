/* wh_pgerr: PostgreSQL error texts that are safe to log and to show.
 *
 * libpq's parse and connect messages may quote the connection string,
 * password included: wh_pgerr_dsn_check refuses a DSN libpq cannot parse
 * without quoting it, and wh_dsn_scrub (wh_dsn.h) masks the password in any
 * message about a connection. Links libpq: daemons that never talk to
 * PostgreSQL do not use this module. */
#ifndef WH_PGERR_H
#define WH_PGERR_H

#include <stddef.h>

/* wh_dsn_check, then libpq's own parse (PQconninfoParse). The error names
 * what is wrong and never quotes the DSN or a part of it. */
int wh_pgerr_dsn_check(const char *dsn, char *err, size_t errlen);

#endif
