/* dsp_outcome: classification, Retry-After, backoff. See dsp_outcome.h. */
#include "dsp_outcome.h"

#include <curl/curl.h>
#include <string.h>
#include <time.h>

#include "wh_util.h"

dsp_outcome dsp_classify(int curl_code, long status)
{
    if (curl_code != CURLE_OK) {
        switch (curl_code) {
        /* Not CURLE_UNSUPPORTED_PROTOCOL: the scheme is checked up front
         * (wh_target_validate), so libcurl only returns it here for an answer
         * without a status line ("Received HTTP/0.9 when not allowed"), as
         * it does CURLE_WEIRD_SERVER_REPLY for a garbled one: bytes from a
         * middlebox or a restarting endpoint, retried like a reset. */
        case CURLE_URL_MALFORMAT:
        case CURLE_BAD_FUNCTION_ARGUMENT:
        case CURLE_TOO_MANY_REDIRECTS:
            return DSP_OUT_PERMANENT;
        default:
            return DSP_OUT_RETRY; /* timeouts, DNS, connect, reset, TLS, ... */
        }
    }
    if (status >= 200 && status < 300)
        return DSP_OUT_OK;
    if (status == 408 || status == 425 || status == 429 || (status >= 500 && status < 600))
        return DSP_OUT_RETRY;
    if (status == 410)
        return DSP_OUT_GONE;
    if (status == 0)
        return DSP_OUT_RETRY; /* no status line at all: a broken answer */
    return DSP_OUT_PERMANENT;
}

const char *dsp_outcome_name(dsp_outcome o)
{
    switch (o) {
    case DSP_OUT_OK:
        return "ok";
    case DSP_OUT_RETRY:
        return "retryable";
    case DSP_OUT_PERMANENT:
        return "permanent";
    case DSP_OUT_GONE:
        return "gone";
    }
    return "?";
}

int dsp_retry_after_parse(const char *v, size_t len, int64_t now_s, int64_t *ms)
{
    char buf[64];
    while (len > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    while (len > 0 &&
           (v[len - 1] == ' ' || v[len - 1] == '\t' || v[len - 1] == '\r' || v[len - 1] == '\n'))
        len--;
    if (len == 0 || len >= sizeof(buf))
        return WH_ERR;
    memcpy(buf, v, len);
    buf[len] = '\0';
    if (buf[0] >= '0' && buf[0] <= '9') {
        int64_t s = 0;
        for (size_t i = 0; i < len; i++) {
            if (buf[i] < '0' || buf[i] > '9')
                return WH_ERR;
            if (s < 100000000) /* saturate: ~3 years */
                s = s * 10 + (buf[i] - '0');
        }
        *ms = s * 1000;
        return WH_OK;
    }
    static const char *const fmts[] = {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT",
                                       "%a %b %e %H:%M:%S %Y"};
    for (size_t k = 0; k < sizeof(fmts) / sizeof(fmts[0]); k++) {
        struct tm tm;
        memset(&tm, 0, sizeof(tm));
        const char *end = strptime(buf, fmts[k], &tm);
        if (end == NULL || *end != '\0')
            continue;
        int64_t at = (int64_t)timegm(&tm);
        *ms = at > now_s ? (at - now_s) * 1000 : 0;
        return WH_OK;
    }
    return WH_ERR;
}

int dsp_backoff_ms(int attempt, int base_ms, int cap_ms)
{
    int d = wh_backoff_ms(attempt > 0 ? attempt - 1 : 0, base_ms, cap_ms);
    return d < 1 ? 1 : d;
}
