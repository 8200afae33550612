/* wh_filter: compile once, evaluate per event without allocation (see
 * wh_filter.h). The expression compiles into an array of nodes; operands
 * (paths and literals) live in a second array and their bytes in a pool,
 * all sized from the expression's length at compile time. Evaluation walks
 * the event's JSON text with wh_json spans. */
#include "wh_filter.h"

#include <fnmatch.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "wh_util.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

enum {
    OPM_INSERT = 1,
    OPM_UPDATE = 2,
    OPM_DELETE = 4,
    OPM_TRUNCATE = 8,
    OPM_MESSAGE = 16,
    OPM_SCHEMA = 32, /* a table's new schema version (ing_schema) */
    OPM_DDL = 64,    /* a captured DDL command (source.ddl) */
    OPM_READ = 128,  /* a snapshot or backfill row (also selected by "insert") */
};

static const struct {
    const char *name;
    unsigned bit;
} op_names[] = {{"insert", OPM_INSERT},     {"update", OPM_UPDATE},   {"delete", OPM_DELETE},
                {"truncate", OPM_TRUNCATE}, {"message", OPM_MESSAGE}, {"schema", OPM_SCHEMA},
                {"ddl", OPM_DDL},           {"read", OPM_READ}};

/* A number as decimal text, compared exactly (no double): a view of the
 * digits where they are (the event's bytes, or the filter's pool), so
 * reading one allocates nothing. value = sign * 0.D * 10^pt, where D is
 * a[0..na) then b[0..nb) (the digits before and after the point, without
 * leading or trailing zeros). PostgreSQL's special values, in strings
 * only, order as PostgreSQL orders them: -Infinity < numbers < Infinity <
 * NaN, and NaN equals NaN. */
typedef enum { DEC_NINF, DEC_FIN, DEC_PINF, DEC_NAN } dec_kind;
typedef struct {
    dec_kind kind;
    int sign; /* DEC_FIN: -1, 0 (zero), 1 */
    const char *a, *b;
    size_t na, nb;
    int64_t pt;
} dec;

typedef enum { O_PATH, O_STR, O_NUM, O_BOOL, O_NULL } opnd_kind;

typedef struct {
    opnd_kind kind;
    int b;
    dec num;       /* O_NUM: its digits in the pool */
    const char *s; /* O_STR: decoded literal in the pool */
    size_t n;
    int nseg;
    const char *seg[WH_FILTER_PATH_MAX];
    size_t seglen[WH_FILTER_PATH_MAX];
    int head;  /* O_PATH: index of seg[0] in the filter's heads, -1: looked up alone */
    int sub;   /* O_PATH: the filter's sub-member of seg[0].seg[1] (wh_evidx), -1: none */
    int plain; /* O_STR: no backslash in the literal (raw JSON bytes equal to it are it) */
} opnd;

#define WH_FILTER_HEADS_MAX 16

typedef enum { N_OR, N_AND, N_NOT, N_CMP, N_IN, N_PREFIX, N_TRUTHY } node_kind;
typedef enum { C_EQ, C_NE, C_LT, C_LE, C_GT, C_GE } cmp_kind;

typedef struct {
    node_kind kind;
    cmp_kind cmp;
    int l, r;        /* OR/AND/NOT: child nodes; CMP/PREFIX/TRUTHY: operands */
    int list, nlist; /* IN: operands list..list+nlist, l the tested operand */
    /* CMP of an indexed path (head, or head.member) with a literal, set at
     * compile time so that the evaluation reads the node alone: */
    int fk;        /* FK_NONE, FK_NUM (any comparison), FK_STR (== and != only) */
    int head, sub; /* the path's head and sub-member (-1: none) */
    dec num;       /* FK_NUM: the number */
    const char *s; /* FK_STR: the string (without a backslash) */
    size_t sn;
} node;

enum { FK_NONE = 0, FK_NUM, FK_STR };

typedef struct {
    char *s;
    size_t n;
} name;

struct wh_filter {
    unsigned ops; /* 0 = every operation */
    name *tables; /* globs */
    size_t ntables;
    name *include; /* columns */
    size_t ninclude;
    name *exclude;
    size_t nexclude;
    int root; /* -1: no expression */
    node *nodes;
    int nnodes;
    opnd *opnds;
    int nopnds;
    char *pool; /* literals and path segments */
    size_t poolcap, poollen;
    /* distinct first segments of the paths: found in one pass over the
     * event's members per match */
    const char *heads[WH_FILTER_HEADS_MAX];
    size_t headlen[WH_FILTER_HEADS_MAX];
    int headslot[WH_FILTER_HEADS_MAX]; /* WH_EV_* of the head, -1: not indexed */
    int nheads;
    unsigned unindexed; /* heads (bits) that wh_evidx does not cover */
    /* members of indexed heads (key, before, after) that paths name:
     * indexed in the event's one walk (wh_evidx sub_*) */
    int nsubs;
    unsigned sub_heads; /* WH_EV_* slots (bits) with sub-members */
    int sub_slot[WH_EVX_SUB_MAX];
    const char *sub_name[WH_EVX_SUB_MAX];
    size_t sub_namelen[WH_EVX_SUB_MAX];
};

static const char *const ev_names[WH_EV_NFIELDS] = {[WH_EV_ID] = "id",
                                                    [WH_EV_TENANT] = "tenant",
                                                    [WH_EV_LSN] = "lsn",
                                                    [WH_EV_XID] = "xid",
                                                    [WH_EV_COMMIT_TS] = "commit_ts",
                                                    [WH_EV_OP] = "op",
                                                    [WH_EV_SCHEMA] = "schema",
                                                    [WH_EV_TABLE] = "table",
                                                    [WH_EV_KEY] = "key",
                                                    [WH_EV_BEFORE] = "before",
                                                    [WH_EV_AFTER] = "after",
                                                    [WH_EV_PREFIX] = "prefix",
                                                    [WH_EV_CONTENT] = "content",
                                                    [WH_EV_ORIGIN] = "origin",
                                                    [WH_EV_CHANGE_LSN] = "change_lsn"};

/* The WH_EV_* slot of a member name given as bytes, or -1 (constant-size
 * compares: the compiler inlines them). */
static inline __attribute__((always_inline)) int ev_slot_raw(const char *k, size_t n)
{
#define EQ(lit) (memcmp(k, lit, sizeof(lit) - 1) == 0)
    switch (n) {
    case 2:
        return EQ("id") ? WH_EV_ID : EQ("op") ? WH_EV_OP : -1;
    case 3:
        return EQ("lsn") ? WH_EV_LSN : EQ("xid") ? WH_EV_XID : EQ("key") ? WH_EV_KEY : -1;
    case 5:
        return EQ("table") ? WH_EV_TABLE : EQ("after") ? WH_EV_AFTER : -1;
    case 6:
        return EQ("tenant")   ? WH_EV_TENANT
               : EQ("schema") ? WH_EV_SCHEMA
               : EQ("before") ? WH_EV_BEFORE
               : EQ("prefix") ? WH_EV_PREFIX
               : EQ("origin") ? WH_EV_ORIGIN
                              : -1;
    case 7:
        return EQ("content") ? WH_EV_CONTENT : -1;
    case 9:
        return EQ("commit_ts") ? WH_EV_COMMIT_TS : -1;
    case 10:
        return EQ("change_lsn") ? WH_EV_CHANGE_LSN : -1;
    default:
        return -1;
    }
#undef EQ
}

/* The slot of a member name span (escapes decoded), or -1. The names have
 * no escapes and an escape makes the raw text longer than its decoded
 * form: raw bytes equal to a name are that name, and only a key with an
 * escape (3 raw bytes at least) is compared decoded when its raw bytes
 * match no name. */
static inline __attribute__((always_inline)) int ev_slot(const wh_json_span *k)
{
    if (k->len < 2)
        return -1;
    const char *raw = k->p + 1;
    size_t n = k->len - 2;
    int i = ev_slot_raw(raw, n);
    if (i >= 0 || n < 3 || memchr(raw, '\\', n) == NULL)
        return i;
    for (i = 0; i < WH_EV_NFIELDS; i++) /* rare: compare decoded */
        if (wh_json_span_strcmp(k, ev_names[i], strlen(ev_names[i])) == 0)
            return i;
    return -1;
}

/* memcmp(a, b, n) == 0, inline for up to 16 bytes (two overlapping loads
 * of each side). */
