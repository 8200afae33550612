/* ing_values: text-format column values to JSON. */
#include "ing_values.h"
#include "wh_json.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wh_util.h"

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int ing_is_json_number(const char *s, size_t n)
{
    return n > 0 && wh_json_number_len(s, n, NULL, NULL) == n;
}

/* bytea hex output "\x0a0b..." -> base64 string, decoded in chunks whose
 * size is a multiple of 3 so the concatenated base64 equals the whole. */
static int bytea_json(wh_buf *b, const char *s, size_t n)
{
    if (n < 2 || s[0] != '\\' || s[1] != 'x' || (n - 2) % 2 != 0)
        return ing_value_binary(b, s, n); /* not hex format: keep the text bytes */
    for (size_t i = 2; i < n; i++)
        if (wh_hexval(s[i]) < 0)
            return ing_value_binary(b, s, n);
    if (wh_buf_putc(b, '"'))
        return WH_ERR;
    unsigned char chunk[3072];
    size_t k = 0;
    for (size_t i = 2; i < n; i += 2) {
        chunk[k++] = (unsigned char)(wh_hexval(s[i]) << 4 | wh_hexval(s[i + 1]));
        if (k == sizeof(chunk)) {
            if (wh_base64(b, chunk, k))
                return WH_ERR;
            k = 0;
        }
    }
    if (k && wh_base64(b, chunk, k))
        return WH_ERR;
    return wh_buf_putc(b, '"');
}

/* The index of the space in "Y...Y-MM-DD HH:MM:SS" (a year of 4 to 9
 * digits: PostgreSQL's ISO DateStyle), or 0 when s does not start so. */
static size_t iso_date_time(const char *s, size_t n)
{
    static const char pat[] = "-dd-dd dd:dd:dd";
    if (n < 19 || !is_digit(s[0]) || !is_digit(s[1]) || !is_digit(s[2]) || !is_digit(s[3]))
        return 0;
    size_t y = 4;
    while (y < n && y < 10 && is_digit(s[y]))
        y++;
    if (y > 9 || n - y < sizeof(pat) - 1)
        return 0;
    const char *p = s + y;
    if (p[0] != '-' || p[3] != '-' || p[6] != ' ' || p[9] != ':' || p[12] != ':')
        return 0;
    if (!is_digit(p[1]) || !is_digit(p[2]) || !is_digit(p[4]) || !is_digit(p[5]) ||
        !is_digit(p[7]) || !is_digit(p[8]) || !is_digit(p[10]) || !is_digit(p[11]) ||
        !is_digit(p[13]) || !is_digit(p[14]))
        return 0;
    return y + 6;
}

/* timestamptz text "2026-11-22 01:02:03.123456+00" -> "...T...Z"; other
 * offsets become "+HH:MM" (seconds in an offset are dropped: a TimeZone=UTC
 * session never has them); " BC" stays at the end; anything else
 * (infinity, -infinity) is kept as its text. */
static int timestamptz_json(wh_buf *b, const char *s, size_t n)
{
    size_t k = iso_date_time(s, n);
    if (k == 0)
        return wh_json_str(b, s, n);
    size_t i = k + 9;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && is_digit(s[i]))
            i++;
    }
    size_t body = i, end = n;
    int bc = n - i >= 3 && memcmp(s + n - 3, " BC", 3) == 0;
    if (bc)
        end = n - 3;
    const char *off = s + i;
    size_t offn = end - i;
    char out[80];
    if (body > 48)
        return wh_json_str(b, s, n);
    memcpy(out, s, body);
    out[k] = 'T';
    size_t o = body;
    if (offn == 3 && (off[0] == '+' || off[0] == '-') && off[1] == '0' && off[2] == '0') {
        out[o++] = 'Z';
    } else if (offn == 3 && (off[0] == '+' || off[0] == '-') && is_digit(off[1]) &&
               is_digit(off[2])) {
        memcpy(out + o, off, 3);
        o += 3;
        memcpy(out + o, ":00", 3);
        o += 3;
    } else if ((offn == 6 || offn == 9) && (off[0] == '+' || off[0] == '-') && off[3] == ':') {
        memcpy(out + o, off, 6);
        o += 6;
    } else {
        return wh_json_str(b, s, n);
    }
    if (bc) {
        memcpy(out + o, " BC", 3);
        o += 3;
    }
    return wh_json_str(b, out, o);
}

/* timestamp text "2026-11-22 01:02:03.5" -> "2026-11-22T01:02:03.5" (and
 * " BC" kept), as to_jsonb writes it. */
