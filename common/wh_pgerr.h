/* wh_pgerr: PostgreSQL error texts that are safe to log and to show.
 *
 * Two leaks are closed here. libpq's parse and connect messages may quote
 * the connection string, password included: wh_pgerr_dsn_check refuses a
 * DSN libpq cannot parse without quoting it, and wh_dsn_scrub (wh_dsn.h)
 * masks the password in any message about a connection. A server's error
 * may quote a row's value (a publication row filter, an output function, a
 * constraint's detail): wh_pgerr_server keeps the severity and SQLSTATE and
 * withholds the message unless the SQLSTATE is one whose message never
 * carries data. wh_pg_oneline puts such a text on one line (it alone needs
 * no libpq). Links libpq: daemons that never talk to PostgreSQL do not
 * use this module. */
#ifndef WH_PGERR_H
#define WH_PGERR_H

#include <stddef.h>

/* wh_dsn_check, then libpq's own parse (PQconninfoParse). The error names
 * what is wrong and never quotes the DSN or a part of it. */
int wh_pgerr_dsn_check(const char *dsn, char *err, size_t errlen);

/* 1 when the messages of sqlstate never quote data: connection (08),
 * authorization (28), database name (3D), resources (53), operator
 * intervention (57P, 57014), system (58), insufficient privilege (42501),
 * undefined object, function, table or column (42704, 42883, 42P01,
 * 42703), object state (55000, 55006). Data exceptions (22), constraint
 * violations (23: their detail quotes the key), syntax errors, internal
 * errors and everything else: not. */
int wh_pgerr_value_free(const char *sqlstate);

/* "SEVERITY:  primary (SQLSTATE x)" for a value-free SQLSTATE, else
 * "SEVERITY:  SQLSTATE x (message withheld: it may quote a value; see the
 * PostgreSQL server log)". Any argument may be NULL; never the detail. */
void wh_pgerr_server(const char *severity, const char *sqlstate, const char *primary, char *out,
                     size_t len);

/* wh_pgerr_server on a failed result's fields (libpq's PGresult). */
struct pg_result;
void wh_pgerr_result(const struct pg_result *res, char *out, size_t len);

/* A message from libpq or the server (PQerrorMessage, PQresultErrorMessage,
 * an error's field) on one line, for a log line, a report or an error
 * string. Copies msg into out (len bytes) and:
 *  - a run of spaces and control bytes (\n, \r, \t, \v, \f, any other
 *    byte below 0x20, 0x7f) holding at least one control byte becomes one
 *    space: "refused\n\tIs the server" -> "refused Is the server",
 *    "a \n  b" -> "a b";
 *  - a run of plain spaces is kept as it is (PostgreSQL's "ERROR:  x"
 *    keeps its two spaces);
 *  - leading and trailing runs (libpq's final "\n", several of them, a
 *    trailing space) are dropped.
 * Other bytes, UTF-8 included, are copied unchanged; msg NULL is "". When
 * the result needs more than len - 1 bytes it is cut before the first byte
 * that does not fit, then shortened to not end inside a UTF-8 sequence nor
 * in a space, and WH_ERR is returned; else WH_OK. out is always
 * NUL-terminated when len > 0 (len 0: WH_ERR, nothing written). out may be
 * msg itself (in place: wh_pg_oneline(m, m, sizeof(m))); no other overlap. */
int wh_pg_oneline(const char *msg, char *out, size_t len);

#endif