static inline __attribute__((always_inline)) int same_bytes(const char *a, const char *b, size_t n)
{
    if (n >= 8 && n <= 16) {
        uint64_t a0, a1, b0, b1;
        memcpy(&a0, a, 8);
        memcpy(&a1, a + n - 8, 8);
        memcpy(&b0, b, 8);
        memcpy(&b1, b + n - 8, 8);
        return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
    if (n >= 4 && n < 8) {
        uint32_t a0, a1, b0, b1;
        memcpy(&a0, a, 4);
        memcpy(&a1, a + n - 4, 4);
        memcpy(&b0, b, 4);
        memcpy(&b1, b + n - 4, 4);
        return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
    if (n < 4) {
        for (size_t i = 0; i < n; i++)
            if (a[i] != b[i])
                return 0;
        return 1;
    }
    return memcmp(a, b, n) == 0;
}

/* 1 when the string span k (a member name), escapes decoded, is
 * name[0..n) (name without escapes: see ev_slot). */
static int key_is(const wh_json_span *k, const char *name, size_t n)
{
    size_t rn = k->len - 2;
    if (rn == n)
        return n == 0 || (k->p[1] == name[0] && same_bytes(k->p + 1, name, n));
    return rn > n && memchr(k->p + 1, '\\', rn) != NULL && wh_json_span_strcmp(k, name, n) == 0;
}

static inline __attribute__((always_inline)) size_t ev_ws(const char *s, size_t len, size_t i)
{
    if (i < len && (unsigned char)s[i] > ' ') /* the common case: no whitespace */
        return i;
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* The quotes of an event object without a backslash, as a bitmap (bit j of
 * w[j / 64]: s[j] == '"'): a string then ends at the next quote, which the
 * walk finds with a bit scan instead of scanning the string's bytes. Events
 * with a backslash (an escape somewhere) or longer than QMAP_MAX are walked
 * by scanning, as wh_json_span_str_end does; both give the same index.
 * b: the brackets ({ } [ ]) outside strings the same way, a string being
 * what lies between a quote and the next one from s[0] on: a container the
 * walk does not look into is passed by them (qmap_container_end) instead
 * of by its bytes. The test for a bracket is one compare, c & 0xD9 ==
 * 0x59, which 'Y', '_', 'y' and DEL pass too: outside strings they occur
 * in malformed JSON only, and qmap_container_end passes over them. */
#define QM_BRC(c) (((unsigned char)(c)&0xD9) == 0x59)
#define QMAP_MAX 8192
typedef struct {
    uint64_t w[QMAP_MAX / 64];
    uint64_t b[QMAP_MAX / 64];
    size_t nw;
} qmap;

/* Bit j of the result: an odd number of bits at or below j in q (between
 * a quote and its closing one, no backslash: in a string). */
static inline __attribute__((always_inline)) uint64_t prefix_xor(uint64_t q)
{
    q ^= q << 1;
    q ^= q << 2;
    q ^= q << 4;
    q ^= q << 8;
    q ^= q << 16;
    q ^= q << 32;
    return q;
}

/* Fills m for s[0..n) (n <= QMAP_MAX); 0 when s holds a backslash (SSE2,
 * the x86-64 baseline). */
static int qmap_build_base(qmap *m, const char *s, size_t n)
{
    size_t nw = (n + 63) / 64;
    uint64_t bs = 0, open = 0; /* open: all ones when a string is open at the word's start */
#define QM_OUT(q, br)          /* br without the brackets in strings */                            \
    do {                                                                                           \
        uint64_t in_ = prefix_xor(q) ^ open;                                                       \
        open = 0 - (in_ >> 63);                                                                    \
        (br) &= ~in_;                                                                              \
    } while (0)
#ifdef __SSE2__
    size_t full = n / 64;
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'),
                  fold = _mm_set1_epi8((char)0xD9), brk = _mm_set1_epi8(0x59);
#define QM_BR(x)                                                                                   \
    ((uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_and_si128((x), fold), brk)))
    __m128i anyb = _mm_setzero_si128();
    for (size_t w = 0; w < full; w++) {
        const char *p = s + w * 64;
        __m128i x0 = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i x1 = _mm_loadu_si128((const __m128i *)(const void *)(p + 16));
        __m128i x2 = _mm_loadu_si128((const __m128i *)(const void *)(p + 32));
        __m128i x3 = _mm_loadu_si128((const __m128i *)(const void *)(p + 48));
        uint64_t q0 = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x0, quote));
        uint64_t q1 = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x1, quote));
        uint64_t q2 = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x2, quote));
        uint64_t q3 = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x3, quote));
        uint64_t q = q0 | q1 << 16 | q2 << 32 | q3 << 48;
        uint64_t br = QM_BR(x0) | QM_BR(x1) << 16 | QM_BR(x2) << 32 | QM_BR(x3) << 48;
        QM_OUT(q, br);
        m->w[w] = q;
        m->b[w] = br;
        anyb = _mm_or_si128(
            anyb,
            _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x0, bslash), _mm_cmpeq_epi8(x1, bslash)),
                         _mm_or_si128(_mm_cmpeq_epi8(x2, bslash), _mm_cmpeq_epi8(x3, bslash))));
    }
    if (full < nw) { /* the last, partial block of r bytes */
        size_t base = full * 64, r = n - base, k = 0;
        uint64_t bits = 0, brs = 0;
        for (; k + 16 <= r; k += 16) {
            __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(s + base + k));
            bits |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, quote)) << k;
            brs |= QM_BR(x) << k;
            anyb = _mm_or_si128(anyb, _mm_cmpeq_epi8(x, bslash));
        }
        if (k < r && n >= 16) {
            /* the last 16 bytes of s, of which the last r - k are new */
            __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(s + n - 16));
            unsigned mq = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, quote));
            bits |= (uint64_t)(mq >> (16 - (r - k))) << k;
            brs |= (QM_BR(x) >> (16 - (r - k))) << k;
            anyb = _mm_or_si128(anyb, _mm_cmpeq_epi8(x, bslash));
        } else {
            for (; k < r; k++) {
                char c = s[base + k];
                bits |= (uint64_t)(c == '"') << k;
                brs |= (uint64_t)QM_BRC(c) << k;
                bs |= c == '\\';
            }
        }
        QM_OUT(bits, brs);
        m->w[full] = bits;
        m->b[full] = brs;
    }
#undef QM_BR
    bs |= (uint64_t)_mm_movemask_epi8(anyb);
#else
    for (size_t w = 0; w < nw; w++) {
        uint64_t bits = 0, brs = 0;
        size_t end = w * 64 + 64 < n ? w * 64 + 64 : n;
        for (size_t j = w * 64; j < end; j++) {
            char c = s[j];
            bits |= (uint64_t)(c == '"') << (j & 63);
            brs |= (uint64_t)QM_BRC(c) << (j & 63);
            bs |= c == '\\';
        }
        QM_OUT(bits, brs);
        m->w[w] = bits;
        m->b[w] = brs;
    }
#endif
#undef QM_OUT
    m->nw = nw;
    return bs == 0;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* qmap_build_base with 32 bytes a compare (AVX2) and the strings' mask by
 * one carry-less multiply (PCLMUL), where the CPU has both: the same map,
 * in about half the instructions (an event of rows of 1 KiB is 3 KiB). */
__attribute__((target("avx2,pclmul"))) static int qmap_build_avx2(qmap *m, const char *s, size_t n)
{
    size_t nw = (n + 63) / 64, full = n / 64;
    uint64_t open = 0;
    const __m256i quote = _mm256_set1_epi8('"'), bslash = _mm256_set1_epi8('\\'),
                  fold = _mm256_set1_epi8((char)0xD9), brk = _mm256_set1_epi8(0x59);
    const __m128i ones = _mm_set1_epi8(-1);
    __m256i anyb = _mm256_setzero_si256();
    char tail[64];
    for (size_t w = 0; w < nw; w++) {
        const char *p = s + w * 64;
        if (w == full) { /* the last, partial block, padded with zeros */
            memset(tail, 0, sizeof(tail));
            memcpy(tail, p, n - full * 64);
            p = tail;
        }
        __m256i y0 = _mm256_loadu_si256((const __m256i *)(const void *)p);
        __m256i y1 = _mm256_loadu_si256((const __m256i *)(const void *)(p + 32));
        uint64_t q = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(y0, quote)) |
                     (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(y1, quote)) << 32;
        uint64_t br =
            (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_and_si256(y0, fold), brk)) |
            (uint64_t)(uint32_t)_mm256_movemask_epi8(
                _mm256_cmpeq_epi8(_mm256_and_si256(y1, fold), brk))
                << 32;
        anyb = _mm256_or_si256(
            anyb, _mm256_or_si256(_mm256_cmpeq_epi8(y0, bslash), _mm256_cmpeq_epi8(y1, bslash)));
        /* prefix_xor(q): q times all ones, carry-less */
        uint64_t in = (uint64_t)_mm_cvtsi128_si64(
                          _mm_clmulepi64_si128(_mm_cvtsi64_si128((long long)q), ones, 0)) ^
                      open;
        open = 0 - (in >> 63);
        m->w[w] = q;
        m->b[w] = br & ~in;
    }
    m->nw = nw;
    return _mm256_testz_si256(anyb, anyb);
}
#define QMAP_AVX2 1
#endif

static int qmap_baseline; /* wh_evidx_baseline */

void wh_evidx_baseline(int on)
{
    qmap_baseline = on;
}

/* Fills m for s[0..n) (n <= QMAP_MAX); 0 when s holds a backslash. */
static inline int qmap_build(qmap *m, const char *s, size_t n)
{
#ifdef QMAP_AVX2
    if (!qmap_baseline && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("pclmul"))
        return qmap_build_avx2(m, s, n);
#endif
    return qmap_build_base(m, s, n);
}

/* wh_json_span_at's container case over s[0..len) (the map's length) for
 * s[i] == '{' or '[': the index after the bracket that closes it, or 0
 * when it is not well bracketed within maxdepth. The scan skips strings
 * from s[i] on, a quote to the next one (no backslash: what
 * wh_json_span_str_end finds); the map's brackets are those outside the
 * strings counted from s[0], which are the same ones: the walk reaches
 * s[i] having passed whole strings only (keys, values, the strings in the
 * containers it passed), so an even number of quotes lies before it. */
static inline __attribute__((always_inline)) size_t
qmap_container_end(const qmap *m, const char *s, size_t i, size_t maxdepth, int inobj)
{
    char stack[WH_JSON_SPAN_DEPTH];
    if (maxdepth > sizeof(stack))
        maxdepth = sizeof(stack);
    size_t depth = 0, w = i >> 6;
    if (inobj) /* resumed in an object, after one of its members */
        stack[depth++] = '}';
    uint64_t br = m->b[w] & (~UINT64_C(0) << (i & 63));
    for (;;) {
        for (; br != 0; br &= br - 1) {
            size_t p = (w << 6) + (size_t)__builtin_ctzll(br);
            char ch = s[p];
            if (ch == '{' || ch == '[') {
                if (depth >= maxdepth)
                    return 0;
                stack[depth++] = ch == '{' ? '}' : ']';
            } else if (ch == '}' || ch == ']') {
                if (depth == 0 || stack[depth - 1] != ch)
                    return 0;
                if (--depth == 0)
                    return p + 1;
            } /* else a byte the map's test takes for a bracket (see qmap_build) */
        }
        if (++w >= m->nw)
            return 0;
        br = m->b[w];
    }
}

