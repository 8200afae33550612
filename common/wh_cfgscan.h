/* wh_cfgscan: a linear walk over the structure of a libconfig file. It
 * reports each named setting's full path and line, in file order, without
 * building a tree and without interpreting values.
 *
 * Why it exists: libconfig 1.5 (Debian 12) compares every new setting's name
 * with all earlier names of its group, so parsing a group of n settings costs
 * n^2/2 string comparisons (30,000 unknown settings: seconds). wh_config walks
 * the file with this scanner first and rejects the first unknown setting
 * before libconfig parses anything; libconfig then only sees groups of known,
 * hence few, names.
 *
 * The scanner follows libconfig's syntax: comments (#, //, slash-star),
 * strings with backslash escapes and adjacent-string concatenation, `=` or
 * `:`, optional `;` or `,` after a setting, groups { }, lists ( ), arrays [ ].
 * What it does not follow (@include, a syntax error, nesting deeper than
 * WH_CFGSCAN_MAX_DEPTH, a path longer than WH_CFGSCAN_PATH_MAX) ends the walk
 * quietly: libconfig has the last word on such a file.
 *
 * Paths: "a.b" for a member of group a, "a[2]" for the third element of list
 * a, "a[2].b" for a member of that element.
 */
#ifndef WH_CFGSCAN_H
#define WH_CFGSCAN_H

#include <stddef.h>

#define WH_CFGSCAN_MAX_DEPTH 32
#define WH_CFGSCAN_PATH_MAX 256

/* What the callback wants next. */
enum {
    WH_CFGSCAN_STOP = -1,   /* end the walk now */
    WH_CFGSCAN_SKIP = 0,    /* do not report the settings inside this one */
    WH_CFGSCAN_DESCEND = 1, /* report the settings inside this one too */
};

/* Called once per named setting (root members are always reported). */
typedef int (*wh_cfgscan_fn)(void *arg, const char *path, int line);

/* Walks text[0..len). Returns 1 when fn stopped the walk, else 0 (the end
 * was reached, or the scanner met something it does not follow). */
int wh_cfgscan(const char *text, size_t len, wh_cfgscan_fn fn, void *arg);

#endif
