/* wh_json: a small JSON parser (DOM) for REST bodies, tests and tools.
 * Depth- and size-bounded; never crashes on input; errors name the offset. */
#ifndef WH_JSON_H
#define WH_JSON_H

#include <endian.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

typedef enum {
    WH_JSON_NULL,
    WH_JSON_BOOL,
    WH_JSON_NUMBER,
    WH_JSON_STRING,
    WH_JSON_ARRAY,
    WH_JSON_OBJECT
} wh_json_type;

typedef struct wh_json wh_json;
struct wh_json {
    wh_json_type type;
    char *key;      /* member name when the parent is an object */
    char *str;      /* STRING: decoded UTF-8, NUL-terminated; NUMBER: its text */
    size_t len;     /* STRING: byte length of str */
    double num;     /* NUMBER */
    int boolean;    /* BOOL */
    wh_json *child; /* ARRAY/OBJECT: first element */
    wh_json *next;  /* next sibling */
    size_t count;   /* ARRAY/OBJECT: number of children */
};

/* Parses text[0..len). On error returns WH_ERR with "offset N: reason". */
int wh_json_parse(const char *text, size_t len, wh_json **out, char *err, size_t errlen);
void wh_json_free(wh_json *j);
/* Object member lookup (first match) or NULL. */
const wh_json *wh_json_get(const wh_json *obj, const char *key);
/* Array element or NULL. */
const wh_json *wh_json_at(const wh_json *arr, size_t idx);

/* Length of the JSON number (RFC 8259 grammar) at the start of s[0..len),
 * or 0 when there is none; then *why (if not NULL) says what was wrong and
 * *err_at (if not NULL) where. */
size_t wh_json_number_len(const char *s, size_t len, const char **why, size_t *err_at);

/* Zero-allocation access to JSON text (the dispatcher's per-event path):
 * a span is a value's bytes inside the caller's text, never copied. The
 * scanner checks structure only as far as it walks (brackets, strings,
 * literals); it never reads past len and never recurses. */
typedef struct wh_json_span {
    const char *p; /* first byte of the value (a string span includes its quotes) */
    size_t len;
    wh_json_type type;
} wh_json_span;

/* The whole value at the start of text[0..len) (leading whitespace skipped).
 * WH_ERR when it is not a well-bracketed JSON value. */
int wh_json_span_value(const char *text, size_t len, wh_json_span *out);
/* Member key (keylen bytes, compared with escapes decoded) of the object
 * span obj; WH_ERR when obj is not an object, malformed, or has no such key. */
int wh_json_span_get(const wh_json_span *obj, const char *key, size_t keylen, wh_json_span *out);
/* Walks an object's members or an array's elements: *pos starts at 0; each
 * call fills *key (objects only; may be NULL) and *val; returns 1 for a
 * member, 0 at the end, -1 when malformed. */
int wh_json_span_next(const wh_json_span *container, size_t *pos, wh_json_span *key,
                      wh_json_span *val);
/* Decodes a string span into out[0..cap) (NUL-terminated); *outlen (may be
 * NULL) gets the full decoded length. WH_ERR when it is not a string, has a
 * bad escape, or does not fit. */
int wh_json_span_str(const wh_json_span *s, char *out, size_t cap, size_t *outlen);
/* Compares a string span, escapes decoded, with lit[0..n): <0, 0, >0 like
 * memcmp, and 2 when s is not a valid string. */
int wh_json_span_strcmp(const wh_json_span *s, const char *lit, size_t n);
/* Compares two string spans, escapes decoded on both sides (of any
 * length, without a buffer): <0, 0, >0, and 2 when one is not a valid
 * string. */
int wh_json_span_strcmp_span(const wh_json_span *a, const wh_json_span *b);
/* 1 when the string span, escapes decoded, starts with lit[0..n); else 0. */
int wh_json_span_hasprefix(const wh_json_span *s, const char *lit, size_t n);
/* The number of a NUMBER span (or of a STRING span holding exactly a JSON
 * number, e.g. PostgreSQL numeric); WH_ERR otherwise. */
int wh_json_span_num(const wh_json_span *s, double *out);

/* Lower-level pieces of the span walker, for callers that walk an object's
 * members themselves (the dispatcher's event index): wh_json_span_next is
 * built from exactly these.
 * wh_json_span_at: scans the value at text[i..len) (leading whitespace
 * skipped) into *out with at most maxdepth nested brackets (the span
 * functions allow WH_JSON_SPAN_DEPTH); returns the index after it, or 0
 * when it is not a well-bracketed value. */
#define WH_JSON_SPAN_DEPTH 256
size_t wh_json_span_at(const char *text, size_t len, size_t i, wh_json_span *out, size_t maxdepth);
/* End (one past the closing quote) of the string starting at s[i] == '"',
 * or 0 when it is unterminated before len (inline: the span walkers'
 * innermost loop). */
static inline __attribute__((always_inline)) size_t wh_json_span_str_end(const char *s, size_t len,
                                                                         size_t i)
{
    const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
    i++;
#ifdef __SSE2__
    /* 16 bytes at once: the first '"' or '\\' of the window is exact */
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
    while (i + 16 <= len) {
        __m128i w = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        unsigned m = (unsigned)_mm_movemask_epi8(
            _mm_or_si128(_mm_cmpeq_epi8(w, quote), _mm_cmpeq_epi8(w, bslash)));
        if (m == 0) {
            i += 16;
            continue;
        }
        i += (size_t)__builtin_ctz(m);
        if (s[i] == '"')
            return i + 1;
        i += 2; /* an escape (i may pass len: the loops below end then) */
    }
#endif
    while (i < len) {
        if (len - i >= 8) {
            /* 8 bytes at once: a zero-byte test on w ^ '"' and w ^ '\\'
             * (little-endian load: the lowest flagged byte is exact, higher
             * ones may be false, so only the lowest is used) */
            uint64_t w, q, b, m;
            memcpy(&w, s + i, 8);
            w = le64toh(w);
            q = w ^ (ones * '"');
            b = w ^ (ones * '\\');
            m = (((q - ones) & ~q) | ((b - ones) & ~b)) & highs;
            if (m == 0) {
                i += 8;
                continue;
            }
            i += (size_t)__builtin_ctzll(m) >> 3;
        }
        char c = s[i];
        if (c == '"')
            return i + 1;
        i += c == '\\' ? 2 : 1;
    }
    return 0;
}

/* Appends j as compact JSON (NULL renders as null). Depth-bounded. */
struct wh_buf;
int wh_json_render(struct wh_buf *b, const wh_json *j);

#endif