/* wh_json_span_str_end(s, len, i) over s[0..len) (len: the length the map
 * was built for): one past the first quote after s[i], or 0. */
static inline __attribute__((always_inline)) size_t qmap_str_end(const qmap *m, size_t len,
                                                                 size_t i)
{
    size_t j = i + 1, w = j >> 6;
    if (w >= m->nw)
        return 0;
    uint64_t bits = m->w[w] >> (j & 63);
    if (bits != 0) {
        j += (size_t)__builtin_ctzll(bits);
        return j < len ? j + 1 : 0;
    }
    for (w++; w < m->nw; w++) {
        if (m->w[w] != 0) {
            j = w * 64 + (size_t)__builtin_ctzll(m->w[w]);
            return j < len ? j + 1 : 0;
        }
    }
    return 0;
}

/* The end of the string at s[i] == '"': by the map when there is one. */
static inline __attribute__((always_inline)) size_t ev_str_end(const qmap *m, const char *s,
                                                               size_t len, size_t i)
{
    return m ? qmap_str_end(m, len, i) : wh_json_span_str_end(s, len, i);
}

/* The object member at s[i..len) after a '{' or ',' (whitespace skipped):
 * its key into *k and the index of its value's first byte, or 0 when
 * malformed (what wh_json_span_next checks before the value). */
static inline __attribute__((always_inline)) size_t
ev_member_key(const qmap *qm, const char *s, size_t len, size_t i, wh_json_span *k)
{
    if (i >= len || s[i] != '"')
        return 0;
    size_t e = ev_str_end(qm, s, len, i);
    if (e == 0)
        return 0;
    k->p = s + i;
    k->len = e - i;
    k->type = WH_JSON_STRING;
    if (e + 1 < len && s[e] == ':' && (unsigned char)s[e + 1] > ' ')
        return e + 1; /* compact JSON: no whitespace around ':' */
    i = ev_ws(s, len, e);
    if (i >= len || s[i] != ':')
        return 0;
    i = ev_ws(s, len, i + 1);
    return i < len ? i : 0;
}

/* The value at s[i] (i < len, not whitespace) into *v with at most maxdepth
 * nested brackets; the index after it, or 0. Strings, integers and the
 * literals are read here (what wh_json_span_at reads them as), the rest by
 * wh_json_span_at. */
static inline __attribute__((always_inline)) size_t ev_value(const qmap *qm, int plain,
                                                             const char *s, size_t len, size_t i,
                                                             wh_json_span *v, size_t maxdepth)
{
    char c = s[i];
    if (c == '"') {
        size_t e = ev_str_end(qm, s, len, i);
        v->p = s + i;
        v->len = e - i;
        v->type = WH_JSON_STRING;
        return e;
    }
    if (c >= '0' && c <= '9') {
        /* an integer (xid, seq, ids): wh_json_number_len's integer part; a
         * fraction or an exponent goes the long way */
        size_t e = i + 1;
        if (c != '0')
            while (e < len && s[e] >= '0' && s[e] <= '9')
                e++;
        if (e < len && s[e] != '.' && s[e] != 'e' && s[e] != 'E') {
            v->p = s + i;
            v->len = e - i;
            v->type = WH_JSON_NUMBER;
            return e;
        }
    } else if (!plain && c == 'n' && len - i >= 4 && memcmp(s + i, "null", 4) == 0) {
        v->p = s + i;
        v->len = 4;
        v->type = WH_JSON_NULL;
        return i + 4;
    } else if (qm && (c == '{' || c == '[')) {
        size_t e = qmap_container_end(qm, s, i, maxdepth, 0);
        if (e == 0)
            return 0;
        v->p = s + i;
        v->len = e - i;
        v->type = c == '{' ? WH_JSON_OBJECT : WH_JSON_ARRAY;
        return e;
    }
    return wh_json_span_at(s, len, i, v, maxdepth);
}

/* The object value of head slot `slot` at s[start] == '{', walked member
 * by member (to index the filter's sub-members of that head, f may be
 * NULL). A member walk that reaches the closing brace ends where the
 * bracket scan (wh_json_span_at) would: it reads the same strings and
 * brackets, and its nested values one level deeper (hence the depth limit
 * less one). When the walk meets something malformed, the sub-members
 * found before it are what wh_json_span_get finds too, and the bracket scan
 * decides the value. Returns the index after the value, or 0. */
static inline __attribute__((always_inline)) size_t
ev_sub_walk(const qmap *qm, int plain, const wh_filter *f, wh_evidx *x, const char *json, int slot,
            const char *s, size_t len, size_t start, wh_json_span *v)
{
    int nsubs = f && ((f->sub_heads >> slot) & 1u) ? f->nsubs : 0;
    unsigned mine = 0; /* the sub-members of this head */
    for (int j = 0; j < nsubs; j++)
        mine |= (unsigned)(f->sub_slot[j] == slot) << j;
    size_t i = start + 1;
    for (int first = 1;; first = 0) {
        /* with the quote map, once each of them is found (the first
         * occurrence wins; at once when the head has none) the rest is
         * passed by its brackets: where the walk would end when it reaches
         * the closing brace, and what decides the value when it would not.
         * The bracket scan from s[start] would be here with this object
         * open and nothing else: the members before are whole, their
         * values within the depth left. */
        if (qm && (x->sub_found & mine) == mine) {
            size_t e = qmap_container_end(qm, s, i, WH_JSON_SPAN_DEPTH, 1);
            if (e == 0)
                return 0;
            v->p = s + start;
            v->len = e - start;
            v->type = WH_JSON_OBJECT;
            return e;
        }
        i = ev_ws(s, len, i);
        if (i >= len)
            break;
        if (s[i] == '}') {
            v->p = s + start;
            v->len = i + 1 - start;
            v->type = WH_JSON_OBJECT;
            return i + 1;
        }
        if (!first) {
            if (s[i] != ',')
                break;
            i = ev_ws(s, len, i + 1);
        }
        wh_json_span k, m;
        i = ev_member_key(qm, s, len, i, &k);
        if (i == 0)
            break;
        size_t e = ev_value(qm, plain, s, len, i, &m, WH_JSON_SPAN_DEPTH - 1);
        if (e == 0 || e >= len)
            break;
        for (int j = 0; j < nsubs; j++) {
            if (f->sub_slot[j] != slot || (x->sub_found & (1u << j)) ||
                !(qm ? k.len - 2 == f->sub_namelen[j] && /* no escape: raw bytes decide */
                           same_bytes(k.p + 1, f->sub_name[j], f->sub_namelen[j])
                     : key_is(&k, f->sub_name[j], f->sub_namelen[j])))
                continue;
            x->sub_off[j] = (uint32_t)(m.p - json);
            x->sub_len[j] = (uint32_t)m.len;
            x->sub_type[j] = (uint8_t)m.type;
            x->sub_found |= (uint8_t)(1u << j);
        }
        i = e;
    }
    return ev_value(qm, plain, s, len, start, v, WH_JSON_SPAN_DEPTH); /* the bracket scan */
}

/* The members of a stored event in the order the ingestor writes them
 * (docs/INTERNALS.md): the walk first compares the next one's name, colon
 * included, with the bytes at hand, and reads the name only when they
 * differ. Raw bytes equal to `"name":` are that member's name (no escape
 * in it, the closing quote ends it). */
static const struct {
    char lit[16]; /* "name": zero-padded */
    uint8_t len;
    int8_t slot; /* WH_EV_*, -1: not indexed */
} ev_order[] = {
    {"\"id\":", 5, WH_EV_ID},         {"\"tenant\":", 9, WH_EV_TENANT},
    {"\"lsn\":", 6, WH_EV_LSN},       {"\"seq\":", 6, -1},
    {"\"xid\":", 6, WH_EV_XID},       {"\"commit_ts\":", 12, WH_EV_COMMIT_TS},
    {"\"op\":", 5, WH_EV_OP},         {"\"change_lsn\":", 13, WH_EV_CHANGE_LSN},
    {"\"schema\":", 9, WH_EV_SCHEMA}, {"\"table\":", 8, WH_EV_TABLE},
    {"\"key\":", 6, WH_EV_KEY},       {"\"before\":", 9, WH_EV_BEFORE},
    {"\"after\":", 8, WH_EV_AFTER},
};
#define EV_ORDER_N (sizeof(ev_order) / sizeof(ev_order[0]))

/* 1 when s[i..len) starts with ev_order[k].lit. */
static inline __attribute__((always_inline)) int ev_order_at(size_t k, const char *s, size_t len,
                                                             size_t i)
{
    size_t n = ev_order[k].len;
#ifdef __SSE2__
    if (len - i >= 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)ev_order[k].lit);
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(a, b));
        unsigned need = (1u << n) - 1;
        return (m & need) == need;
    }
#endif
    return len - i >= n && memcmp(s + i, ev_order[k].lit, n) == 0;
}

/* One walk over the event's members (what wh_json_span_next accepts, member
 * by member); f (may be NULL): also its sub-members; qm: the event's quote
 * map (NULL: strings are scanned). s[0..n) is the object (wh_json_object).
 * plain: none of the shortcuts (predicted names, null read inline, key and
 * before walked member by member without sub-members): the walk as it was
 * before them, kept as the reference the tests compare with. */
