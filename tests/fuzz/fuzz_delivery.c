/* libFuzzer target: the dispatcher's parsers of outside input on the
 * delivery path: a response's Retry-After value (dsp_retry_after_parse),
 * allow lists of addresses (wh_cidr_list_parse) and the by_key lane hash
 * over event bytes (dsp_key_hash). None may crash, hang or read out of
 * bounds, whatever the bytes.
 * fuzz-sources: services/dispatcher/dsp_outcome.c services/dispatcher/dsp_lane.c
 * fuzz-libs: -lcurl
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/dispatcher/dsp_lane.h"
#include "../../services/dispatcher/dsp_outcome.h"
#include "wh_cidr.h"
#include "wh_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t ms;
    (void)dsp_retry_after_parse((const char *)data, size, 1700000000, &ms);
    int found;
    (void)dsp_key_hash(data, size, &found);
    (void)dsp_lane_of(data, size, 7);
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    wh_cidr_list l;
    char err[WH_ERRLEN];
    if (wh_cidr_list_parse(s, &l, err, sizeof(err)) == WH_OK) {
        unsigned char a[16] = {0};
        memcpy(a, data, size < 16 ? size : 16);
        (void)wh_cidr_list_match(&l, 2 /* AF_INET */, a);
        (void)wh_cidr_list_match(&l, 10 /* AF_INET6 */, a);
    }
    free(s);
    return 0;
}
