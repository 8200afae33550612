/* wh_dsn: syntax check of a PostgreSQL connection string without libpq, so
 * that daemons which never talk to PostgreSQL do not load it. Accepts the two
 * forms libpq accepts: a URI (postgresql:// or postgres://, several
 * host[:port] allowed, ?key=value parameters) and "key=value key='v a l'".
 * Keywords must be libpq connection parameters; ports must be 1..65535. The
 * ingestor still hands the string to libpq, whose own check is final
 * (wh_pgerr_dsn_check, in processes that link libpq). */
#ifndef WH_DSN_H
#define WH_DSN_H

#include <stddef.h>

/* Error messages never quote values (a password could be one). */
int wh_dsn_check(const char *dsn, char *err, size_t errlen);

/* Copies dsn into out with passwords (URI userinfo, password=,
 * sslpassword=) replaced by ****; always NUL-terminates. */
void wh_dsn_redact(const char *dsn, char *out, size_t len);

/* Copies msg (a libpq or server message about a connection to dsn) into
 * out with every form of dsn's passwords replaced by ****: the URI
 * userinfo password and password=/sslpassword= values, as written and
 * percent-decoded or unquoted, and the password of any
 * "scheme://user:password@" quoted in msg. dsn may be malformed or NULL.
 * Every libpq message about a connection goes through this before it is
 * logged, stored or shown. Always NUL-terminates. */
void wh_dsn_scrub(const char *dsn, const char *msg, char *out, size_t len);

/* The database a connection string names, as libpq picks it: dbname (the
 * URI's path, percent-decoded, or its ?dbname=), else the user name (libpq's
 * default), else "" (libpq would take PGDATABASE or the OS user, which
 * only the connecting process knows). Truncated to len - 1 bytes. */
void wh_dsn_dbname(const char *dsn, char *out, size_t len);

/* 1 when connection strings a and b can reach the same PostgreSQL server
 * (a replication slot is per server, whatever the database): one host and
 * port in common, compared as libpq would connect (hostaddr over host, a
 * port list of one entry for every host, 5432 when none), with the host
 * lower case and this machine written any way (no host, a socket
 * directory, localhost, 127.0.0.1, ::1) counted as one. Either string may
 * be empty or NULL (libpq's defaults: this machine, port 5432). A "service"
 * without a host is a server of its own, named by the service. */
int wh_dsn_same_server(const char *a, const char *b);

/* The first server of dsn as wh_dsn_same_server compares it ("local:5432",
 * "db.example:6432"), for messages; never a password. */
void wh_dsn_server(const char *dsn, char *out, size_t len);

#endif
