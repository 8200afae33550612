/* wh_dsn: syntax check of a PostgreSQL connection string without libpq, so
 * that daemons which never talk to PostgreSQL do not load it. Accepts the two
 * forms libpq accepts: a URI (postgresql:// or postgres://, several
 * host[:port] allowed, ?key=value parameters) and "key=value key='v a l'".
 * Keywords must be libpq connection parameters; ports must be 1..65535. The
 * ingestor still hands the string to libpq, whose own check is final. */
#ifndef WH_DSN_H
#define WH_DSN_H

#include <stddef.h>

/* Error messages never quote values (a password could be one). */
int wh_dsn_check(const char *dsn, char *err, size_t errlen);

/* Copies dsn into out with passwords (URI userinfo, password=,
 * sslpassword=) replaced by ****; always NUL-terminates. */
void wh_dsn_redact(const char *dsn, char *out, size_t len);

#endif
