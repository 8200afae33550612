/* wh_cfgscan: linear structure walk of a libconfig file. See wh_cfgscan.h. */
#include "wh_cfgscan.h"

#include <stdio.h>
#include <string.h>

enum { T_EOF, T_WORD, T_STRING, T_PUNCT, T_BAD };

typedef struct tok {
    int kind;
    char c; /* T_PUNCT: the character */
    const char *s;
    size_t n; /* T_WORD: the word */
    int line;
} tok;

/* Walk results: go on, give up quietly (libconfig decides), fn said stop. */
enum { R_OK, R_GIVEUP, R_STOP };

typedef struct scan {
    const char *p, *end;
    int line;
    tok peeked;
    int have_peek;
    wh_cfgscan_fn fn;
    void *arg;
    int depth;
    char path[WH_CFGSCAN_PATH_MAX];
    size_t plen;
} scan;

static int is_word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '*' || c == '+' || c == '-' || c == '.';
}

/* libconfig's name: [A-Za-z*][-A-Za-z0-9_*]* */
static int is_name(const tok *t)
{
    char c = t->s[0];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '*'))
        return 0;
    for (size_t i = 1; i < t->n; i++)
        if (t->s[i] == '+' || t->s[i] == '.')
            return 0;
    return 1;
}

static void lex(scan *s, tok *t)
{
    const char *p = s->p, *end = s->end;
    for (;;) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' || *p == '\f')) {
            if (*p == '\n')
                s->line++;
            p++;
        }
        if (p < end && (*p == '#' || (*p == '/' && p + 1 < end && p[1] == '/'))) {
            while (p < end && *p != '\n')
                p++;
            continue;
        }
        if (p + 1 < end && p[0] == '/' && p[1] == '*') {
            p += 2;
            while (p + 1 < end && !(p[0] == '*' && p[1] == '/')) {
                if (*p == '\n')
                    s->line++;
                p++;
            }
            if (p + 1 >= end) {
                t->kind = T_BAD; /* unterminated comment */
                s->p = end;
                return;
            }
            p += 2;
            continue;
        }
        break;
    }
    t->line = s->line;
    t->s = p;
    t->n = 0;
    if (p >= end) {
        t->kind = T_EOF;
    } else if (*p == '"') {
        t->kind = T_STRING;
        for (p++; p < end && *p != '"'; p++) {
            if (*p == '\\' && p + 1 < end)
                p++;
            if (*p == '\n')
                s->line++;
        }
        if (p >= end)
            t->kind = T_BAD; /* unterminated string */
        else
            p++;
    } else if (strchr("=:;,{}()[]", *p) != NULL) {
        t->kind = T_PUNCT;
        t->c = *p++;
    } else if (is_word_char(*p)) {
        t->kind = T_WORD;
        while (p < end && is_word_char(*p))
            p++;
        t->n = (size_t)(p - t->s);
    } else {
        t->kind = T_BAD; /* '@include', a stray byte, a NUL */
    }
    s->p = p;
}

static void next(scan *s, tok *t)
{
    if (s->have_peek) {
        *t = s->peeked;
        s->have_peek = 0;
        return;
    }
    lex(s, t);
}

static const tok *peek(scan *s)
{
    if (!s->have_peek) {
        lex(s, &s->peeked);
        s->have_peek = 1;
    }
    return &s->peeked;
}

static int is_punct(const tok *t, char c)
{
    return t->kind == T_PUNCT && t->c == c;
}

/* Appends ".name" (or "name" at the root) or "[k]" to the path. */
static int path_push(scan *s, const char *name, size_t n, int index)
{
    size_t room = sizeof(s->path) - s->plen;
    int w;
    if (name != NULL)
        w = snprintf(s->path + s->plen, room, "%s%.*s", s->plen > 0 ? "." : "", (int)n, name);
    else
        w = snprintf(s->path + s->plen, room, "[%d]", index);
    if (w < 0 || (size_t)w >= room)
        return R_GIVEUP;
    s->plen += (size_t)w;
    return R_OK;
}

static int value(scan *s, int report);

/* Members of a group up to '}' (or the end of the text at the root). */
static int group(scan *s, int report, int root)
{
    for (;;) {
        tok t;
        next(s, &t);
        if (root ? t.kind == T_EOF : is_punct(&t, '}'))
            return R_OK;
        if (t.kind != T_WORD || !is_name(&t))
            return R_GIVEUP;
        tok eq;
        next(s, &eq);
        if (!is_punct(&eq, '=') && !is_punct(&eq, ':'))
            return R_GIVEUP;
        size_t saved = s->plen;
        if (path_push(s, t.s, t.n, 0) != R_OK)
            return R_GIVEUP;
        int sub = WH_CFGSCAN_SKIP;
        if (report) {
            sub = s->fn(s->arg, s->path, t.line);
            if (sub == WH_CFGSCAN_STOP)
                return R_STOP;
        }
        int rc = value(s, sub == WH_CFGSCAN_DESCEND);
        s->plen = saved;
        s->path[saved] = '\0';
        if (rc != R_OK)
            return rc;
        const tok *term = peek(s);
        if (is_punct(term, ';') || is_punct(term, ','))
            s->have_peek = 0;
    }
}

/* Elements of a list up to ')'. */
static int list(scan *s, int report)
{
    if (is_punct(peek(s), ')')) {
        s->have_peek = 0;
        return R_OK;
    }
    for (int k = 0;; k++) {
        size_t saved = s->plen;
        if (path_push(s, NULL, 0, k) != R_OK)
            return R_GIVEUP;
        int rc = value(s, report);
        s->plen = saved;
        s->path[saved] = '\0';
        if (rc != R_OK)
            return rc;
        tok t;
        next(s, &t);
        if (is_punct(&t, ')'))
            return R_OK;
        if (!is_punct(&t, ','))
            return R_GIVEUP;
    }
}

/* Scalars of an array up to ']'. */
static int array(scan *s)
{
    if (is_punct(peek(s), ']')) {
        s->have_peek = 0;
        return R_OK;
    }
    for (;;) {
        tok t;
        next(s, &t);
        if (t.kind == T_STRING) {
            while (peek(s)->kind == T_STRING)
                s->have_peek = 0;
        } else if (t.kind != T_WORD) {
            return R_GIVEUP;
        }
        next(s, &t);
        if (is_punct(&t, ']'))
            return R_OK;
        if (!is_punct(&t, ','))
            return R_GIVEUP;
    }
}

static int value(scan *s, int report)
{
    tok t;
    next(s, &t);
    if (t.kind == T_WORD)
        return R_OK;
    if (t.kind == T_STRING) {
        while (peek(s)->kind == T_STRING) /* "a" "b" is one string */
            s->have_peek = 0;
        return R_OK;
    }
    if (is_punct(&t, '['))
        return array(s);
    if (!is_punct(&t, '{') && !is_punct(&t, '('))
        return R_GIVEUP;
    if (s->depth >= WH_CFGSCAN_MAX_DEPTH)
        return R_GIVEUP;
    s->depth++;
    int rc = t.c == '{' ? group(s, report, 0) : list(s, report);
    s->depth--;
    return rc;
}

int wh_cfgscan(const char *text, size_t len, wh_cfgscan_fn fn, void *arg)
{
    scan s;
    memset(&s, 0, sizeof(s));
    s.p = text;
    s.end = text + len;
    s.line = 1;
    s.fn = fn;
    s.arg = arg;
    return group(&s, 1, 1) == R_STOP;
}
