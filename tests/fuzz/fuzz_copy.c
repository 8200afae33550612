/* libFuzzer target for the replication stream's framing
 * (services/ingestor/ing_copy): the input is what the walsender's socket
 * would deliver, fed in pieces whose sizes come from the input's first
 * bytes, and every CopyData message is taken out as the ingestor does.
 * Oracles: no sanitizer report; a handed-out message lies inside the buffer
 * and its length is what its header said; an error ends the stream.
 *
 * fuzz-sources: services/ingestor/ing_copy.c
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ing_copy.h"
#include "wh_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t piece = (size_t)data[0] * 16 + 1; /* bytes fed per step */
    data++;
    size--;
    ing_copy *c = NULL;
    char err[256];
    if (ing_copy_new(&c, err, sizeof(err)) != WH_OK)
        return 0;
    size_t off = 0;
    int ended = 0;
    while (off < size && !ended) {
        size_t k = size - off < piece ? size - off : piece;
        if (ing_copy_feed(c, data + off, k) != WH_OK)
            break;
        off += k;
        for (;;) {
            const uint8_t *p = NULL;
            size_t n = 0;
            int r = ing_copy_next(c, &p, &n, err, sizeof(err));
            if (r < 0) {
                ended = 1;
                break;
            }
            if (r == 0)
                break;
            /* touch every byte: ASan checks it is inside the buffer */
            volatile uint8_t sum = 0;
            for (size_t i = 0; i < n; i++)
                sum ^= p[i];
            (void)sum;
        }
    }
    ing_copy_free(c);
    return 0;
}