static int timestamp_json(wh_buf *b, const char *s, size_t n)
{
    size_t k = iso_date_time(s, n);
    if (k == 0 || n > 64)
        return wh_json_str(b, s, n);
    char out[64];
    memcpy(out, s, n);
    out[k] = 'T';
    return wh_json_str(b, out, n);
}

int ing_value_binary(wh_buf *b, const char *data, size_t len)
{
    if (wh_buf_putc(b, '"') || wh_base64(b, data, len))
        return WH_ERR;
    return wh_buf_putc(b, '"');
}

/* ---- literals of containers ---------------------------------------------- */

/* Status of the literal parsers besides WH_OK and WH_ERR (buffer full or out
 * of memory): the text is not a literal of its type. The caller rolls the
 * buffer back and sends the text as a string. */
#define BAD 1

/* Per nesting level: where an element that needs unescaping is copied. A
 * container at depth d copies its elements into level d and renders them at
 * d + 1, so a level is only grown while no pointer into it is held. */
typedef struct scratch {
    char *p;
    size_t cap;
} scratch;
static __thread scratch g_scratch[ING_VALUE_MAXDEPTH];

static char *scratch_get(int depth, size_t n)
{
    scratch *sc = &g_scratch[depth];
    if (n > sc->cap) {
        size_t cap = sc->cap ? sc->cap : 256;
        while (cap < n) {
            if (cap > SIZE_MAX / 2)
                return NULL;
            cap *= 2;
        }
        char *p = realloc(sc->p, cap);
        if (!p)
            return NULL;
        sc->p = p;
        sc->cap = cap;
    }
    return sc->p;
}

void ing_values_thread_cleanup(void)
{
    for (int i = 0; i < ING_VALUE_MAXDEPTH; i++) {
        free(g_scratch[i].p);
        g_scratch[i].p = NULL;
        g_scratch[i].cap = 0;
    }
}

/* array_isspace / record_in's isspace: the C locale's white space */
static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static inline void skip_space(const char *s, size_t n, size_t *i)
{
    while (*i < n && is_space(s[*i]))
        (*i)++;
}

/* "NULL" in any case */
static inline int is_null_word(const char *s, size_t n)
{
    return n == 4 && (s[0] | 0x20) == 'n' && (s[1] | 0x20) == 'u' && (s[2] | 0x20) == 'l' &&
           (s[3] | 0x20) == 'l';
}

/* wh_buf_putc without the call when there is room (cap never exceeds
 * max + 1: the room is within the limit) */
static inline int put1(wh_buf *b, char c)
{
    if (b->len + 1 < b->cap) {
        b->data[b->len++] = c;
        return WH_OK;
    }
    return wh_buf_putc(b, c);
}

static int render(wh_buf *b, uint32_t oid, const ing_vtype *t, const char *s, size_t n, int depth);

/* One element's text, unescaped: out/outn point into s when nothing needed
 * unescaping, else into the scratch of depth. */
typedef struct span {
    const char *p;
    size_t n;
} span;

/* Copies s[0..n) without its backslash escapes (each backslash takes the
 * next byte literally) and, when quote_dq, with each "" as one " (record
 * fields). trim: drop unescaped trailing white space (an unquoted array
 * element). WH_ERR only when out of memory. */
static int unescape(const char *s, size_t n, int quote_dq, int trim, int depth, span *out)
{
    char *d = scratch_get(depth, n ? n : 1);
    if (!d)
        return WH_ERR;
    size_t o = 0, keep = 0;
    int inq = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\\' && i + 1 < n) {
            d[o++] = s[++i];
            keep = o;
            continue;
        }
        if (quote_dq && c == '"') {
            if (inq && i + 1 < n && s[i + 1] == '"') {
                d[o++] = '"';
                i++;
                keep = o;
            } else {
                inq = !inq;
            }
            continue;
        }
        d[o++] = c;
        if (!trim || inq || !is_space(c))
            keep = o;
    }
    out->p = d;
    out->n = trim ? keep : o;
    return WH_OK;
}

/* A "quoted" item at s[*i] (array element, hstore key or value): up to the
 * next unescaped quote, backslash escapes taken. Advances *i past it. */
static int quoted(const char *s, size_t n, size_t *i, int depth, span *out)
{
    size_t a = *i + 1, j = a;
    int esc = 0;
    while (j < n && s[j] != '"') {
        if (s[j] == '\\') {
            esc = 1;
            j++;
        }
        j++;
    }
    if (j >= n)
        return BAD;
    *i = j + 1;
    if (!esc) {
        out->p = s + a;
        out->n = j - a;
        return WH_OK;
    }
    return unescape(s + a, j - a, 0, 0, depth, out);
}