static inline __attribute__((always_inline)) void evidx_walk(const qmap *qm, int plain,
                                                             const wh_filter *f, const char *json,
                                                             const char *s, size_t n, wh_evidx *x)
{
    size_t i = 1, next = plain ? EV_ORDER_N : 0; /* next: the member ev_order expects */
    unsigned subheads = f ? f->sub_heads : 0;
    for (int first = 1;; first = 0) {
        wh_json_span v;
        int slot;
        if (!first && next < EV_ORDER_N && i + 1 < n && s[i] == ',' &&
            ev_order_at(next, s, n, i + 1)) {
            /* the common case: ',' and the expected name right after the
             * value (what the general steps below find then) */
            slot = ev_order[next].slot;
            i = ev_ws(s, n, i + 1 + ev_order[next].len);
            next++;
            if (i >= n)
                break;
            goto value;
        }
        i = ev_ws(s, n, i);
        if (i >= n)
            break;
        if (s[i] == '}') {
            x->state = WH_EVX_OK;
            return;
        }
        if (!first) {
            if (s[i] != ',')
                break;
            i = ev_ws(s, n, i + 1);
        }
        if (next < EV_ORDER_N && i < n && ev_order_at(next, s, n, i)) {
            /* what ev_member_key finds: the name, the colon, whitespace */
            slot = ev_order[next].slot;
            i = ev_ws(s, n, i + ev_order[next].len);
            next++;
            if (i >= n)
                break;
        } else {
            wh_json_span k;
            i = ev_member_key(qm, s, n, i, &k);
            if (i == 0)
                break;
            /* no escape in the event (quote map): the raw bytes decide */
            slot = qm ? (k.len >= 2 ? ev_slot_raw(k.p + 1, k.len - 2) : -1) : ev_slot(&k);
            /* the predicted member was absent (change_lsn of a snapshot
             * row): predict the ones after this one again */
            if (next + 1 < EV_ORDER_N && slot >= 0 && slot == ev_order[next + 1].slot)
                next += 2;
        }
    value:;
        int want = slot >= 0 && !(x->found & (1u << slot));
        /* key, before and after walked member by member (plain: only the
         * heads with sub-members, as before; with the quote map, until the
         * filter's sub-members of the head are found: none for a head
         * without, which is then passed by its brackets at once) */
        size_t e = want && s[i] == '{' &&
                           (plain ? ((subheads >> slot) & 1u) != 0
                                  : slot >= WH_EV_KEY && slot <= WH_EV_AFTER)
                       ? ev_sub_walk(qm, plain, f, x, json, slot, s, n, i, &v)
                       : ev_value(qm, plain, s, n, i, &v, WH_JSON_SPAN_DEPTH);
        if (e == 0 || e >= n)
            break;
        if (want) {
            x->off[slot] = (uint32_t)(v.p - json);
            x->len[slot] = (uint32_t)v.len;
            x->type[slot] = (uint8_t)v.type;
            x->found |= (uint16_t)(1u << slot);
        }
        i = e;
    }
    x->state = WH_EVX_BROKEN;
}

/* Indexes the event: with a quote map when it has no backslash and fits,
 * else scanning strings; scan = 1: the plain walk (see evidx_walk). */
static void evidx_build_mode(const wh_filter *f, const char *json, size_t len, wh_evidx *x,
                             int scan)
{
    x->found = 0;
    x->sub_found = 0;
    x->ev_off = x->ev_len = 0;
    wh_json_span ev;
    if (wh_json_object(json, len, &ev) != WH_OK || len > UINT32_MAX) {
        x->state = WH_EVX_NOTOBJ;
        return;
    }
    x->ev_off = (uint32_t)(ev.p - json);
    x->ev_len = (uint32_t)ev.len;
    qmap qm;
    if (scan)
        evidx_walk(NULL, 1, f, json, ev.p, ev.len, x);
    else if (ev.len <= QMAP_MAX && qmap_build(&qm, ev.p, ev.len))
        evidx_walk(&qm, 0, f, json, ev.p, ev.len, x);
    else
        evidx_walk(NULL, 0, f, json, ev.p, ev.len, x);
}

static void evidx_build(const wh_filter *f, const char *json, size_t len, wh_evidx *x)
{
    evidx_build_mode(f, json, len, x, 0);
}

void wh_evidx_build(const char *json, size_t len, wh_evidx *x)
{
    evidx_build(NULL, json, len, x);
}

void wh_evidx_build_scan(const wh_filter *f, const char *json, size_t len, wh_evidx *x)
{
    evidx_build_mode(f, json, len, x, 1);
}

int wh_evidx_get(const wh_evidx *x, const char *json, int i, wh_json_span *out)
{
    if (i < 0 || i >= WH_EV_NFIELDS || !(x->found & (1u << i)))
        return WH_ERR;
    out->p = json + x->off[i];
    out->len = x->len[i];
    out->type = (wh_json_type)x->type[i];
    return WH_OK;
}

/* One match: the event and the spans of its members named by the heads. */
typedef struct {
    const char *json;
    const wh_evidx *xi;
    const wh_json_span *ev;
    wh_json_span hv[WH_FILTER_HEADS_MAX];
    unsigned found;
} ectx;

/* ---- exact decimal numbers ---- */

/* Reads the JSON number p[0..len) (or, with special, also "Infinity",
 * "-Infinity" and "NaN", as in a string) into *d: 1, or 0 when it is not
 * one. Exponents are applied exactly (saturated far beyond any double). */
static int dec_parse(const char *p, size_t len, int special, dec *d)
{
    memset(d, 0, sizeof(*d));
    d->kind = DEC_FIN;
    if (special && len >= 3 && (p[0] == 'I' || p[0] == 'N' || (p[0] == '-' && p[1] == 'I'))) {
        if (len == 8 && memcmp(p, "Infinity", 8) == 0)
            d->kind = DEC_PINF;
        else if (len == 9 && memcmp(p, "-Infinity", 9) == 0)
            d->kind = DEC_NINF;
        else if (len == 3 && memcmp(p, "NaN", 3) == 0)
            d->kind = DEC_NAN;
        else
            return 0;
        return 1;
    }
    size_t i = 0;
    int neg = 0;
    if (i < len && p[i] == '-') {
        neg = 1;
        i++;
    }
    /* integer part: 0 or [1-9][0-9]* */
    size_t i0 = i;
    if (i >= len || p[i] < '0' || p[i] > '9')
        return 0;
    if (p[i] == '0')
        i++;
    else
        while (i < len && p[i] >= '0' && p[i] <= '9')
            i++;
    const char *ip = p + i0;
    size_t ni = i - i0;
    const char *fp = NULL;
    size_t nf = 0;
    if (i < len && p[i] == '.') {
        size_t f0 = ++i;
        while (i < len && p[i] >= '0' && p[i] <= '9')
            i++;
        if (i == f0)
            return 0;
        fp = p + f0;
        nf = i - f0;
    }
    int64_t e = 0;
    if (i < len && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        int eneg = 0;
        if (i < len && (p[i] == '+' || p[i] == '-'))
            eneg = p[i++] == '-';
        size_t e0 = i;
        for (; i < len && p[i] >= '0' && p[i] <= '9'; i++)
            if (e < ((int64_t)1 << 40))
                e = e * 10 + (p[i] - '0');
        if (i == e0)
            return 0;
        if (eneg)
            e = -e;
    }
    if (i != len)
        return 0;
    while (ni > 0 && ip[0] == '0') {
        ip++;
        ni--;
    }
    if (ni > 0) {
        d->a = ip;
        d->na = ni;
        d->b = fp;
        d->nb = nf;
        d->pt = (int64_t)ni + e;
    } else {
        size_t z = 0;
        while (z < nf && fp[z] == '0')
            z++;
        d->a = nf > 0 ? fp + z : ip; /* (no digits: a is not read) */
        d->na = nf - z;
        d->pt = e - (int64_t)z;
    }
    while (d->nb > 0 && d->b[d->nb - 1] == '0')
        d->nb--;
    if (d->nb == 0)
        while (d->na > 0 && d->a[d->na - 1] == '0')
            d->na--;
    d->sign = d->na + d->nb == 0 ? 0 : neg ? -1 : 1;
    return 1;
}

static inline char dec_digit(const dec *d, size_t k)
{
    return k < d->na ? d->a[k] : d->b[k - d->na];
}

/* -1, 0 or 1: x against y (PostgreSQL's order, NaN included). */
static int dec_cmp(const dec *x, const dec *y)
{
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    if (x->kind != DEC_FIN)
        return 0;
    if (x->sign != y->sign)
        return x->sign < y->sign ? -1 : 1;
    if (x->sign == 0)
        return 0;
    int mag;
    if (x->pt != y->pt) {
        mag = x->pt < y->pt ? -1 : 1;
    } else {
        size_t nx = x->na + x->nb, ny = y->na + y->nb, n = nx < ny ? nx : ny, k = 0;
        mag = 0;
        /* the integer digits side by side first (memcmp), then one by one */
        if (x->na == y->na) {
            int c = memcmp(x->a, y->a, x->na);
            if (c != 0)
                mag = c < 0 ? -1 : 1;
            k = x->na;
        }
        for (; mag == 0 && k < n; k++) {
            char cx = dec_digit(x, k), cy = dec_digit(y, k);
            if (cx != cy)
                mag = cx < cy ? -1 : 1;
        }
        if (mag == 0 && nx != ny) /* no trailing zeros: the longer is larger */
            mag = nx < ny ? -1 : 1;
    }
    return x->sign < 0 ? -mag : mag;
}

/* A number, or a string holding one (a PostgreSQL numeric, a bigint as a
 * string, "Infinity"...), as a dec: 1, or 0 when it is neither. */
static inline int span_dec(const wh_json_span *sp, dec *d)
{
    if (sp->type == WH_JSON_NUMBER)
        return dec_parse(sp->p, sp->len, 0, d);
    if (sp->type == WH_JSON_STRING && sp->len >= 3)
        return dec_parse(sp->p + 1, sp->len - 2, 1, d);
    return 0;
}

