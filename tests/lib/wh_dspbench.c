/* wh_dspbench: the dispatcher's per-event work alone (no store, no HTTP):
 * dsp_batch_fill_ex over orders-shaped events (the shape wh_stagebench
 * appends), in batches, for one target format.
 *
 *   wh_dspbench native|debezium|filter|dbzonly N [BATCH]
 *
 * native:   the native envelope, no filter (the stored bytes are copied)
 * debezium: the Debezium envelope and the filter expression
 *           table == "orders" && op == "insert" && after.amount > 1
 * filter:   the native envelope and that filter (the filter's share)
 * dbzonly:  the Debezium envelope without a filter (the envelope's share)
 * Prints "KIND N events: C us CPU/event (this process)". Stable under
 * `valgrind --tool=callgrind` (instructions per event = Ir / N, minus the
 * set-up, which is measured by running with N = 0). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../services/dispatcher/dsp_target.h"
#include "wh_buf.h"
#include "wh_util.h"

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    const char *kind = argc > 1 ? argv[1] : "";
    int dbz = strcmp(kind, "debezium") == 0 || strcmp(kind, "dbzonly") == 0;
    int filt = strcmp(kind, "debezium") == 0 || strcmp(kind, "filter") == 0;
    if (argc < 3 || (!dbz && !filt && strcmp(kind, "native") != 0)) {
        fprintf(stderr, "usage: wh_dspbench native|debezium|filter|dbzonly N [BATCH]\n");
        return 2;
    }
    size_t n = strtoul(argv[2], NULL, 10);
    size_t batch = argc > 3 ? strtoul(argv[3], NULL, 10) : 1000;
    if (batch == 0)
        batch = 1000;
    wh_delivery d;
    memset(&d, 0, sizeof(d));
    if (dbz)
        wh_strlcpy(d.envelope, "debezium", sizeof(d.envelope));
    if (filt)
        wh_strlcpy(d.filter_expr, "table == \"orders\" && op == \"insert\" && after.amount > 1",
                   sizeof(d.filter_expr));
    dsp_format fmt;
    memset(&fmt, 0, sizeof(fmt));
    char err[WH_ERRLEN];
    if (dsp_format_build(&fmt, &d, NULL, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "wh_dspbench: %s\n", err);
        return 1;
    }
    /* the events of one batch, built beforehand (ids differ per batch only
     * in what the dispatcher does not look at) */
    Walhook__Event *ev = calloc(batch, sizeof(*ev));
    Walhook__Event **evp = calloc(batch, sizeof(*evp));
    char **json = calloc(batch, sizeof(*json));
    if (!ev || !evp || !json)
        return 1;
    uint64_t lsn0 = UINT64_C(0x10000000);
    for (size_t i = 0; i < batch; i++) {
        unsigned c = (unsigned)((i + 1) * 2654435761u % 100000u);
        uint64_t lsn = lsn0 + (uint64_t)i * 0x100;
        char ls[32];
        snprintf(ls, sizeof(ls), "%X/%X", (unsigned)(lsn >> 32), (unsigned)lsn);
        json[i] = malloc(1024);
        int len = snprintf(
            json[i], 1024,
            "{\"id\":\"default:%s:0\",\"tenant\":\"default\",\"lsn\":\"%s\",\"seq\":0,\"xid\":%zu,"
            "\"commit_ts\":\"2026-12-01T21:50:06.%06zuZ\",\"op\":\"insert\",\"schema\":\"public\","
            "\"table\":\"orders\",\"key\":{\"id\":%zu},\"before\":null,\"after\":{\"id\":%zu,"
            "\"customer\":\"customer %u\",\"amount\":\"%u.%02u\",\"note\":\"note for order of "
            "customer %u\",\"created_at\":\"2026-12-01T21:50:%02zu.%06zuZ\"}}",
            ls, ls, 1000 + i, i % 1000000, i + 1, i + 1, c, c * 37 / 100, c % 100, c, i % 60,
            (i * 7919) % 1000000);
        walhook__event__init(&ev[i]);
        ev[i].commit_lsn = lsn;
        ev[i].seq = 0;
        ev[i].commit_ts_us = 1796161806123456 + (int64_t)i;
        ev[i].json.data = (uint8_t *)json[i];
        ev[i].json.len = (size_t)len;
        evp[i] = &ev[i];
    }
    dsp_batch b;
    memset(&b, 0, sizeof(b));
    uint64_t filtered = 0;
    size_t kept = 0, bytes = 0;
    double c0 = cpu_s();
    for (size_t done = 0; done < n; done += batch) {
        size_t k = n - done < batch ? n - done : batch;
        /* the events stay (as a Read reply's do in the slot that holds it) */
        int r = dsp_batch_fill_ex(&b, "default", evp, k, 0, 0, 0, &fmt, &filtered, 1);
        if (r < 0) {
            fprintf(stderr, "wh_dspbench: dsp_batch_fill_ex failed\n");
            return 1;
        }
        kept += b.n;
        bytes += b.rendered ? b.wire.len : b.body.len;
    }
    double c1 = cpu_s();
    printf("%-8s %zu events (%zu kept, %" PRIu64 " filtered, %zu body bytes): %.3f us CPU/event "
           "(this process)\n",
           argv[1], n, kept, filtered, bytes, n ? (c1 - c0) * 1e6 / (double)n : 0.0);
    dsp_batch_free(&b);
    dsp_format_free(&fmt);
    for (size_t i = 0; i < batch; i++)
        free(json[i]);
    free(json);
    free(evp);
    free(ev);
    return 0;
}
