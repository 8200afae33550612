/* dsp_outcome: what one webhook attempt's result means (issue 8, "Failure
 * handling"), and when to try again. Pure functions, no I/O.
 *
 *   2xx                                     OK
 *   408, 425, 429, 5xx, timeouts, connection
 *   and transfer errors, an answer without
 *   a (valid) status line                   RETRY (Retry-After honoured)
 *   410 Gone                                GONE: the target is disabled
 *                                           until an operator resumes it
 *   other 1xx/3xx/4xx (redirects are never
 *   followed), malformed URL                PERMANENT (dead letter or block)
 */
#ifndef DSP_OUTCOME_H
#define DSP_OUTCOME_H

#include <stddef.h>
#include <stdint.h>

typedef enum { DSP_OUT_OK = 0, DSP_OUT_RETRY, DSP_OUT_PERMANENT, DSP_OUT_GONE } dsp_outcome;

/* curl_code is the transfer's CURLcode (0 = a response arrived), status the
 * HTTP status (0 when none). */
dsp_outcome dsp_classify(int curl_code, long status);
const char *dsp_outcome_name(dsp_outcome o);

/* Parses a Retry-After value (len bytes, not NUL-terminated): delta-seconds
 * ("120") or an HTTP-date (IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", and
 * the obsolete RFC 850 and asctime forms) against the wall clock now_s.
 * *ms >= 0 (a date in the past gives 0). WH_ERR when it is neither. */
int dsp_retry_after_parse(const char *v, size_t len, int64_t now_s, int64_t *ms);

/* Backoff after `attempt` (1-based) failures: full jitter in
 * [0, min(cap_ms, base_ms * 2^(attempt-1))], at least 1 ms. */
int dsp_backoff_ms(int attempt, int base_ms, int cap_ms);

#endif