/* ---- compile: lexer ---- */

typedef enum {
    T_END,
    T_IDENT,
    T_STR,
    T_NUM,
    T_OR,
    T_AND,
    T_NOT,
    T_LP,
    T_RP,
    T_LB,
    T_RB,
    T_COMMA,
    T_EQ,
    T_NE,
    T_LT,
    T_LE,
    T_GT,
    T_GE,
    T_IN,
    T_STARTSWITH,
    T_TRUE,
    T_FALSE,
    T_NULL,
    T_BAD
} tok_kind;

typedef struct {
    wh_filter *f;
    const char *s;
    size_t len;
    size_t pos;   /* lexer position */
    tok_kind tok; /* current token */
    size_t tpos;  /* its start */
    size_t tlen;
    const char *tstr; /* T_STR: decoded into the pool; T_IDENT: source */
    size_t tstrlen;
    dec tnum;
    int depth;
    char *err;
    size_t errlen;
} parser;

static int perr(parser *p, size_t at, const char *what)
{
    return wh_seterr(p->err, p->errlen, "filter.expression: position %zu: %s", at + 1, what);
}

static const char *tok_text(tok_kind t)
{
    switch (t) {
    case T_END:
        return "the end";
    case T_OR:
        return "'||'";
    case T_AND:
        return "'&&'";
    case T_RP:
        return "')'";
    case T_RB:
        return "']'";
    case T_COMMA:
        return "','";
    default:
        return "a token";
    }
}

static int is_ident0(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_ident(char c)
{
    return is_ident0(c) || (c >= '0' && c <= '9');
}

static int lex(parser *p)
{
    const char *s = p->s;
    size_t i = p->pos;
    while (i < p->len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    p->tpos = i;
    if (i >= p->len) {
        p->tok = T_END;
        p->pos = i;
        return WH_OK;
    }
    char c = s[i];
    char d = i + 1 < p->len ? s[i + 1] : '\0';
    size_t n = 1;
    tok_kind t = T_BAD;
    if (c == '|' && d == '|')
        t = T_OR, n = 2;
    else if (c == '&' && d == '&')
        t = T_AND, n = 2;
    else if (c == '=' && d == '=')
        t = T_EQ, n = 2;
    else if (c == '!' && d == '=')
        t = T_NE, n = 2;
    else if (c == '<' && d == '=')
        t = T_LE, n = 2;
    else if (c == '>' && d == '=')
        t = T_GE, n = 2;
    else if (c == '!')
        t = T_NOT;
    else if (c == '<')
        t = T_LT;
    else if (c == '>')
        t = T_GT;
    else if (c == '(')
        t = T_LP;
    else if (c == ')')
        t = T_RP;
    else if (c == '[')
        t = T_LB;
    else if (c == ']')
        t = T_RB;
    else if (c == ',')
        t = T_COMMA;
    if (t != T_BAD) {
        p->tok = t;
        p->tlen = n;
        p->pos = i + n;
        return WH_OK;
    }
    if (c == '"' || c == '\'') {
        char *out = p->f->pool + p->f->poollen;
        size_t o = 0, j = i + 1;
        for (;;) {
            if (j >= p->len)
                return perr(p, i, "unterminated string");
            char ch = s[j];
            if (ch == c)
                break;
            if (ch == '\\') {
                if (j + 1 >= p->len)
                    return perr(p, i, "unterminated string");
                char e = s[j + 1];
                switch (e) {
                case 'n':
                    ch = '\n';
                    break;
                case 't':
                    ch = '\t';
                    break;
                case 'r':
                    ch = '\r';
                    break;
                case '\\':
                case '"':
                case '\'':
                    ch = e;
                    break;
                default:
                    return perr(p, j, "unknown escape in string (\\\\ \\\" \\' \\n \\t \\r)");
                }
                j += 2;
            } else {
                j++;
            }
            out[o++] = ch;
        }
        out[o] = '\0';
        p->f->poollen += o + 1;
        p->tok = T_STR;
        p->tstr = out;
        p->tstrlen = o;
        p->tlen = j + 1 - i;
        p->pos = j + 1;
        return WH_OK;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        size_t m = wh_json_number_len(s + i, p->len - i, NULL, NULL);
        if (m == 0 || (i + m < p->len && is_ident(s[i + m])))
            return perr(p, i, "bad number");
        /* its text kept in the pool: compared digit by digit (dec) */
        if (p->f->poollen + m + 1 > p->f->poolcap)
            return perr(p, i, "expression too long");
        char *out = p->f->pool + p->f->poollen;
        memcpy(out, s + i, m);
        out[m] = '\0';
        p->f->poollen += m + 1;
        if (!dec_parse(out, m, 0, &p->tnum))
            return perr(p, i, "bad number");
        p->tok = T_NUM;
        p->tlen = m;
        p->pos = i + m;
        return WH_OK;
    }
    if (is_ident0(c)) {
        size_t j = i;
        for (;;) {
            while (j < p->len && is_ident(s[j]))
                j++;
            if (j + 1 < p->len && s[j] == '.' && is_ident(s[j + 1])) {
                j++;
                continue;
            }
            break;
        }
        size_t m = j - i;
        p->tlen = m;
        p->pos = j;
        p->tstr = s + i;
        p->tstrlen = m;
        static const struct {
            const char *kw;
            tok_kind t;
        } kws[] = {{"in", T_IN},     {"startswith", T_STARTSWITH},
                   {"true", T_TRUE}, {"false", T_FALSE},
                   {"null", T_NULL}, {"and", T_AND},
                   {"or", T_OR},     {"not", T_NOT}};
        p->tok = T_IDENT;
        for (size_t k = 0; k < sizeof(kws) / sizeof(kws[0]); k++)
            if (strlen(kws[k].kw) == m && memcmp(kws[k].kw, s + i, m) == 0)
                p->tok = kws[k].t;
        return WH_OK;
    }
    return perr(p, i, "unexpected character");
}

/* ---- compile: parser ---- */

static int new_node(parser *p, node_kind k, int l, int r, int *out)
{
    wh_filter *f = p->f;
    if (f->nnodes >= WH_FILTER_NODES_MAX)
        return perr(p, p->tpos, "expression too complex");
    node *n = &f->nodes[f->nnodes];
    memset(n, 0, sizeof(*n));
    n->kind = k;
    n->l = l;
    n->r = r;
    *out = f->nnodes++;
    return WH_OK;
}

/* The current token as an operand (then advances). */
static int operand(parser *p, int *out)
{
    wh_filter *f = p->f;
    if (f->nopnds >= WH_FILTER_NODES_MAX)
        return perr(p, p->tpos, "expression too complex");
    opnd *o = &f->opnds[f->nopnds];
    memset(o, 0, sizeof(*o));
    switch (p->tok) {
    case T_STR:
        o->kind = O_STR;
        o->s = p->tstr;
        o->n = p->tstrlen;
        o->plain = memchr(o->s, '\\', o->n) == NULL;
        break;
    case T_NUM:
        o->kind = O_NUM;
        o->num = p->tnum;
        break;
    case T_TRUE:
    case T_FALSE:
        o->kind = O_BOOL;
        o->b = p->tok == T_TRUE;
        break;
    case T_NULL:
        o->kind = O_NULL;
        break;
    case T_IDENT: {
        o->kind = O_PATH;
        size_t i = 0;
        const char *s = p->tstr;
        while (i < p->tstrlen) {
            size_t j = i;
            while (j < p->tstrlen && s[j] != '.')
                j++;
            if (o->nseg >= WH_FILTER_PATH_MAX)
                return perr(p, p->tpos, "path has too many segments");
            o->seg[o->nseg] = s + i;
            o->seglen[o->nseg] = j - i;
            o->nseg++;
            i = j + 1;
        }
        break;
    }
    default:
        return perr(p, p->tpos,
                    "expected a value (a path like after.amount, a string, "
                    "a number, true, false or null)");
    }
    *out = f->nopnds++;
    return lex(p);
}

static int parse_or(parser *p, int *out);

static int parse_cmp(parser *p, int *out)
{
    int a, b, n;
    if (operand(p, &a) != WH_OK)
        return WH_ERR;
    tok_kind t = p->tok;
    if (t >= T_EQ && t <= T_GE) {
        size_t at = p->tpos;
        if (lex(p) != WH_OK)
            return WH_ERR;
        if (p->tok == T_END)
            return perr(p, at, "expected a value after the comparison");
        if (operand(p, &b) != WH_OK || new_node(p, N_CMP, a, b, &n) != WH_OK)
            return WH_ERR;
        p->f->nodes[n].cmp = (cmp_kind)(C_EQ + (t - T_EQ));
        *out = n;
        return WH_OK;
    }
    if (t == T_IN) {
        if (lex(p) != WH_OK)
            return WH_ERR;
        if (p->tok != T_LB)
            return perr(p, p->tpos, "expected '[' after 'in'");
        if (lex(p) != WH_OK || new_node(p, N_IN, a, -1, &n) != WH_OK)
            return WH_ERR;
        p->f->nodes[n].list = p->f->nopnds;
        for (;;) {
            if (p->tok == T_IDENT)
                return perr(p, p->tpos,
                            "'in' lists hold literals (strings, numbers, "
                            "true, false, null)");
            if (operand(p, &b) != WH_OK)
                return WH_ERR;
            p->f->nodes[n].nlist++;
            if (p->tok == T_RB)
                break;
            if (p->tok != T_COMMA)
                return perr(p, p->tpos, "expected ',' or ']' in the 'in' list");
            if (lex(p) != WH_OK)
                return WH_ERR;
        }
        *out = n;
        return lex(p);
    }
    if (t == T_STARTSWITH) {
        if (lex(p) != WH_OK)
            return WH_ERR;
        if (p->tok != T_STR)
            return perr(p, p->tpos, "expected a string after 'startswith'");
        if (operand(p, &b) != WH_OK || new_node(p, N_PREFIX, a, b, &n) != WH_OK)
            return WH_ERR;
        *out = n;
        return WH_OK;
    }
    return new_node(p, N_TRUTHY, a, -1, out);
}

static int parse_unary(parser *p, int *out)
{
    if (++p->depth > WH_FILTER_DEPTH_MAX)
        return perr(p, p->tpos, "expression nested too deeply");
    int rc;
    if (p->tok == T_NOT) {
        int c;
        rc = lex(p);
        if (rc == WH_OK)
            rc = parse_unary(p, &c);
        if (rc == WH_OK)
            rc = new_node(p, N_NOT, c, -1, out);
    } else if (p->tok == T_LP) {
        size_t at = p->tpos;
        rc = lex(p);
        if (rc == WH_OK)
            rc = parse_or(p, out);
        if (rc == WH_OK && p->tok != T_RP)
            rc = perr(p, p->tpos, p->tok == T_END ? "missing ')'" : "expected ')'");
        (void)at;
        if (rc == WH_OK)
            rc = lex(p);
    } else {
        rc = parse_cmp(p, out);
    }
    p->depth--;
    return rc;
}

static int parse_and(parser *p, int *out)
{
    int l, r;
    if (parse_unary(p, &l) != WH_OK)
        return WH_ERR;
    while (p->tok == T_AND) {
        if (lex(p) != WH_OK || parse_unary(p, &r) != WH_OK || new_node(p, N_AND, l, r, &l) != WH_OK)
            return WH_ERR;
    }
    *out = l;
    return WH_OK;
}

static int parse_or(parser *p, int *out)
{
    int l, r;
    if (parse_and(p, &l) != WH_OK)
        return WH_ERR;
    while (p->tok == T_OR) {
        if (lex(p) != WH_OK || parse_and(p, &r) != WH_OK || new_node(p, N_OR, l, r, &l) != WH_OK)
            return WH_ERR;
    }
    *out = l;
    return WH_OK;
}

static int compile_expr(wh_filter *f, const char *expr, char *err, size_t errlen)
{
    size_t len = strlen(expr);
    if (len > WH_FILTER_EXPR_MAX)
        return wh_seterr(err, errlen, "filter.expression: longer than %d bytes",
                         WH_FILTER_EXPR_MAX);
    f->nodes = calloc(WH_FILTER_NODES_MAX, sizeof(node));
    f->opnds = calloc(WH_FILTER_NODES_MAX, sizeof(opnd));
    /* decoded literals are never longer than their source; one NUL each */
    f->poolcap = 2 * len + 2;
    f->pool = malloc(f->poolcap);
    if (!f->nodes || !f->opnds || !f->pool)
        return wh_seterr(err, errlen, "filter.expression: out of memory");
    parser p = {.f = f, .s = expr, .len = len, .err = err, .errlen = errlen};
    if (lex(&p) != WH_OK)
        return WH_ERR;
    if (p.tok == T_END) {
        f->root = -1;
        return WH_OK;
    }
    if (parse_or(&p, &f->root) != WH_OK)
        return WH_ERR;
    if (p.tok != T_END) {
        char what[96];
        snprintf(what, sizeof(what), "unexpected %s (expected '&&', '||' or the end)",
                 p.tok == T_RP || p.tok == T_RB || p.tok == T_COMMA ? tok_text(p.tok) : "token");
        return perr(&p, p.tpos, what);
    }
    for (int i = 0; i < f->nopnds; i++) {
        opnd *o = &f->opnds[i];
        o->head = -1;
        if (o->kind != O_PATH || o->nseg == 0)
            continue;
        for (int h = 0; h < f->nheads && o->head < 0; h++)
            if (f->headlen[h] == o->seglen[0] && memcmp(f->heads[h], o->seg[0], o->seglen[0]) == 0)
                o->head = h;
        if (o->head < 0 && f->nheads < WH_FILTER_HEADS_MAX) {
            f->heads[f->nheads] = o->seg[0];
            f->headlen[f->nheads] = o->seglen[0];
            f->headslot[f->nheads] = ev_slot_raw(o->seg[0], o->seglen[0]);
            if (f->headslot[f->nheads] < 0)
                f->unindexed |= 1u << f->nheads;
            o->head = f->nheads++;
        }
        o->sub = -1;
        int slot = o->head >= 0 ? f->headslot[o->head] : -1;
        if (o->nseg < 2 || (slot != WH_EV_KEY && slot != WH_EV_BEFORE && slot != WH_EV_AFTER))
            continue;
        for (int j = 0; j < f->nsubs && o->sub < 0; j++)
            if (f->sub_slot[j] == slot && f->sub_namelen[j] == o->seglen[1] &&
                memcmp(f->sub_name[j], o->seg[1], o->seglen[1]) == 0)
                o->sub = j;
        if (o->sub < 0 && f->nsubs < WH_EVX_SUB_MAX) {
            f->sub_slot[f->nsubs] = slot;
            f->sub_name[f->nsubs] = o->seg[1];
            f->sub_namelen[f->nsubs] = o->seglen[1];
            f->sub_heads |= 1u << slot;
            o->sub = f->nsubs++;
        }
    }
    for (int i = 0; i < f->nnodes; i++) {
        node *n = &f->nodes[i];
        n->fk = FK_NONE;
        if (n->kind != N_CMP)
            continue;
        const opnd *lo = &f->opnds[n->l], *ro = &f->opnds[n->r];
        if (lo->kind != O_PATH || lo->head < 0 || lo->nseg < 1 || lo->nseg > 2 ||
            (lo->nseg == 2 && lo->sub < 0))
            continue;
        n->head = lo->head;
        n->sub = lo->nseg == 2 ? lo->sub : -1;
        if (ro->kind == O_NUM) {
            n->fk = FK_NUM;
            n->num = ro->num;
        } else if (ro->kind == O_STR && ro->plain && (n->cmp == C_EQ || n->cmp == C_NE)) {
            n->fk = FK_STR;
            n->s = ro->s;
            n->sn = ro->n;
        }
    }
    return WH_OK;
}

static int copy_names(const char *part, const char *const *in, size_t n, name **out, size_t *nout,
                      char *err, size_t errlen)
{
    if (n > WH_FILTER_LIST_MAX)
        return wh_seterr(err, errlen, "filter.%s: more than %d entries", part, WH_FILTER_LIST_MAX);
    if (n == 0)
        return WH_OK;
    *out = calloc(n, sizeof(name));
    if (!*out)
        return wh_seterr(err, errlen, "filter.%s: out of memory", part);
    for (size_t i = 0; i < n; i++) {
        if (in[i] == NULL || in[i][0] == '\0')
            return wh_seterr(err, errlen, "filter.%s[%zu]: empty name", part, i);
        (*out)[i].s = strdup(in[i]);
        if (!(*out)[i].s)
            return wh_seterr(err, errlen, "filter.%s: out of memory", part);
        (*out)[i].n = strlen(in[i]);
        (*nout)++;
    }
    return WH_OK;
}

static void free_names(name *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].s);
    free(v);
}

