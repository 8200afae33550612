/* wh_buf: a growable byte buffer with a maximum size, plus JSON and base64
 * writers that append to it. Appends fail (WH_ERR, buffer unchanged) past
 * max, and on allocation failure. */
#ifndef WH_BUF_H
#define WH_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct wh_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max; /* 0 = unlimited */
} wh_buf;

void wh_buf_init(wh_buf *b, size_t max);
void wh_buf_free(wh_buf *b);
void wh_buf_reset(wh_buf *b); /* len = 0, keeps memory */
int wh_buf_reserve(wh_buf *b, size_t extra);
/* wh_buf_append when it has to grow the buffer (the inline functions below
 * take the common case themselves: the renderers call them per token) */
int wh_buf_append_grow(wh_buf *b, const void *p, size_t n);

static inline int wh_buf_append(wh_buf *b, const void *p, size_t n)
{
    if (n < b->cap - b->len) { /* fits with room for a NUL (cap > len always) */
        memcpy(b->data + b->len, p, n);
        b->len += n;
        return 0;
    }
    return wh_buf_append_grow(b, p, n);
}

static inline int wh_buf_putc(wh_buf *b, char c)
{
    if (b->len + 1 < b->cap) {
        b->data[b->len++] = c;
        return 0;
    }
    return wh_buf_append_grow(b, &c, 1);
}
int wh_buf_puts(wh_buf *b, const char *s);
int wh_buf_printf(wh_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Ensures data is NUL-terminated (not counted in len). */
int wh_buf_cstr(wh_buf *b);

/* Length of the valid UTF-8 sequence at s[0..n) (no overlongs, no
 * surrogates, at most U+10FFFF), or 0 if invalid. n must be > 0. */
size_t wh_utf8_len(const unsigned char *s, size_t n);

/* Appends s[0..n) as it is, but each byte that does not start a valid UTF-8
 * sequence as U+FFFD (JSON text from a SQL_ASCII database, say). */
int wh_buf_append_utf8(wh_buf *b, const char *s, size_t n);
/* The bytes wh_json_str and wh_buf_append_utf8 replaced by U+FFFD in this
 * process (invalid UTF-8). */
uint64_t wh_utf8_replaced(void);

/* Appends s[0..n) as a quoted JSON string with escapes; invalid UTF-8 bytes
 * are replaced by U+FFFD. */
int wh_json_str(wh_buf *b, const char *s, size_t n);
/* Appends standard base64 (with padding) of p[0..n). */
int wh_base64(wh_buf *b, const void *p, size_t n);
/* Decodes standard base64; returns WH_OK/WH_ERR. */
int wh_base64_decode(wh_buf *b, const char *s, size_t n);

#endif