/* One array element at s[*i] (white space skipped): quoted ("...", with
 * backslash escapes) or unquoted (up to delim or '}'; NULL in any case is
 * SQL NULL). Advances *i past it. */
static int array_elem(const char *s, size_t n, size_t *i, char delim, int depth, span *out,
                      int *isnull)
{
    size_t j = *i;
    int esc = 0;
    *isnull = 0;
    if (s[j] == '"')
        return quoted(s, n, i, depth, out);
    size_t a = j;
    while (j < n && s[j] != delim && s[j] != '}') {
        char c = s[j];
        if (c == '{' || c == '"')
            return BAD;
        if (c == '\\') {
            esc = 1;
            if (++j >= n)
                return BAD;
        }
        j++;
    }
    *i = j;
    if (!esc) {
        size_t e = j;
        while (e > a && is_space(s[e - 1]))
            e--;
        if (e == a)
            return BAD; /* "{1,,2}" */
        *isnull = is_null_word(s + a, e - a);
        out->p = s + a;
        out->n = e - a;
        return WH_OK;
    }
    return unescape(s + a, j - a, 0, 1, depth, out);
}

/* PostgreSQL's MAXDIM */
#define ARRAY_MAXDIM 6

/* Bytes of an unquoted array element whose JSON string is the bytes
 * themselves: printable ASCII but the delimiter ',', braces, quote,
 * backslash and space (an element with any other byte takes the general
 * path). */
static const unsigned char plain_elem[256] = {
    ['!'] = 1, ['#'] = 1,  ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['('] = 1, [')'] = 1,
    ['*'] = 1, ['+'] = 1,  ['-'] = 1, ['.'] = 1, ['/'] = 1, ['0'] = 1,  ['1'] = 1, ['2'] = 1,
    ['3'] = 1, ['4'] = 1,  ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1,  ['9'] = 1, [':'] = 1,
    [';'] = 1, ['<'] = 1,  ['='] = 1, ['>'] = 1, ['?'] = 1, ['@'] = 1,  ['A'] = 1, ['B'] = 1,
    ['C'] = 1, ['D'] = 1,  ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,  ['I'] = 1, ['J'] = 1,
    ['K'] = 1, ['L'] = 1,  ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,  ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1,  ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,  ['Y'] = 1, ['Z'] = 1,
    ['['] = 1, [']'] = 1,  ['^'] = 1, ['_'] = 1, ['`'] = 1, ['a'] = 1,  ['b'] = 1, ['c'] = 1,
    ['d'] = 1, ['e'] = 1,  ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1,  ['j'] = 1, ['k'] = 1,
    ['l'] = 1, ['m'] = 1,  ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1,  ['r'] = 1, ['s'] = 1,
    ['t'] = 1, ['u'] = 1,  ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1,  ['z'] = 1, ['|'] = 1,
    ['~'] = 1, [0x7f] = 1,
};

/* The end of the run of plain_elem bytes from s[i] (16 bytes at a time
 * where SSE2 is: below 0x21 in a signed compare is also every byte from
 * 0x80 on). */
static size_t plain_elem_run(const char *s, size_t i, size_t n)
{
#ifdef __SSE2__
    const __m128i lim = _mm_set1_epi8(0x21), comma = _mm_set1_epi8(','), open = _mm_set1_epi8('{'),
                  close = _mm_set1_epi8('}'), quote = _mm_set1_epi8('"'),
                  bslash = _mm_set1_epi8('\\');
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i x = _mm_or_si128(
            _mm_or_si128(_mm_cmplt_epi8(v, lim), _mm_cmpeq_epi8(v, comma)),
            _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, open), _mm_cmpeq_epi8(v, close)),
                         _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash))));
        unsigned m = (unsigned)_mm_movemask_epi8(x);
        if (m != 0)
            return i + (size_t)__builtin_ctz(m);
    }
#endif
    while (i < n && plain_elem[(unsigned char)s[i]])
        i++;
    return i;
}

static int string_form(uint32_t oid);

/* An array literal: optional "[l:u]..=" decoration (its bounds are not
 * kept: to_jsonb does not keep them either), then nested braces. Elements
 * render as a value of (eoid, et); NULL as null. */