void wh_filter_free(wh_filter *f)
{
    if (!f)
        return;
    free_names(f->tables, f->ntables);
    free_names(f->include, f->ninclude);
    free_names(f->exclude, f->nexclude);
    free(f->nodes);
    free(f->opnds);
    free(f->pool);
    free(f);
}

int wh_filter_compile(const wh_filter_spec *spec, wh_filter **out, char *err, size_t errlen)
{
    *out = NULL;
    int has_expr = spec->expr && spec->expr[strspn(spec->expr, " \t\r\n")] != '\0';
    if (spec->ntables == 0 && spec->noperations == 0 && spec->ncolumns_include == 0 &&
        spec->ncolumns_exclude == 0 && !has_expr)
        return WH_OK;
    if (spec->ncolumns_include > 0 && spec->ncolumns_exclude > 0)
        return wh_seterr(err, errlen, "filter.columns: give include or exclude, not both");
    wh_filter *f = calloc(1, sizeof(*f));
    if (!f)
        return wh_seterr(err, errlen, "filter: out of memory");
    f->root = -1;
    if (copy_names("tables", spec->tables, spec->ntables, &f->tables, &f->ntables, err, errlen) ||
        copy_names("columns.include", spec->columns_include, spec->ncolumns_include, &f->include,
                   &f->ninclude, err, errlen) ||
        copy_names("columns.exclude", spec->columns_exclude, spec->ncolumns_exclude, &f->exclude,
                   &f->nexclude, err, errlen))
        goto error;
    for (size_t i = 0; i < spec->noperations; i++) {
        const char *o = spec->operations[i];
        unsigned bit = 0;
        for (size_t k = 0; o && k < sizeof(op_names) / sizeof(op_names[0]); k++)
            if (strcmp(o, op_names[k].name) == 0)
                bit = op_names[k].bit;
        if (!bit) {
            wh_seterr(err, errlen,
                      "filter.operations[%zu]: unknown operation \"%.32s\" (insert, read, "
                      "update, delete, truncate, message, schema, ddl)",
                      i, o ? o : "");
            goto error;
        }
        /* a snapshot or backfill row is the insert of a row that existed
         * before: a list naming insert passes it too */
        f->ops |= bit == OPM_INSERT ? OPM_INSERT | OPM_READ : bit;
    }
    if (has_expr && compile_expr(f, spec->expr, err, errlen) != WH_OK)
        goto error;
    *out = f;
    return WH_OK;
error:
    wh_filter_free(f);
    return WH_ERR;
}

/* Splits a comma-separated list in place into v (at most max). */
static size_t split_list(char *s, const char **v, size_t max)
{
    size_t n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(s, ", ", &save); tok != NULL && n < max;
         tok = strtok_r(NULL, ", ", &save))
        v[n++] = tok;
    return n;
}

