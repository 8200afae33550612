/* wh_json: a small strict JSON parser building a DOM (see wh_json.h).
 * Recursive descent with an explicit depth bound, so no input can exhaust the
 * stack; every read is bounds-checked against len. */
#include "wh_json.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wh_buf.h"
#include "wh_util.h"

#define WH_JSON_MAX_DEPTH 256
#define WH_JSON_MAX_BYTES ((size_t)1 << 30) /* 1 GiB */

typedef struct {
    const char *s;
    size_t len;
    size_t pos;
    int depth;
    char *err;
    size_t errlen;
} jparser;

static int jfail(jparser *p, const char *reason)
{
    return wh_seterr(p->err, p->errlen, "offset %zu: %s", p->pos, reason);
}

static void skip_ws(jparser *p)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
            p->pos++;
        else
            break;
    }
}

static wh_json *node_new(wh_json_type t)
{
    wh_json *j = calloc(1, sizeof(*j));
    if (j)
        j->type = t;
    return j;
}

void wh_json_free(wh_json *j)
{
    while (j) {
        wh_json *next = j->next;
        wh_json_free(j->child); /* depth bounded by the parser */
        free(j->key);
        free(j->str);
        free(j);
        j = next;
    }
}

static int parse_value(jparser *p, wh_json **out);

static int match_lit(jparser *p, const char *lit)
{
    size_t n = strlen(lit);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, lit, n) != 0)
        return 0;
    p->pos += n;
    return 1;
}

static int read_hex4(jparser *p, unsigned *out)
{
    if (p->len - p->pos < 4)
        return jfail(p, "truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = wh_hexval(p->s[p->pos + i]);
        if (h < 0)
            return jfail(p, "bad hex digit in \\u escape");
        v = (v << 4) | (unsigned)h;
    }
    p->pos += 4;
    *out = v;
    return WH_OK;
}