static int array_parse(wh_buf *b, uint32_t eoid, const ing_vtype *et, char delim, const char *s,
                       size_t n, int depth)
{
    if (depth >= ING_VALUE_MAXDEPTH)
        return BAD;
    size_t i = 0;
    skip_space(s, n, &i);
    if (i < n && s[i] == '[') {
        while (i < n && s[i] == '[') {
            i++;
            while (i < n && (is_digit(s[i]) || s[i] == '-' || s[i] == '+' || s[i] == ':'))
                i++;
            if (i >= n || s[i] != ']')
                return BAD;
            i++;
        }
        skip_space(s, n, &i);
        if (i >= n || s[i] != '=')
            return BAD;
        i++;
        skip_space(s, n, &i);
    }
    if (i >= n || s[i] != '{')
        return BAD;
    /* elements whose form is their text as a JSON string (text[], ...):
     * a plain unquoted one is copied between quotes at once */
    int fast = et == NULL && delim == ',' && string_form(eoid);
    enum { OPENED, NEED_ITEM, AFTER_ITEM } st = OPENED;
    int level = 1, leaf = 0;
    i++;
    if (put1(b, '['))
        return WH_ERR;
    while (level > 0) {
        if (i < n && is_space(s[i]))
            skip_space(s, n, &i);
        if (i >= n)
            return BAD;
        char c = s[i];
        if (st == AFTER_ITEM) {
            if (c == delim) {
                if (put1(b, ','))
                    return WH_ERR;
                i++;
                st = NEED_ITEM;
            } else if (c == '}') {
                if (put1(b, ']'))
                    return WH_ERR;
                i++;
                level--;
            } else {
                return BAD;
            }
            continue;
        }
        if (c == '}') {
            if (st == NEED_ITEM)
                return BAD; /* "{1,}" */
            if (put1(b, ']'))
                return WH_ERR;
            i++;
            level--;
            st = AFTER_ITEM;
            continue;
        }
        if (c == '{') {
            if (level >= ARRAY_MAXDIM || (leaf && level >= leaf))
                return BAD;
            if (put1(b, '['))
                return WH_ERR;
            i++;
            level++;
            st = OPENED;
            continue;
        }
        if (leaf == 0)
            leaf = level;
        else if (leaf != level)
            return BAD; /* elements beside sub-arrays */
        st = AFTER_ITEM;
        if (fast) {
            size_t j = plain_elem_run(s, i, n);
            if (j > i && j < n && (s[j] == ',' || s[j] == '}') && !is_null_word(s + i, j - i)) {
                /* "element" and the ',' that follows, if any */
                size_t len = j - i, need = len + 3;
                if (b->len + need >= b->cap && wh_buf_reserve(b, need))
                    return WH_ERR;
                char *o = b->data + b->len;
                o[0] = '"';
                memcpy(o + 1, s + i, len);
                o[len + 1] = '"';
                b->len += len + 2;
                i = j;
                if (s[j] == ',') {
                    b->data[b->len++] = ',';
                    i++;
                    st = NEED_ITEM;
                }
                continue;
            }
        }
        span e;
        int isnull, rc = array_elem(s, n, &i, delim, depth, &e, &isnull);
        if (rc != WH_OK)
            return rc;
        rc = isnull ? wh_buf_append(b, "null", 4) : render(b, eoid, et, e.p, e.n, depth + 1);
        if (rc != WH_OK)
            return rc;
    }
    skip_space(s, n, &i);
    return i == n ? WH_OK : BAD;
}

/* A record literal "(f1,f2,...)" (record_out: a NULL field is empty, a
 * field is quoted when it is empty or has a special character, with " and \
 * doubled inside; record_in also takes \ as an escape anywhere) -> a JSON
 * object of the type's fields, in their order. The literal must have
 * exactly the type's field count. */
static int record_parse(wh_buf *b, const ing_vtype *t, const char *s, size_t n, int depth)
{
    if (depth >= ING_VALUE_MAXDEPTH)
        return BAD;
    size_t i = 0;
    skip_space(s, n, &i);
    if (i >= n || s[i] != '(')
        return BAD;
    i++;
    if (wh_buf_putc(b, '{'))
        return WH_ERR;
    for (int f = 0; f < t->nfields; f++) {
        const ing_vfield *fd = &t->fields[f];
        if (f > 0) {
            if (i >= n || s[i] != ',')
                return BAD;
            i++;
            if (wh_buf_putc(b, ','))
                return WH_ERR;
        }
        if (wh_buf_append(b, fd->member, fd->member_len))
            return WH_ERR;
        if (i >= n)
            return BAD;
        if (s[i] == ',' || s[i] == ')') {
            if (wh_buf_append(b, "null", 4))
                return WH_ERR;
            continue;
        }
        /* the field's extent; whether it is one plain quoted run */
        size_t a = i;
        int inq = 0, esc = 0, quotes = 0;
        while (i < n) {
            char c = s[i];
            if (!inq && (c == ',' || c == ')'))
                break;
            if (c == '\\') {
                esc = 1;
                if (++i >= n)
                    return BAD;
            } else if (c == '"') {
                if (inq && i + 1 < n && s[i + 1] == '"') {
                    esc = 1;
                    i++;
                } else {
                    inq = !inq;
                    quotes++;
                }
            }
            i++;
        }
        if (inq || i >= n)
            return BAD;
        span v;
        if (!esc && quotes == 0) {
            v.p = s + a;
            v.n = i - a;
        } else if (!esc && quotes == 2 && s[a] == '"' && s[i - 1] == '"') {
            v.p = s + a + 1;
            v.n = i - a - 2;
        } else if (unescape(s + a, i - a, 1, 0, depth, &v) != WH_OK) {
            return WH_ERR;
        }
        int rc = render(b, fd->oid, fd->type, v.p, v.n, depth + 1);
        if (rc != WH_OK)
            return rc;
    }
    if (i >= n || s[i] != ')')
        return BAD;
    i++;
    skip_space(s, n, &i);
    if (i != n)
        return BAD;
    return wh_buf_putc(b, '}');
}

