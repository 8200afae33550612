/* wh_buf: bounded growable buffer; JSON string and base64 writers. */
#include "wh_buf.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include "wh_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void wh_buf_init(wh_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void wh_buf_free(wh_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void wh_buf_reset(wh_buf *b)
{
    b->len = 0;
}

int wh_buf_reserve(wh_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1)
        return WH_ERR;
    size_t need = b->len + extra + 1; /* room for a NUL */
    if (b->max != 0 && need > b->max + 1)
        return WH_ERR;
    if (need <= b->cap)
        return WH_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap * 2;
    if (b->max != 0 && cap > b->max + 1)
        cap = b->max + 1;
    char *p = realloc(b->data, cap);
    if (p == NULL)
        return WH_ERR;
    b->data = p;
    b->cap = cap;
    return WH_OK;
}

int wh_buf_append_grow(wh_buf *b, const void *p, size_t n)
{
    if (wh_buf_reserve(b, n) != WH_OK)
        return WH_ERR;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return WH_OK;
}

int wh_buf_puts(wh_buf *b, const char *s)
{
    return wh_buf_append(b, s, strlen(s));
}

int wh_buf_printf(wh_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || wh_buf_reserve(b, (size_t)n) != WH_OK)
        return WH_ERR;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return WH_OK;
}

int wh_buf_cstr(wh_buf *b)
{
    if (wh_buf_reserve(b, 0) != WH_OK)
        return WH_ERR;
    b->data[b->len] = '\0';
    return WH_OK;
}

size_t wh_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0) {
        len = 2;
        cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3;
        cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* The end of the run of bytes from s[i] that a JSON string takes as they
 * are (printable ASCII other than '"' and '\\'): 16 bytes at a time with
 * SSE2 (a signed compare with 0x20 catches both the control bytes and
 * every byte >= 0x80), the tail byte by byte. */
static size_t plain_run(const unsigned char *s, size_t i, size_t n)
{
#ifdef __SSE2__
    const __m128i sp = _mm_set1_epi8(0x20), q = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\');
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i x = _mm_or_si128(_mm_cmplt_epi8(v, sp),
                                 _mm_or_si128(_mm_cmpeq_epi8(v, q), _mm_cmpeq_epi8(v, bs)));
        unsigned m = (unsigned)_mm_movemask_epi8(x);
        if (m != 0)
            return i + (size_t)__builtin_ctz(m);
    }
#endif
    while (i < n && s[i] >= 0x20 && s[i] < 0x80 && s[i] != '"' && s[i] != '\\')
        i++;
    return i;
}

/* Invalid UTF-8 bytes replaced by U+FFFD in this process. */
static uint64_t utf8_replaced;

uint64_t wh_utf8_replaced(void)
{
    return __atomic_load_n(&utf8_replaced, __ATOMIC_RELAXED);
}

/* The end of the valid UTF-8 from s[i] (ASCII included). ASCII is skipped
 * 16 bytes at a time (a jsonb value is mostly ASCII: byte by byte, this
 * loop was 6 % of the ingestor's CPU on the wide-row backlog). */
static size_t utf8_run(const unsigned char *s, size_t i, size_t n)
{
    while (i < n) {
#ifdef __SSE2__
        for (; i + 16 <= n; i += 16) {
            unsigned m = (unsigned)_mm_movemask_epi8(
                _mm_loadu_si128((const __m128i *)(const void *)(s + i)));
            if (m != 0) {
                i += (size_t)__builtin_ctz(m);
                break;
            }
        }
        if (i >= n)
            break;
#endif
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t l = wh_utf8_len(s + i, n - i);
        if (l == 0)
            break;
        i += l;
    }
    return i;
}

int wh_buf_append_utf8(wh_buf *b, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = utf8_run(s, 0, n);
    if (i == n)
        return wh_buf_append(b, s, n);
    size_t len0 = b->len;
    size_t done = 0;
    for (;;) {
        if (wh_buf_append(b, s + done, i - done) != WH_OK)
            break;
        if (i == n)
            return WH_OK;
        if (wh_buf_append(b, "\xEF\xBF\xBD", 3) != WH_OK)
            break;
        __atomic_fetch_add(&utf8_replaced, 1, __ATOMIC_RELAXED);
        done = i + 1;
        i = utf8_run(s, done, n);
    }
    b->len = len0; /* unchanged on failure */
    return WH_ERR;
}

int wh_json_str(wh_buf *b, const char *str, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    /* Worst case 6 bytes per input byte plus quotes; room for the common
     * case (nothing to escape) at once, so that one is two stores and a
     * copy. */
    if (wh_buf_reserve(b, n + 2) != WH_OK)
        return WH_ERR;
    size_t i = plain_run(s, 0, n);
    b->data[b->len] = '"';
    memcpy(b->data + b->len + 1, s, i);
    b->len += 1 + i;
    if (i == n) {
        b->data[b->len++] = '"';
        return WH_OK;
    }
    while (i < n) {
        size_t run = plain_run(s, i, n);
        if (run > i) {
            if (wh_buf_append(b, s + i, run - i) != WH_OK)
                return WH_ERR;
            i = run;
            continue;
        }
        unsigned char c = s[i];
        char esc[8];
        int rc;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            rc = wh_buf_append(b, esc, 2);
            i++;
        } else if (c < 0x20) {
            const char *m = NULL;
            switch (c) {
            case '\n':
                m = "\\n";
                break;
            case '\r':
                m = "\\r";
                break;
            case '\t':
                m = "\\t";
                break;
            case '\b':
                m = "\\b";
                break;
            case '\f':
                m = "\\f";
                break;
            default:
                break;
            }
            if (m != NULL) {
                rc = wh_buf_append(b, m, 2);
            } else {
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
                rc = wh_buf_append(b, esc, 6);
            }
            i++;
        } else {
            size_t l = wh_utf8_len(s + i, n - i);
            if (l == 0) {
                rc = wh_buf_append(b, "\xEF\xBF\xBD", 3);
                __atomic_fetch_add(&utf8_replaced, 1, __ATOMIC_RELAXED);
                i++;
            } else {
                rc = wh_buf_append(b, s + i, l);
                i += l;
            }
        }
        if (rc != WH_OK)
            return WH_ERR;
    }
    return wh_buf_putc(b, '"');
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int wh_base64(wh_buf *b, const void *p, size_t n)
{
    const unsigned char *s = p;
    if (wh_buf_reserve(b, (n + 2) / 3 * 4) != WH_OK)
        return WH_ERR;
    char *o = b->data + b->len;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8) | s[i + 2];
        *o++ = b64[v >> 18];
        *o++ = b64[(v >> 12) & 63];
        *o++ = b64[(v >> 6) & 63];
        *o++ = b64[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)s[i + 1] << 8;
        *o++ = b64[v >> 18];
        *o++ = b64[(v >> 12) & 63];
        *o++ = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    b->len = (size_t)(o - b->data);
    return WH_OK;
}

int wh_base64_decode(wh_buf *b, const char *s, size_t n)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t start = b->len;
    size_t pad = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '=') {
            pad++;
            continue;
        }
        if (pad > 0)
            goto bad;
        const char *q = c ? strchr(b64, c) : NULL;
        if (q == NULL)
            goto bad;
        acc = (acc << 6) | (uint32_t)(q - b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (wh_buf_putc(b, (char)((acc >> bits) & 0xFF)) != WH_OK)
                goto bad;
        }
    }
    if (pad > 2 || (n % 4 != 0 && pad > 0))
        goto bad;
    return WH_OK;
bad:
    b->len = start;
    return WH_ERR;
}
