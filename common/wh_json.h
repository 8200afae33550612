/* wh_json: a small JSON parser (DOM) for REST bodies, tests and tools.
 * Depth- and size-bounded; never crashes on input; errors name the offset. */
#ifndef WH_JSON_H
#define WH_JSON_H

#include <stddef.h>
#include <stdint.h>

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

/* Appends j as compact JSON (NULL renders as null). Depth-bounded. */
struct wh_buf;
int wh_json_render(struct wh_buf *b, const wh_json *j);

#endif