/* One hstore key or value at s[*i]: "quoted" (backslash escapes) or a bare
 * word; isnull for a bare NULL. */
static int hstore_item(const char *s, size_t n, size_t *i, int depth, span *out, int *isnull)
{
    size_t j = *i;
    *isnull = 0;
    if (j >= n)
        return BAD;
    if (s[j] == '"')
        return quoted(s, n, i, depth, out);
    size_t a = j;
    while (j < n && !is_space(s[j]) && s[j] != ',' && s[j] != '=' && s[j] != '>' && s[j] != '"') {
        if (s[j] == '\\')
            return BAD;
        j++;
    }
    if (j == a)
        return BAD;
    *i = j;
    *isnull = is_null_word(s + a, j - a);
    out->p = s + a;
    out->n = j - a;
    return WH_OK;
}

/* hstore text '"k"=>"v", "n"=>NULL' -> {"k":"v","n":null}, as its cast to
 * json (which to_jsonb uses) writes it. */
static int hstore_parse(wh_buf *b, const char *s, size_t n, int depth)
{
    if (depth >= ING_VALUE_MAXDEPTH)
        return BAD;
    size_t i = 0;
    int first = 1;
    if (wh_buf_putc(b, '{'))
        return WH_ERR;
    for (;;) {
        skip_space(s, n, &i);
        if (i >= n)
            break;
        if (!first) {
            if (s[i] != ',')
                return BAD;
            i++;
            skip_space(s, n, &i);
            if (wh_buf_putc(b, ','))
                return WH_ERR;
        }
        span k, v;
        int knull, vnull, rc = hstore_item(s, n, &i, depth, &k, &knull);
        if (rc != WH_OK)
            return rc;
        if (knull)
            return BAD; /* a NULL key */
        /* the key is rendered before the value is unescaped: both may use
         * the scratch */
        if (wh_json_str(b, k.p, k.n) || wh_buf_putc(b, ':'))
            return WH_ERR;
        skip_space(s, n, &i);
        if (n - i < 2 || s[i] != '=' || s[i + 1] != '>')
            return BAD;
        i += 2;
        skip_space(s, n, &i);
        rc = hstore_item(s, n, &i, depth, &v, &vnull);
        if (rc != WH_OK)
            return rc;
        if (vnull)
            rc = wh_buf_append(b, "null", 4);
        else
            rc = wh_json_str(b, v.p, v.n);
        if (rc != WH_OK)
            return rc;
        first = 0;
    }
    return wh_buf_putc(b, '}');
}

/* int2vector / oidvector "1 2 3" -> [1,2,3] (to_jsonb treats them as
 * arrays). */
static int vector_parse(wh_buf *b, const char *s, size_t n)
{
    size_t i = 0;
    int first = 1;
    if (wh_buf_putc(b, '['))
        return WH_ERR;
    for (;;) {
        skip_space(s, n, &i);
        if (i >= n)
            break;
        size_t a = i;
        while (i < n && !is_space(s[i]))
            i++;
        if (!ing_is_json_number(s + a, i - a))
            return BAD;
        if ((!first && wh_buf_putc(b, ',')) || wh_buf_append(b, s + a, i - a))
            return WH_ERR;
        first = 0;
    }
    return wh_buf_putc(b, ']');
}

/* Containers that fell back to their text on this thread (container()),
 * and of those under a descriptor: the count since the last
 * ing_values_mismatch_take and the first value's top descriptor. */
static __thread unsigned long g_fallbacks;
static __thread unsigned long g_mismatches;
static __thread const ing_vtype *g_mismatch_vt;

/* kind: 0 array, 1 record, 2 hstore, 3 vector. A literal that does not parse
 * is sent as its text. */