int wh_filter_names_op(const wh_filter *f, const char *op)
{
    for (size_t k = 0; f != NULL && k < sizeof(op_names) / sizeof(op_names[0]); k++)
        if (strcmp(op, op_names[k].name) == 0)
            return (f->ops & op_names[k].bit) != 0;
    return 0;
}

int wh_filter_compile_lists(const char *tables, const char *operations, const char *include,
                            const char *exclude, const char *expr, wh_filter **out, char *err,
                            size_t errlen)
{
    *out = NULL;
    const char *src[4] = {tables, operations, include, exclude};
    char *copy[4] = {NULL, NULL, NULL, NULL};
    const char **v[4] = {NULL, NULL, NULL, NULL};
    size_t n[4] = {0, 0, 0, 0};
    int rc = WH_ERR;
    for (int i = 0; i < 4; i++) {
        if (src[i] == NULL || src[i][0] == '\0')
            continue;
        copy[i] = strdup(src[i]);
        v[i] = calloc(WH_FILTER_LIST_MAX, sizeof(*v[i]));
        if (copy[i] == NULL || v[i] == NULL) {
            wh_seterr(err, errlen, "filter: out of memory");
            goto done;
        }
        n[i] = split_list(copy[i], v[i], WH_FILTER_LIST_MAX);
    }
    wh_filter_spec spec;
    memset(&spec, 0, sizeof(spec));
    spec.tables = v[0];
    spec.ntables = n[0];
    spec.operations = v[1];
    spec.noperations = n[1];
    spec.columns_include = v[2];
    spec.ncolumns_include = n[2];
    spec.columns_exclude = v[3];
    spec.ncolumns_exclude = n[3];
    spec.expr = expr;
    rc = wh_filter_compile(&spec, out, err, errlen);
done:
    for (int i = 0; i < 4; i++) {
        free(copy[i]);
        free(v[i]);
    }
    return rc;
}

/* ---- evaluation ---- */

typedef enum { V_NULL, V_BOOL, V_NUM, V_SPAN, V_LIT, V_OTHER } val_kind;

typedef struct {
    val_kind kind;
    int b;
    dec num;         /* V_NUM */
    wh_json_span sp; /* V_SPAN: a string span */
    const char *s;   /* V_LIT */
    size_t n;
} val;

/* The value of the path o in the event: 1 and *cur, or 0 when missing. */
static inline __attribute__((always_inline)) int path_get(const opnd *o, const ectx *x,
                                                          wh_json_span *cur)
{
    *cur = *x->ev;
    int i = 0;
    if (o->head >= 0) {
        if (!(x->found & (1u << o->head)))
            return 0;
        *cur = x->hv[o->head];
        i = 1;
        if (o->sub >= 0) { /* head.member: found in the event's walk */
            if (!(x->xi->sub_found & (1u << o->sub)))
                return 0;
            cur->p = x->json + x->xi->sub_off[o->sub];
            cur->len = x->xi->sub_len[o->sub];
            cur->type = (wh_json_type)x->xi->sub_type[o->sub];
            i = 2;
        }
    }
    for (; i < o->nseg; i++) {
        wh_json_span next;
        if (wh_json_span_get(cur, o->seg[i], o->seglen[i], &next) != WH_OK)
            return 0;
        *cur = next;
    }
    return 1;
}

static void resolve(const opnd *o, const ectx *x, val *v)
{
    switch (o->kind) {
    case O_STR:
        v->kind = V_LIT;
        v->s = o->s;
        v->n = o->n;
        return;
    case O_NUM:
        v->kind = V_NUM;
        v->num = o->num;
        return;
    case O_BOOL:
        v->kind = V_BOOL;
        v->b = o->b;
        return;
    case O_NULL:
        v->kind = V_NULL;
        return;
    case O_PATH:
        break;
    }
    wh_json_span cur;
    if (!path_get(o, x, &cur)) {
        v->kind = V_NULL;
        return;
    }
    switch (cur.type) {
    case WH_JSON_NULL:
        v->kind = V_NULL;
        break;
    case WH_JSON_BOOL:
        v->kind = V_BOOL;
        v->b = cur.p[0] == 't';
        break;
    case WH_JSON_NUMBER:
        v->kind = span_dec(&cur, &v->num) ? V_NUM : V_OTHER;
        break;
    case WH_JSON_STRING:
        v->kind = V_SPAN;
        v->sp = cur;
        break;
    default:
        v->kind = V_OTHER;
        break;
    }
}

static int is_str(const val *v)
{
    return v->kind == V_SPAN || v->kind == V_LIT;
}

static int as_num(const val *v, dec *out)
{
    if (v->kind == V_NUM) {
        *out = v->num;
        return 1;
    }
    if (v->kind == V_SPAN)
        return span_dec(&v->sp, out);
    return 0;
}

/* <0, 0, >0, or 2 when not comparable. */
static int str_cmp(const val *a, const val *b)
{
    if (a->kind == V_LIT && b->kind == V_LIT) {
        size_t n = a->n < b->n ? a->n : b->n;
        int c = memcmp(a->s, b->s, n);
        if (c)
            return c < 0 ? -1 : 1;
        return a->n < b->n ? -1 : a->n > b->n;
    }
    if (a->kind == V_SPAN && b->kind == V_LIT)
        return wh_json_span_strcmp(&a->sp, b->s, b->n);
    if (a->kind == V_LIT && b->kind == V_SPAN) {
        int c = wh_json_span_strcmp(&b->sp, a->s, a->n);
        return c == 2 ? 2 : -c;
    }
    return wh_json_span_strcmp_span(&a->sp, &b->sp);
}

/* <0, 0, >0, or 2 when not comparable (ordering). */
static int order(const val *a, const val *b)
{
    dec x, y;
    if ((a->kind == V_NUM || b->kind == V_NUM) && as_num(a, &x) && as_num(b, &y))
        return dec_cmp(&x, &y);
    if (is_str(a) && is_str(b))
        return str_cmp(a, b);
    return 2;
}

static int equal(const val *a, const val *b)
{
    if (a->kind == V_NULL || b->kind == V_NULL)
        return a->kind == b->kind;
    if (a->kind == V_BOOL || b->kind == V_BOOL)
        return a->kind == b->kind && a->b == b->b;
    return order(a, b) == 0;
}

/* 1 when the string span sp, escapes decoded, is lit[0..n) (lit without a
 * backslash): raw bytes equal to lit are lit; otherwise only an escaped
 * string, whose raw text is longer than its decoded form, can be. */
static int span_eq_plain(const wh_json_span *sp, const char *lit, size_t n)
{
    size_t rn = sp->len - 2;
    if (rn == n)
        return same_bytes(sp->p + 1, lit, n);
    return rn > n && memchr(sp->p + 1, '\\', rn) != NULL && wh_json_span_strcmp(sp, lit, n) == 0;
}

static int eval(const wh_filter *f, int ni, const ectx *ev, int depth);

/* A comparison node. */
static inline __attribute__((always_inline)) int eval_cmp(const wh_filter *f, const node *n,
                                                          const ectx *ev)
{
    val a, b;
    int c;
    if (n->fk != FK_NONE) {
        /* path_get for a head (and sub-member) path, from the node */
        wh_json_span sp;
        int have = (ev->found >> n->head) & 1u;
        if (have) {
            sp = ev->hv[n->head];
            if (n->sub >= 0) {
                have = (ev->xi->sub_found >> n->sub) & 1u;
                if (have) {
                    sp.p = ev->json + ev->xi->sub_off[n->sub];
                    sp.len = ev->xi->sub_len[n->sub];
                    sp.type = (wh_json_type)ev->xi->sub_type[n->sub];
                }
            }
        }
        if (n->fk == FK_STR) { /* as below */
            int eq = have && sp.type == WH_JSON_STRING && span_eq_plain(&sp, n->s, n->sn);
            return n->cmp == C_EQ ? eq : !eq;
        }
        dec d;
        c = have && span_dec(&sp, &d) ? dec_cmp(&d, &n->num) : 2;
        goto ordered;
    }
    const opnd *lo = &f->opnds[n->l], *ro = &f->opnds[n->r];
    if (lo->kind == O_PATH && ro->kind == O_NUM) {
        /* a member against a number (after.amount > 100): what order()
         * decides for a resolved path and V_NUM, without the values: a
         * number or a string holding one compares numerically, anything
         * else (missing, null, bool, object...) is not comparable */
        wh_json_span sp;
        dec d;
        c = path_get(lo, ev, &sp) && span_dec(&sp, &d) ? dec_cmp(&d, &ro->num) : 2;
        goto ordered;
    }
    if (lo->kind == O_PATH && ro->kind == O_STR && ro->plain &&
        (n->cmp == C_EQ || n->cmp == C_NE)) {
        /* a member against a string literal (table == "orders"): what
         * equal() decides, without decoding unless escaped; only a
         * string equals a string */
        wh_json_span sp;
        int eq =
            path_get(lo, ev, &sp) && sp.type == WH_JSON_STRING && span_eq_plain(&sp, ro->s, ro->n);
        return n->cmp == C_EQ ? eq : !eq;
    }
    resolve(lo, ev, &a);
    resolve(ro, ev, &b);
    if (n->cmp == C_EQ)
        return equal(&a, &b);
    if (n->cmp == C_NE)
        return !equal(&a, &b);
    c = order(&a, &b);
ordered:
    if (n->cmp == C_EQ)
        return c == 0;
    if (n->cmp == C_NE)
        return c != 0;
    if (c == 2)
        return 0;
    switch (n->cmp) {
    case C_LT:
        return c < 0;
    case C_LE:
        return c <= 0;
    case C_GT:
        return c > 0;
    default:
        return c >= 0;
    }
}

