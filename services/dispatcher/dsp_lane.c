/* dsp_lane: key hashing for by_key lanes. See dsp_lane.h. */
#include "dsp_lane.h"

#include <string.h>

/* End of the JSON value starting at p (exclusive), or NULL if cut short. */
static const char *value_end(const char *p, const char *end)
{
    int depth = 0, in_str = 0;
    for (; p < end; p++) {
        char c = *p;
        if (in_str) {
            if (c == '\\')
                p++;
            else if (c == '"') {
                in_str = 0;
                if (depth == 0)
                    return p + 1;
            }
            continue;
        }
        if (c == '"')
            in_str = 1;
        else if (c == '{' || c == '[')
            depth++;
        else if (c == '}' || c == ']') {
            if (depth == 0)
                return p; /* end of the enclosing object */
            if (--depth == 0)
                return p + 1;
        } else if (c == ',' && depth == 0)
            return p;
    }
    return depth == 0 && !in_str ? end : NULL;
}

uint64_t dsp_key_hash(const void *json, size_t len, int *found)
{
    static const char pat[] = ",\"key\":";
    const char *s = json, *end = s + len;
    *found = 0;
    const char *k = memmem(s, len, pat, sizeof(pat) - 1);
    if (k == NULL)
        return 0;
    const char *v = k + sizeof(pat) - 1;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    const char *e = value_end(v, end);
    if (e == NULL || e == v || (e - v == 4 && memcmp(v, "null", 4) == 0))
        return 0;
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = v; p < e; p++) {
        h ^= (unsigned char)*p;
        h *= 1099511628211ULL;
    }
    *found = 1;
    return h;
}

unsigned dsp_lane_of(const void *json, size_t len, unsigned nlanes)
{
    if (nlanes <= 1)
        return 0;
    int found;
    uint64_t h = dsp_key_hash(json, len, &found);
    return found ? (unsigned)(h % nlanes) : 0;
}