static int container(wh_buf *b, int kind, uint32_t eoid, const ing_vtype *t, char delim,
                     const char *s, size_t n, int depth)
{
    size_t start = b->len;
    int rc;
    switch (kind) {
    case 0:
        rc = array_parse(b, eoid, t, delim, s, n, depth);
        break;
    case 1:
        rc = record_parse(b, t, s, n, depth);
        break;
    case 2:
        rc = hstore_parse(b, s, n, depth);
        break;
    default:
        rc = vector_parse(b, s, n);
        break;
    }
    if (rc == BAD) {
        b->len = start;
        g_fallbacks++;
        return wh_json_str(b, s, n);
    }
    return rc;
}

/* Built-in arrays (pg_type.dat: typsubscript array_subscript_handler, below
 * FirstGenbkiObjectId) and their element types, sorted by array OID. Not
 * here: arrays of system catalogs' row types and of record (no table column
 * has them), int2vector and oidvector (their own form). Only box's
 * delimiter is not ','. */
static const uint32_t builtin_arrays[][2] = {
    {143, 142},   {199, 114},   {271, 5069},  {629, 628},   {651, 650},   {719, 718},
    {775, 774},   {791, 790},   {1000, 16},   {1001, 17},   {1002, 18},   {1003, 19},
    {1005, 21},   {1006, 22},   {1007, 23},   {1008, 24},   {1009, 25},   {1010, 27},
    {1011, 28},   {1012, 29},   {1013, 30},   {1014, 1042}, {1015, 1043}, {1016, 20},
    {1017, 600},  {1018, 601},  {1019, 602},  {1020, 603},  {1021, 700},  {1022, 701},
    {1027, 604},  {1028, 26},   {1034, 1033}, {1040, 829},  {1041, 869},  {1115, 1114},
    {1182, 1082}, {1183, 1083}, {1185, 1184}, {1187, 1186}, {1231, 1700}, {1263, 2275},
    {1270, 1266}, {1561, 1560}, {1563, 1562}, {2201, 1790}, {2207, 2202}, {2208, 2203},
    {2209, 2204}, {2210, 2205}, {2211, 2206}, {2949, 2970}, {2951, 2950}, {3221, 3220},
    {3643, 3614}, {3644, 3642}, {3645, 3615}, {3735, 3734}, {3770, 3769}, {3807, 3802},
    {3905, 3904}, {3907, 3906}, {3909, 3908}, {3911, 3910}, {3913, 3912}, {3927, 3926},
    {4073, 4072}, {4090, 4089}, {4097, 4096}, {4192, 4191}, {5039, 5038}, {6150, 4451},
    {6151, 4532}, {6152, 4533}, {6153, 4534}, {6155, 4535}, {6157, 4536},
};
#define ING_BOXOID 603

int ing_builtin_array(uint32_t oid, uint32_t *elem, char *delim)
{
    size_t lo = 0, hi = sizeof(builtin_arrays) / sizeof(builtin_arrays[0]);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (builtin_arrays[mid][0] < oid) {
            lo = mid + 1;
        } else if (builtin_arrays[mid][0] > oid) {
            hi = mid;
        } else {
            *elem = builtin_arrays[mid][1];
            *delim = *elem == ING_BOXOID ? ';' : ',';
            return 1;
        }
    }
    return 0;
}

/* 1 when render_oid sends any text of oid as that text, a JSON string. */
static int string_form(uint32_t oid)
{
    switch (oid) {
    case ING_TEXTOID:
    case ING_VARCHAROID:
    case ING_BPCHAROID:
    case ING_NAMEOID:
    case ING_NUMERICOID:
    case ING_DATEOID:
    case ING_UUIDOID:
        return 1;
    case ING_INT2OID:
    case ING_INT4OID:
    case ING_INT8OID:
    case ING_OIDOID:
    case ING_FLOAT4OID:
    case ING_FLOAT8OID:
    case ING_BOOLOID:
    case ING_JSONOID:
    case ING_JSONBOID:
    case ING_BYTEAOID:
    case ING_TIMESTAMPTZOID:
    case ING_TIMESTAMPOID:
    case ING_INT2VECTOROID:
    case ING_OIDVECTOROID:
        return 0;
    default: {
        uint32_t elem;
        char delim;
        return !(oid < ING_FIRST_NONBUILTIN_OID && ing_builtin_array(oid, &elem, &delim));
    }
    }
}