/* The nodes other than comparisons, && and ||. */
static int eval_other(const wh_filter *f, const node *n, const ectx *ev, int depth)
{
    val a, b;
    switch (n->kind) {
    case N_NOT:
        return !eval(f, n->l, ev, depth + 1);
    case N_TRUTHY:
        resolve(&f->opnds[n->l], ev, &a);
        return a.kind == V_BOOL && a.b;
    case N_PREFIX:
        resolve(&f->opnds[n->l], ev, &a);
        if (a.kind == V_SPAN)
            return wh_json_span_hasprefix(&a.sp, f->opnds[n->r].s, f->opnds[n->r].n);
        if (a.kind == V_LIT)
            return a.n >= f->opnds[n->r].n && memcmp(a.s, f->opnds[n->r].s, f->opnds[n->r].n) == 0;
        return 0;
    case N_IN:
        resolve(&f->opnds[n->l], ev, &a);
        for (int i = 0; i < n->nlist; i++) {
            resolve(&f->opnds[n->list + i], ev, &b);
            if (equal(&a, &b))
                return 1;
        }
        return 0;
    default:
        return 0;
    }
}

/* && and || chains are followed in a loop (their right operands), the
 * common leaves tested before the others: what the recursive switch over
 * every node kind decides, with the same depth bound. */
static int eval(const wh_filter *f, int ni, const ectx *ev, int depth)
{
    for (;;) {
        const node *n = &f->nodes[ni];
        if (depth > 2 * WH_FILTER_DEPTH_MAX + WH_FILTER_NODES_MAX)
            return 0;
        if (n->kind == N_CMP)
            return eval_cmp(f, n, ev);
        if (n->kind == N_AND) {
            if (!eval(f, n->l, ev, depth + 1))
                return 0;
        } else if (n->kind == N_OR) {
            if (eval(f, n->l, ev, depth + 1))
                return 1;
        } else {
            return eval_other(f, n, ev, depth);
        }
        ni = n->r;
        depth++;
    }
}

static int tables_match(const wh_filter *f, const char *json, const wh_evidx *x)
{
    wh_json_span t, s;
    if (wh_evidx_get(x, json, WH_EV_TABLE, &t) != WH_OK || t.type != WH_JSON_STRING)
        return 1; /* no table (a logical message): not subject to tables */
    char table[256], full[520];
    size_t tn, sn = 0;
    if (wh_json_span_str(&t, table, sizeof(table), &tn) != WH_OK)
        return 0;
    full[0] = '\0';
    if (wh_evidx_get(x, json, WH_EV_SCHEMA, &s) == WH_OK && s.type == WH_JSON_STRING &&
        wh_json_span_str(&s, full, 256, &sn) == WH_OK) {
        full[sn] = '.';
        memcpy(full + sn + 1, table, tn + 1);
    }
    for (size_t i = 0; i < f->ntables; i++) {
        const char *pat = f->tables[i].s;
        const char *subject = strchr(pat, '.') ? full : table;
        if (fnmatch(pat, subject, 0) == 0)
            return 1;
    }
    return 0;
}

static int ops_match(const wh_filter *f, const char *json, const wh_evidx *x)
{
    wh_json_span o;
    if (wh_evidx_get(x, json, WH_EV_OP, &o) != WH_OK)
        return 0;
    for (size_t k = 0; k < sizeof(op_names) / sizeof(op_names[0]); k++)
        if (wh_json_span_strcmp(&o, op_names[k].name, strlen(op_names[k].name)) == 0)
            return (f->ops & op_names[k].bit) != 0;
    return 0;
}

int wh_json_object(const char *json, size_t len, wh_json_span *out)
{
    if (json == NULL)
        return WH_ERR;
    while (len > 0 && (*json == ' ' || *json == '\n' || *json == '\t' || *json == '\r')) {
        json++;
        len--;
    }
    while (len > 0 && (json[len - 1] == ' ' || json[len - 1] == '\n' || json[len - 1] == '\t' ||
                       json[len - 1] == '\r'))
        len--;
    if (len < 2 || json[0] != '{' || json[len - 1] != '}')
        return WH_ERR;
    out->p = json;
    out->len = len;
    out->type = WH_JSON_OBJECT;
    return WH_OK;
}

int wh_filter_match(const wh_filter *f, const char *json, size_t len)
{
    wh_evidx x;
    return wh_filter_match_ix(f, json, len, &x);
}

int wh_filter_match_ix(const wh_filter *f, const char *json, size_t len, wh_evidx *xi)
{
    xi->state = WH_EVX_NONE;
    if (!f)
        return 1;
    evidx_build(f, json, len, xi);
    if (xi->state == WH_EVX_NOTOBJ)
        return 1;
    if (f->ops && !ops_match(f, json, xi))
        return 0;
    if (f->ntables && !tables_match(f, json, xi))
        return 0;
    if (f->root >= 0) {
        wh_json_span ev = {json + xi->ev_off, xi->ev_len, WH_JSON_OBJECT};
        ectx x;
        x.json = json;
        x.xi = xi;
        x.ev = &ev;
        x.found = 0;
        for (int h = 0; h < f->nheads; h++)
            if (f->headslot[h] >= 0 && wh_evidx_get(xi, json, f->headslot[h], &x.hv[h]) == WH_OK)
                x.found |= 1u << h;
        if (f->unindexed) {
            /* heads the index does not cover (seq, unchanged, options...):
             * one more walk, stopping when they are found */
            unsigned all = x.found | f->unindexed;
            size_t pos = 0;
            wh_json_span k, v;
            while (x.found != all && wh_json_span_next(&ev, &pos, &k, &v) == 1) {
                for (int h = 0; h < f->nheads; h++) {
                    if (!(f->unindexed & (1u << h)) || (x.found & (1u << h)) ||
                        wh_json_span_strcmp(&k, f->heads[h], f->headlen[h]) != 0)
                        continue;
                    x.hv[h] = v;
                    x.found |= 1u << h;
                    break;
                }
            }
        }
        if (!eval(f, f->root, &x, 0))
            return 0;
    }
    return 1;
}

/* ---- columns ---- */

int wh_filter_has_columns(const wh_filter *f)
{
    return f && (f->ninclude || f->nexclude);
}

int wh_filter_column_keep(const wh_filter *f, const wh_json_span *key)
{
    if (!wh_filter_has_columns(f))
        return 1;
    const name *v = f->ninclude ? f->include : f->exclude;
    size_t n = f->ninclude ? f->ninclude : f->nexclude;
    for (size_t i = 0; i < n; i++)
        if (wh_json_span_strcmp(key, v[i].s, v[i].n) == 0)
            return f->ninclude != 0;
    return f->ninclude == 0;
}

int wh_filter_row(const wh_filter *f, const wh_json_span *row, wh_buf *out)
{
    if (row->type != WH_JSON_OBJECT || !wh_filter_has_columns(f))
        return wh_buf_append(out, row->p, row->len);
    size_t start = out->len, pos = 0;
    int first = 1, r;
    wh_json_span k, v;
    if (wh_buf_putc(out, '{'))
        goto error;
    while ((r = wh_json_span_next(row, &pos, &k, &v)) == 1) {
        if (!wh_filter_column_keep(f, &k))
            continue;
        if ((!first && wh_buf_putc(out, ',')) || wh_buf_append(out, k.p, k.len) ||
            wh_buf_putc(out, ':') || wh_buf_append(out, v.p, v.len))
            goto error;
        first = 0;
    }
    if (r < 0 || wh_buf_putc(out, '}'))
        goto error;
    return WH_OK;
error:
    out->len = start;
    return WH_ERR;
}

static int unchanged(const wh_filter *f, const wh_json_span *arr, wh_buf *out)
{
    if (arr->type != WH_JSON_ARRAY)
        return wh_buf_append(out, arr->p, arr->len);
    size_t pos = 0;
    int first = 1, r;
    wh_json_span v;
    if (wh_buf_putc(out, '['))
        return WH_ERR;
    while ((r = wh_json_span_next(arr, &pos, NULL, &v)) == 1) {
        if (v.type == WH_JSON_STRING && !wh_filter_column_keep(f, &v))
            continue;
        if ((!first && wh_buf_putc(out, ',')) || wh_buf_append(out, v.p, v.len))
            return WH_ERR;
        first = 0;
    }
    return r < 0 ? WH_ERR : wh_buf_putc(out, ']');
}

int wh_filter_rewrite(const wh_filter *f, const char *json, size_t len, wh_buf *out)
{
    wh_json_span ev;
    if (wh_json_span_value(json, len, &ev) != WH_OK || ev.type != WH_JSON_OBJECT)
        return WH_ERR;
    if (!wh_filter_has_columns(f))
        return wh_buf_append(out, ev.p, ev.len);
    size_t start = out->len, pos = 0;
    int first = 1, r;
    wh_json_span k, v;
    if (wh_buf_putc(out, '{'))
        goto error;
    while ((r = wh_json_span_next(&ev, &pos, &k, &v)) == 1) {
        if ((!first && wh_buf_putc(out, ',')) || wh_buf_append(out, k.p, k.len) ||
            wh_buf_putc(out, ':'))
            goto error;
        first = 0;
        int rc;
        /* key is the row's identity: kept whole (as Debezium keeps the
         * message key), the lists apply to the rows */
        if (wh_json_span_strcmp(&k, "before", 6) == 0 || wh_json_span_strcmp(&k, "after", 5) == 0)
            rc = wh_filter_row(f, &v, out);
        else if (wh_json_span_strcmp(&k, "unchanged", 9) == 0)
            rc = unchanged(f, &v, out);
        else
            rc = wh_buf_append(out, v.p, v.len);
        if (rc != WH_OK)
            goto error;
    }
    if (r < 0 || wh_buf_putc(out, '}'))
        goto error;
    return WH_OK;
error:
    out->len = start;
    return WH_ERR;
}