static size_t put_utf8(char *d, unsigned cp)
{
    if (cp < 0x80) {
        d[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        d[0] = (char)(0xC0 | (cp >> 6));
        d[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (char)(0xE0 | (cp >> 12));
        d[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        d[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    d[0] = (char)(0xF0 | (cp >> 18));
    d[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    d[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    d[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Parses a string starting at the opening quote; returns a malloc'd decoded
 * copy. The decoded form is never longer than the encoded one. */
static int parse_string(jparser *p, char **out, size_t *outlen)
{
    p->pos++; /* opening quote */
    size_t start = p->pos;
    /* first pass: find the end, to size the buffer */
    size_t i = start;
    while (i < p->len && p->s[i] != '"') {
        if (p->s[i] == '\\')
            i++;
        i++;
    }
    if (i >= p->len)
        return jfail(p, "unterminated string");
    char *d = malloc(i - start + 1);
    if (!d)
        return jfail(p, "out of memory");
    size_t n = 0;
    while (p->pos < p->len) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->pos++;
            d[n] = '\0';
            *out = d;
            *outlen = n;
            return WH_OK;
        }
        if (c < 0x20) {
            free(d);
            return jfail(p, "control character in string");
        }
        if (c == '\\') {
            p->pos++;
            if (p->pos >= p->len)
                break;
            char e = p->s[p->pos++];
            switch (e) {
            case '"':
                d[n++] = '"';
                break;
            case '\\':
                d[n++] = '\\';
                break;
            case '/':
                d[n++] = '/';
                break;
            case 'b':
                d[n++] = '\b';
                break;
            case 'f':
                d[n++] = '\f';
                break;
            case 'n':
                d[n++] = '\n';
                break;
            case 'r':
                d[n++] = '\r';
                break;
            case 't':
                d[n++] = '\t';
                break;
            case 'u': {
                unsigned cp;
                if (read_hex4(p, &cp) != WH_OK) {
                    free(d);
                    return WH_ERR;
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned lo;
                    if (p->len - p->pos >= 6 && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u') {
                        size_t save = p->pos;
                        p->pos += 2;
                        if (read_hex4(p, &lo) != WH_OK) {
                            free(d);
                            return WH_ERR;
                        }
                        if (lo >= 0xDC00 && lo <= 0xDFFF) {
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        } else {
                            p->pos = save; /* not a pair: lone high surrogate */
                            cp = 0xFFFD;
                        }
                    } else {
                        cp = 0xFFFD;
                    }
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    cp = 0xFFFD;
                }
                /* "\uXXXX" is 6 bytes; its UTF-8 is at most 4 (a pair: 12 -> 4) */
                n += put_utf8(d + n, cp);
                break;
            }
            default:
                p->pos--;
                free(d);
                return jfail(p, "bad escape in string");
            }
            continue;
        }
        size_t k = wh_utf8_len((const unsigned char *)p->s + p->pos, p->len - p->pos);
        if (k == 0) {
            free(d);
            return jfail(p, "invalid UTF-8 in string");
        }
        memcpy(d + n, p->s + p->pos, k);
        n += k;
        p->pos += k;
    }
    free(d);
    return jfail(p, "unterminated string");
}

size_t wh_json_number_len(const char *s, size_t len, const char **why, size_t *err_at)
{
    size_t i = 0;
    const char *w = "bad number";
    if (i < len && s[i] == '-')
        i++;
    if (i >= len)
        goto bad_start;
    if (s[i] == '0') {
        i++;
    } else if (s[i] >= '1' && s[i] <= '9') {
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
    } else {
        goto bad_start;
    }
    if (i < len && s[i] == '.') {
        i++;
        if (i >= len || s[i] < '0' || s[i] > '9') {
            w = "digit expected after decimal point";
            goto bad;
        }
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= len || s[i] < '0' || s[i] > '9') {
            w = "digit expected in exponent";
            goto bad;
        }
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    return i;
bad_start:
    i = 0;
bad:
    if (why != NULL)
        *why = w;
    if (err_at != NULL)
        *err_at = i;
    return 0;
}

static int parse_number(jparser *p, wh_json *j)
{
    size_t start = p->pos, at = 0;
    const char *why = NULL;
    const char *s = p->s;
    size_t n = wh_json_number_len(s + start, p->len - start, &why, &at);
    if (n == 0) {
        p->pos = start + at;
        return jfail(p, why);
    }
    j->str = malloc(n + 1);
    if (!j->str)
        return jfail(p, "out of memory");
    memcpy(j->str, s + start, n);
    j->str[n] = '\0';
    j->len = n;
    errno = 0;
    j->num = strtod(j->str, NULL); /* overflow gives +-HUGE_VAL: acceptable */
    p->pos = start + n;
    return WH_OK;
}

static int parse_container(jparser *p, wh_json *j, int is_object)
{
    char close = is_object ? '}' : ']';
    if (++p->depth > WH_JSON_MAX_DEPTH)
        return jfail(p, "nesting too deep");
    p->pos++; /* [ or { */
    skip_ws(p);
    wh_json **tail = &j->child;
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        p->depth--;
        return WH_OK;
    }
    for (;;) {
        char *key = NULL;
        size_t keylen = 0;
        skip_ws(p);
        if (is_object) {
            if (p->pos >= p->len || p->s[p->pos] != '"')
                return jfail(p, "member name expected");
            if (parse_string(p, &key, &keylen) != WH_OK)
                return WH_ERR;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') {
                free(key);
                return jfail(p, "':' expected");
            }
            p->pos++;
        }
        wh_json *child = NULL;
        if (parse_value(p, &child) != WH_OK) {
            free(key);
            return WH_ERR;
        }
        child->key = key;
        *tail = child;
        tail = &child->next;
        j->count++;
        skip_ws(p);
        if (p->pos >= p->len)
            return jfail(p, is_object ? "unterminated object" : "unterminated array");
        char c = p->s[p->pos];
        if (c == ',') {
            p->pos++;
            continue;
        }
        if (c == close) {
            p->pos++;
            p->depth--;
            return WH_OK;
        }
        return jfail(p, is_object ? "',' or '}' expected" : "',' or ']' expected");
    }
}

static int parse_value(jparser *p, wh_json **out)
{
    skip_ws(p);
    if (p->pos >= p->len)
        return jfail(p, "value expected");
    char c = p->s[p->pos];
    wh_json *j;
    int rc = WH_OK;
    switch (c) {
    case '{':
    case '[':
        j = node_new(c == '{' ? WH_JSON_OBJECT : WH_JSON_ARRAY);
        if (!j)
            return jfail(p, "out of memory");
        rc = parse_container(p, j, c == '{');
        break;
    case '"':
        j = node_new(WH_JSON_STRING);
        if (!j)
            return jfail(p, "out of memory");
        rc = parse_string(p, &j->str, &j->len);
        break;
    case 't':
    case 'f':
    case 'n':
        j = node_new(c == 'n' ? WH_JSON_NULL : WH_JSON_BOOL);
        if (!j)
            return jfail(p, "out of memory");
        if (match_lit(p, "true"))
            j->boolean = 1;
        else if (match_lit(p, "false"))
            j->boolean = 0;
        else if (!match_lit(p, "null"))
            rc = jfail(p, "unknown literal");
        if (rc == WH_OK && (j->type == WH_JSON_NULL) != (c == 'n'))
            rc = jfail(p, "unknown literal");
        break;
    default:
        if (c != '-' && (c < '0' || c > '9'))
            return jfail(p, "unexpected character");
        j = node_new(WH_JSON_NUMBER);
        if (!j)
            return jfail(p, "out of memory");
        rc = parse_number(p, j);
        break;
    }
    if (rc != WH_OK) {
        wh_json_free(j);
        return WH_ERR;
    }
    *out = j;
    return WH_OK;
}

int wh_json_parse(const char *text, size_t len, wh_json **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!text && len > 0)
        return wh_seterr(err, errlen, "offset 0: no input");
    if (len > WH_JSON_MAX_BYTES)
        return wh_seterr(err, errlen, "offset 0: document larger than %zu bytes",
                         (size_t)WH_JSON_MAX_BYTES);
    jparser p = {
        .s = text ? text : "", .len = len, .pos = 0, .depth = 0, .err = err, .errlen = errlen};
    wh_json *j = NULL;
    if (parse_value(&p, &j) != WH_OK)
        return WH_ERR;
    skip_ws(&p);
    if (p.pos != p.len) {
        wh_json_free(j);
        return jfail(&p, "trailing characters after value");
    }
    *out = j;
    return WH_OK;
}

const wh_json *wh_json_get(const wh_json *obj, const char *key)
{
    if (!obj || obj->type != WH_JSON_OBJECT || !key)
        return NULL;
    for (const wh_json *c = obj->child; c; c = c->next)
        if (c->key && strcmp(c->key, key) == 0)
            return c;
    return NULL;
}

const wh_json *wh_json_at(const wh_json *arr, size_t idx)
{
    if (!arr || arr->type != WH_JSON_ARRAY)
        return NULL;
    const wh_json *c = arr->child;
    while (c && idx > 0) {
        c = c->next;
        idx--;
    }
    return c;
}

static int render(wh_buf *b, const wh_json *j, int depth)
{
    if (j == NULL)
        return wh_buf_puts(b, "null");
    if (depth > WH_JSON_MAX_DEPTH)
        return WH_ERR;
    switch (j->type) {
    case WH_JSON_NULL:
        return wh_buf_puts(b, "null");
    case WH_JSON_BOOL:
        return wh_buf_puts(b, j->boolean ? "true" : "false");
    case WH_JSON_NUMBER:
        return wh_buf_puts(b, j->str ? j->str : "0");
    case WH_JSON_STRING:
        return wh_json_str(b, j->str ? j->str : "", j->len);
    case WH_JSON_ARRAY:
    case WH_JSON_OBJECT:
        break;
    }
    int obj = j->type == WH_JSON_OBJECT;
    if (wh_buf_putc(b, obj ? '{' : '[') != WH_OK)
        return WH_ERR;
    for (const wh_json *c = j->child; c; c = c->next) {
        if (c != j->child && wh_buf_putc(b, ',') != WH_OK)
            return WH_ERR;
        if (obj) {
            const char *k = c->key ? c->key : "";
            if (wh_json_str(b, k, strlen(k)) != WH_OK || wh_buf_putc(b, ':') != WH_OK)
                return WH_ERR;
        }
        if (render(b, c, depth + 1) != WH_OK)
            return WH_ERR;
    }
    return wh_buf_putc(b, obj ? '}' : ']');
}

int wh_json_render(wh_buf *b, const wh_json *j)
{
    return render(b, j, 0);
}

/* ---- zero-allocation spans (wh_json_span_*) ---- */

static inline size_t span_ws(const char *s, size_t len, size_t i)
{
    if (i < len && (unsigned char)s[i] > ' ') /* the common case: no whitespace */
        return i;
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

#define span_str_end wh_json_span_str_end

/* Bytes that matter when skipping over a container: quotes and brackets. */
static const unsigned char span_special[256] = {
    ['"'] = 1, ['{'] = 1, ['['] = 1, ['}'] = 1, [']'] = 1,
};

/* Scans one value at s[i..len) with at most maxdepth nested brackets: fills
 * *out, returns the index after it or 0. */
static size_t span_scan_d(const char *s, size_t len, size_t i, wh_json_span *out, size_t maxdepth)
{
    i = span_ws(s, len, i);
    if (i >= len)
        return 0;
    size_t start = i, end = 0;
    char c = s[i];
    if (c == '"') {
        out->type = WH_JSON_STRING;
        end = span_str_end(s, len, i);
    } else if (c == '{' || c == '[') {
        out->type = c == '{' ? WH_JSON_OBJECT : WH_JSON_ARRAY;
        /* brackets are counted; strings skipped; no recursion */
        char stack[WH_JSON_SPAN_DEPTH];
        if (maxdepth > sizeof(stack))
            maxdepth = sizeof(stack);
        size_t depth = 0;
        while (i < len) {
            char ch = s[i];
            if (!span_special[(unsigned char)ch]) { /* most bytes: one load */
                i++;
                continue;
            }
            if (ch == '"') {
                size_t e = span_str_end(s, len, i);
                if (e == 0)
                    return 0;
                i = e;
                continue;
            }
            if (ch == '{' || ch == '[') {
                if (depth >= maxdepth)
                    return 0;
                stack[depth++] = ch == '{' ? '}' : ']';
            } else if (ch == '}' || ch == ']') {
                if (depth == 0 || stack[depth - 1] != ch)
                    return 0;
                if (--depth == 0) {
                    end = i + 1;
                    break;
                }
            }
            i++;
        }
    } else if (c == 't' && len - i >= 4 && memcmp(s + i, "true", 4) == 0) {
        out->type = WH_JSON_BOOL;
        end = i + 4;
    } else if (c == 'f' && len - i >= 5 && memcmp(s + i, "false", 5) == 0) {
        out->type = WH_JSON_BOOL;
        end = i + 5;
    } else if (c == 'n' && len - i >= 4 && memcmp(s + i, "null", 4) == 0) {
        out->type = WH_JSON_NULL;
        end = i + 4;
    } else {
        size_t n = wh_json_number_len(s + i, len - i, NULL, NULL);
        out->type = WH_JSON_NUMBER;
        end = n ? i + n : 0;
    }
    if (end == 0)
        return 0;
    out->p = s + start;
    out->len = end - start;
    return end;
}

static size_t span_scan(const char *s, size_t len, size_t i, wh_json_span *out)
{
    return span_scan_d(s, len, i, out, WH_JSON_SPAN_DEPTH);
}

size_t wh_json_span_at(const char *text, size_t len, size_t i, wh_json_span *out, size_t maxdepth)
{
    return span_scan_d(text, len, i, out, maxdepth);
}

int wh_json_span_value(const char *text, size_t len, wh_json_span *out)
{
    if (text == NULL)
        return WH_ERR;
    return span_scan(text, len, 0, out) ? WH_OK : WH_ERR;
}

int wh_json_span_next(const wh_json_span *c, size_t *pos, wh_json_span *key, wh_json_span *val)
{
    if (c->type != WH_JSON_OBJECT && c->type != WH_JSON_ARRAY)
        return -1;
    const char *s = c->p;
    size_t len = c->len, i = *pos;
    char close = c->type == WH_JSON_OBJECT ? '}' : ']';
    i = span_ws(s, len, i == 0 ? 1 : i);
    if (i >= len)
        return -1;
    if (s[i] == close)
        return 0;
    if (*pos != 0) {
        if (s[i] != ',')
            return -1;
        i++;
    }
    if (c->type == WH_JSON_OBJECT) {
        wh_json_span k;
        i = span_ws(s, len, i);
        if (i < len && s[i] == '"') { /* the key: span_scan's string case, inline */
            size_t e = span_str_end(s, len, i);
            if (e == 0)
                return -1;
            k.p = s + i;
            k.len = e - i;
            k.type = WH_JSON_STRING;
            i = e;
        } else {
            return -1; /* span_scan: not a string (or nothing) */
        }
        i = span_ws(s, len, i);
        if (i >= len || s[i] != ':')
            return -1;
        i++;
        if (key)
            *key = k;
    }
    i = span_ws(s, len, i);
    if (i < len && s[i] == '"') { /* a string value: span_scan's case, inline */
        size_t e = span_str_end(s, len, i);
        if (e == 0)
            return -1;
        val->p = s + i;
        val->len = e - i;
        val->type = WH_JSON_STRING;
        i = e;
    } else {
        i = span_scan(s, len, i, val);
    }
    if (i == 0 || i >= len)
        return -1;
    *pos = i;
    return 1;
}

int wh_json_span_get(const wh_json_span *obj, const char *key, size_t keylen, wh_json_span *out)
{
    if (obj->type != WH_JSON_OBJECT)
        return WH_ERR;
    size_t pos = 0;
    wh_json_span k, v;
    int r;
    while ((r = wh_json_span_next(obj, &pos, &k, &v)) == 1) {
        if (wh_json_span_strcmp(&k, key, keylen) == 0) {
            *out = v;
            return WH_OK;
        }
    }
    return WH_ERR;
}

/* Decodes the next character of a string span's body: bytes into d (up to
 * 4), returns how many, 0 at the closing quote, -1 on a bad escape. */
static int span_str_step(const char *s, size_t end, size_t *i, char *d)
{
    if (*i >= end)
        return -1;
    char c = s[*i];
    if (c == '"')
        return 0;
    if (c != '\\') {
        d[0] = c;
        (*i)++;
        return 1;
    }
    if (*i + 1 >= end)
        return -1;
    char e = s[*i + 1];
    *i += 2;
    switch (e) {
    case '"':
    case '\\':
    case '/':
        d[0] = e;
        return 1;
    case 'b':
        d[0] = '\b';
        return 1;
    case 'f':
        d[0] = '\f';
        return 1;
    case 'n':
        d[0] = '\n';
        return 1;
    case 'r':
        d[0] = '\r';
        return 1;
    case 't':
        d[0] = '\t';
        return 1;
    case 'u': {
        unsigned cp = 0;
        for (int k = 0; k < 2; k++) {
            if (end - *i < 4)
                return -1;
            unsigned v = 0;
            for (int j = 0; j < 4; j++) {
                int h = wh_hexval(s[*i + (size_t)j]);
                if (h < 0)
                    return -1;
                v = (v << 4) | (unsigned)h;
            }
            *i += 4;
            if (k == 0) {
                cp = v;
                if (v < 0xD800 || v > 0xDBFF)
                    break;
                if (end - *i < 2 || s[*i] != '\\' || s[*i + 1] != 'u')
                    return -1;
                *i += 2;
            } else {
                if (v < 0xDC00 || v > 0xDFFF)
                    return -1;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (v - 0xDC00);
            }
        }
        if (cp >= 0xDC00 && cp <= 0xDFFF)
            return -1;
        return (int)put_utf8(d, cp);
    }
    default:
        return -1;
    }
}

int wh_json_span_str(const wh_json_span *s, char *out, size_t cap, size_t *outlen)
{
    if (s->type != WH_JSON_STRING || s->len < 2 || cap == 0)
        return WH_ERR;
    if (s->p[s->len - 1] == '"') {
        /* no escape and no inner quote (the common case): the bytes are the
         * string */
        const char *raw = s->p + 1;
        size_t rn = s->len - 2, j = 0;
        while (j < rn && raw[j] != '\\' && raw[j] != '"')
            j++;
        if (j == rn) {
            if (outlen)
                *outlen = rn;
            if (rn >= cap) {
                out[0] = '\0';
                return WH_ERR;
            }
            memcpy(out, raw, rn);
            out[rn] = '\0';
            return WH_OK;
        }
    }
    size_t i = 1, n = 0;
    char d[4];
    int k;
    int fits = 1;
    while ((k = span_str_step(s->p, s->len, &i, d)) > 0) {
        if (n + (size_t)k < cap)
            memcpy(out + n, d, (size_t)k);
        else
            fits = 0;
        n += (size_t)k;
    }
    out[fits ? n : 0] = '\0';
    if (outlen)
        *outlen = n;
    return k == 0 && fits ? WH_OK : WH_ERR;
}

int wh_json_span_strcmp(const wh_json_span *s, const char *lit, size_t n)
{
    if (s->type != WH_JSON_STRING || s->len < 2)
        return 2;
    size_t raw = s->len - 2;
    if (memchr(s->p + 1, '\\', raw) == NULL) {
        /* no escape: the bytes are the string (the hot path of member
         * lookups) */
        int c = memcmp(s->p + 1, lit, raw < n ? raw : n);
        if (c != 0)
            return c < 0 ? -1 : 1;
        return raw < n ? -1 : raw > n ? 1 : 0;
    }
    size_t i = 1, j = 0;
    char d[4];
    int k;
    while ((k = span_str_step(s->p, s->len, &i, d)) > 0) {
        for (int m = 0; m < k; m++, j++) {
            if (j >= n)
                return 1;
            unsigned char a = (unsigned char)d[m], b = (unsigned char)lit[j];
            if (a != b)
                return a < b ? -1 : 1;
        }
    }
    if (k < 0)
        return 2;
    return j < n ? -1 : 0;
}

int wh_json_span_strcmp_span(const wh_json_span *a, const wh_json_span *b)
{
    if (a->type != WH_JSON_STRING || a->len < 2 || b->type != WH_JSON_STRING || b->len < 2)
        return 2;
    size_t ra = a->len - 2, rb = b->len - 2;
    if (memchr(a->p + 1, '\\', ra) == NULL && memchr(b->p + 1, '\\', rb) == NULL) {
        int c = memcmp(a->p + 1, b->p + 1, ra < rb ? ra : rb);
        if (c != 0)
            return c < 0 ? -1 : 1;
        return ra < rb ? -1 : ra > rb ? 1 : 0;
    }
    /* escapes decoded a character at a time on both sides, in lockstep:
     * no buffer, no limit */
    size_t i = 1, j = 1;
    char da[4], db[4];
    int na = 0, nb = 0, ka = 0, kb = 0; /* decoded bytes, and those consumed */
    for (;;) {
        if (ka == na) {
            na = span_str_step(a->p, a->len, &i, da);
            ka = 0;
            if (na < 0)
                return 2;
        }
        if (kb == nb) {
            nb = span_str_step(b->p, b->len, &j, db);
            kb = 0;
            if (nb < 0)
                return 2;
        }
        if (na == 0 || nb == 0) /* an end: the shorter string is smaller */
            return na == 0 && nb == 0 ? 0 : na == 0 ? -1 : 1;
        unsigned char x = (unsigned char)da[ka++], y = (unsigned char)db[kb++];
        if (x != y)
            return x < y ? -1 : 1;
    }
}

int wh_json_span_num(const wh_json_span *s, double *out)
{
    const char *p = s->p;
    size_t len = s->len;
    if (s->type == WH_JSON_STRING) {
        if (len < 3)
            return WH_ERR;
        p++;
        len -= 2;
    } else if (s->type != WH_JSON_NUMBER) {
        return WH_ERR;
    }
    {
        /* one pass for [-]int[.frac] of at most 15 digits (what the grammar
         * check and the exact path below decide, together); anything else
         * goes the long way */
        size_t i = 0;
        int neg = 0, digs = 0, frac = 0;
        uint64_t m = 0;
        if (p[0] == '-') {
            neg = 1;
            i = 1;
        }
        if (i < len && p[i] >= '0' && p[i] <= '9' && len < 64) {
            if (p[i] == '0') {
                i++;
                digs = 1;
            } else {
                for (; i < len && p[i] >= '0' && p[i] <= '9'; i++, digs++)
                    m = m * 10 + (uint64_t)(p[i] - '0');
            }
            if (i + 1 < len && p[i] == '.' && p[i + 1] >= '0' && p[i + 1] <= '9') {
                for (i++; i < len && p[i] >= '0' && p[i] <= '9'; i++, digs++, frac++)
                    m = m * 10 + (uint64_t)(p[i] - '0');
            }
            if (i == len && digs <= 15) {
                static const double p10[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                             1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
                double v = (double)m / p10[frac];
                *out = neg ? -v : v;
                return WH_OK;
            }
        }
    }
    if (len >= 64 || wh_json_number_len(p, len, NULL, NULL) != len)
        return WH_ERR;
    /* exact fast path (Clinger): at most 15 digits and no exponent; the
     * integer mantissa and the power of ten are exact doubles, so one IEEE
     * division rounds like strtod */
    {
        static const double pow10[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
        size_t i = 0;
        int neg = 0, digs = 0, frac = -1;
        uint64_t m = 0;
        if (p[0] == '-') {
            neg = 1;
            i = 1;
        }
        for (; i < len; i++) {
            char c = p[i];
            if (c >= '0' && c <= '9') {
                m = m * 10 + (uint64_t)(c - '0');
                digs++;
                if (frac >= 0)
                    frac++;
            } else if (c == '.' && frac < 0) {
                frac = 0;
            } else {
                break;
            }
        }
        if (i == len && digs <= 15) {
            double v = (double)m / pow10[frac > 0 ? frac : 0];
            *out = neg ? -v : v;
            return WH_OK;
        }
    }
    char tmp[64];
    memcpy(tmp, p, len);
    tmp[len] = '\0';
    *out = strtod(tmp, NULL);
    return WH_OK;
}

int wh_json_span_hasprefix(const wh_json_span *s, const char *lit, size_t n)
{
    if (s->type != WH_JSON_STRING || s->len < 2)
        return 0;
    size_t i = 1, j = 0;
    char d[4];
    int k;
    while (j < n && (k = span_str_step(s->p, s->len, &i, d)) > 0) {
        for (int m = 0; m < k && j < n; m++, j++)
            if (d[m] != lit[j])
                return 0;
    }
    return j == n;
}