/* A value of a type known by its OID. */
static int render_oid(wh_buf *b, uint32_t oid, const char *s, size_t n, int depth)
{
    switch (oid) {
    case ING_INT2OID:
    case ING_INT4OID:
    case ING_INT8OID:
    case ING_OIDOID:
    case ING_FLOAT4OID:
    case ING_FLOAT8OID:
        /* NaN, Infinity, -Infinity (and anything odd) travel as strings */
        if (ing_is_json_number(s, n))
            return wh_buf_append(b, s, n);
        return wh_json_str(b, s, n);
    case ING_BOOLOID:
        if (n == 1 && s[0] == 't')
            return wh_buf_append(b, "true", 4);
        if (n == 1 && s[0] == 'f')
            return wh_buf_append(b, "false", 5);
        return wh_json_str(b, s, n);
    case ING_JSONOID:
    case ING_JSONBOID:
        /* PostgreSQL validated its syntax on input: embed as is, but for
         * bytes that are not UTF-8 (a SQL_ASCII database converts nothing;
         * they can only be inside strings), each sent as U+FFFD. Inside a
         * container (depth > 0) the type comes from a descriptor read from
         * the catalog, which may be older than the value (an attribute
         * changed from jsonb to text): the text is checked first, and one
         * that is not JSON makes the container fall back to its text. A
         * column's own type comes from the Relation message: not checked. */
        if (n == 0)
            return wh_buf_append(b, "null", 4);
        if (depth > 0 && !ing_json_valid(s, n))
            return BAD;
        return wh_buf_append_utf8(b, s, n);
    case ING_BYTEAOID:
        return bytea_json(b, s, n);
    case ING_TIMESTAMPTZOID:
        return timestamptz_json(b, s, n);
    case ING_TIMESTAMPOID:
        return timestamp_json(b, s, n);
    case ING_TEXTOID:
    case ING_VARCHAROID:
    case ING_BPCHAROID:
    case ING_NAMEOID:
    case ING_CHAROID:
    case ING_NUMERICOID:
    case ING_DATEOID:
    case ING_UUIDOID:
        return wh_json_str(b, s, n);
    case ING_TEXTARRAYOID:
        return container(b, 0, ING_TEXTOID, NULL, ',', s, n, depth);
    case ING_INT2VECTOROID:
    case ING_OIDVECTOROID:
        return container(b, 3, 0, NULL, 0, s, n, depth);
    default: {
        /* another built-in array; else everything sent as its text */
        uint32_t elem;
        char delim;
        if (oid < ING_FIRST_NONBUILTIN_OID && ing_builtin_array(oid, &elem, &delim))
            return container(b, 0, elem, NULL, delim, s, n, depth);
        return wh_json_str(b, s, n);
    }
    }
}

static int render(wh_buf *b, uint32_t oid, const ing_vtype *t, const char *s, size_t n, int depth)
{
    if (t == NULL)
        return render_oid(b, oid, s, n, depth);
    switch (t->kind) {
    case ING_VT_ARRAY:
        return container(b, 0, t->elem_oid, t->elem, t->delim, s, n, depth);
    case ING_VT_RECORD:
        return container(b, 1, 0, t, 0, s, n, depth);
    case ING_VT_HSTORE:
        return container(b, 2, 0, NULL, 0, s, n, depth);
    default:
        return render_oid(b, t->oid, s, n, depth);
    }
}

int ing_value_json(wh_buf *b, uint32_t type_oid, const char *s, size_t n)
{
    return render_oid(b, type_oid, s, n, 0);
}

int ing_value_typed(wh_buf *b, const ing_vtype *t, const char *s, size_t n)
{
    unsigned long before = g_fallbacks;
    int rc = render(b, t ? t->oid : 0, t, s, n, 0);
    if (g_fallbacks != before && t != NULL) {
        if (g_mismatches++ == 0)
            g_mismatch_vt = t;
    }
    return rc;
}

unsigned long ing_values_mismatch_take(const ing_vtype **first)
{
    unsigned long n = g_mismatches;
    if (first)
        *first = n ? g_mismatch_vt : NULL;
    g_mismatches = 0;
    g_mismatch_vt = NULL;
    return n;
}

/* ---- JSON syntax ------------------------------------------------------------ */

static size_t json_ws(const char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* The end of the JSON string at s[i] == '"', or 0 when it is not one: no
 * control byte, escapes of RFC 8259 only; any other byte is taken (bytes
 * that are not UTF-8 are replaced when embedded, wh_buf_append_utf8). */
static size_t json_string_end(const char *s, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"')
            return i + 1;
        if (c < 0x20)
            return 0;
        if (c != '\\')
            continue;
        if (++i >= n)
            return 0;
        switch (s[i]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            break;
        case 'u':
            if (n - i < 5)
                return 0;
            for (int k = 1; k <= 4; k++)
                if (wh_hexval(s[i + k]) < 0)
                    return 0;
            i += 4;
            break;
        default:
            return 0;
        }
    }
    return 0;
}

