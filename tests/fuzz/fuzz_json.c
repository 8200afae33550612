/* libFuzzer target for wh_json_parse: any input must parse or fail cleanly,
 * and a parsed document must be walkable and freeable. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "wh_json.h"
#include "wh_util.h"

static size_t walk(const wh_json *j, int depth)
{
    size_t n = 0;
    for (; j; j = j->next) {
        n++;
        if (j->type == WH_JSON_STRING && j->len > 0 && j->str[j->len] != '\0')
            __builtin_trap();
        if (j->type == WH_JSON_OBJECT && !j->child != !j->count)
            __builtin_trap();
        if (depth < 1000)
            n += walk(j->child, depth + 1);
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wh_json *j = NULL;
    char err[WH_ERRLEN];
    if (wh_json_parse((const char *)data, size, &j, err, sizeof err) == WH_OK) {
        walk(j, 0);
        if (j->type == WH_JSON_OBJECT && j->child && j->child->key)
            (void)wh_json_get(j, j->child->key);
        if (j->type == WH_JSON_ARRAY)
            (void)wh_json_at(j, j->count ? j->count - 1 : 0);
        wh_json_free(j);
    } else if (j != NULL || strncmp(err, "offset ", 7) != 0) {
        __builtin_trap();
    }
    return 0;
}