/* An object member's key at s[i] with its ':' and the blanks around it:
 * where its value starts, or 0 when there is no key. */
static size_t json_key_end(const char *s, size_t n, size_t i)
{
    if (i >= n || s[i] != '"' || (i = json_string_end(s, n, i)) == 0)
        return 0;
    i = json_ws(s, n, i);
    if (i >= n || s[i] != ':')
        return 0;
    return json_ws(s, n, i + 1);
}

/* Nesting followed by ing_json_valid: one bit per level (1 object). */
#define JSON_MAXDEPTH 4096

int ing_json_valid(const char *s, size_t n)
{
    uint64_t stack[JSON_MAXDEPTH / 64];
    int depth = 0;
    size_t i = json_ws(s, n, 0);
    /* expect a value at i; after it, a ',' or the container's close */
    for (;;) {
        if (i >= n)
            return 0;
        char c = s[i];
        if (c == '{' || c == '[') {
            if (depth >= JSON_MAXDEPTH)
                return 0;
            int obj = c == '{';
            if (obj)
                stack[depth / 64] |= UINT64_C(1) << (depth % 64);
            else
                stack[depth / 64] &= ~(UINT64_C(1) << (depth % 64));
            depth++;
            i = json_ws(s, n, i + 1);
            if (i < n && s[i] == (obj ? '}' : ']')) {
                depth--;
                i++;
                goto after_value;
            }
            if (obj && (i = json_key_end(s, n, i)) == 0)
                return 0;
            continue;
        }
        if (c == '"') {
            if ((i = json_string_end(s, n, i)) == 0)
                return 0;
        } else if (c == '-' || is_digit(c)) {
            size_t k = wh_json_number_len(s + i, n - i, NULL, NULL);
            if (k == 0)
                return 0;
            i += k;
        } else if (n - i >= 4 && memcmp(s + i, "true", 4) == 0) {
            i += 4;
        } else if (n - i >= 5 && memcmp(s + i, "false", 5) == 0) {
            i += 5;
        } else if (n - i >= 4 && memcmp(s + i, "null", 4) == 0) {
            i += 4;
        } else {
            return 0;
        }
    after_value:
        i = json_ws(s, n, i);
        for (;;) {
            if (depth == 0)
                return i == n;
            if (i >= n)
                return 0;
            int obj = (stack[(depth - 1) / 64] >> ((depth - 1) % 64)) & 1;
            if (s[i] == (obj ? '}' : ']')) {
                depth--;
                i = json_ws(s, n, i + 1);
                continue;
            }
            if (s[i] != ',')
                return 0;
            i = json_ws(s, n, i + 1);
            if (obj && (i = json_key_end(s, n, i)) == 0)
                return 0;
            break;
        }
    }
}

/* Writes v as n decimal digits, zero-padded. */
static void put_digits(char *p, unsigned v, int n)
{
    while (n-- > 0) {
        p[n] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* Any year (gmtime_r + snprintf): the slow path of ing_format_ts_utc. */
static int format_ts_slow(int64_t secs, int64_t us, char *buf, size_t len)
{
    time_t t = (time_t)secs;
    struct tm tm;
    if (!gmtime_r(&t, &tm))
        return -1;
    int n = snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)us);
    if (n < 0 || (size_t)n >= len)
        return -1;
    return n;
}

int ing_format_ts_utc(int64_t unix_us, char *buf, size_t len)
{
    int64_t secs = unix_us / 1000000;
    int64_t us = unix_us % 1000000;
    if (us < 0) {
        us += 1000000;
        secs -= 1;
    }
    /* civil date from days since 1970-01-01 (H. Hinnant's algorithm): no
     * gmtime_r (its time zone lock) and no printf, once per transaction */
    int64_t days = secs / 86400, sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        days -= 1;
    }
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    if (m <= 2)
        y++;
    if (y < 0 || y > 9999 || len < 28)
        return format_ts_slow(secs, us, buf, len);
    /* YYYY-MM-DDTHH:MM:SS.uuuuuuZ */
    put_digits(buf, (unsigned)y, 4);
    buf[4] = '-';
    put_digits(buf + 5, m, 2);
    buf[7] = '-';
    put_digits(buf + 8, d, 2);
    buf[10] = 'T';
    put_digits(buf + 11, (unsigned)(sod / 3600), 2);
    buf[13] = ':';
    put_digits(buf + 14, (unsigned)(sod / 60 % 60), 2);
    buf[16] = ':';
    put_digits(buf + 17, (unsigned)(sod % 60), 2);
    buf[19] = '.';
    put_digits(buf + 20, (unsigned)us, 6);
    buf[26] = 'Z';
    buf[27] = '\0';
    return 27;
}
