/* wh_dspbench: the dispatcher's per-event work alone (no store, no HTTP):
 * dsp_batch_fill_ex over orders-shaped events (the shape wh_stagebench
 * appends), in batches, for one target format.
 *
 *   wh_dspbench [--events FILE] [--filter EXPR] native|debezium|filter|dbzonly N [BATCH]
 *
 * native:   the native envelope, no filter (the stored bytes are copied)
 * debezium: the Debezium envelope and the filter expression
 *           table == "orders" && op == "insert" && after.amount > 1
 * filter:   the native envelope and that filter (the filter's share)
 * dbzonly:  the Debezium envelope without a filter (the envelope's share)
 * --events FILE: the batch's events from FILE instead, one JSON object a line
 * (wh_stagebench [--wide] dump N writes them), reused from the first when
 * BATCH is larger; --filter EXPR: that expression instead of the one above.
 * WH_DSPBENCH_BASELINE=1: the index's maps built with the baseline code
 * (wh_evidx_baseline).
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
#include "wh_filter.h"
#include "wh_util.h"

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The lines of path (each malloc'd, NUL-terminated, its length in *lens)
 * into *out; how many, or -1. */
static long read_lines(const char *path, char ***out, size_t **lens)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return -1;
    char *line = NULL;
    size_t cap = 0, n = 0, ncap = 0;
    ssize_t got;
    *out = NULL;
    *lens = NULL;
    while ((got = getline(&line, &cap, fp)) > 0) {
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
            got--;
        if (got == 0)
            continue;
        if (wh_grow(out, n + 1, &ncap, sizeof(**out), 64) != WH_OK)
            break;
        size_t *nl = realloc(*lens, ncap * sizeof(**lens));
        if (nl == NULL)
            break;
        *lens = nl;
        /* the line's bytes, a NUL among them included (not strndup) */
        char *copy = malloc((size_t)got + 1);
        if (copy == NULL)
            break;
        memcpy(copy, line, (size_t)got);
        copy[got] = '\0';
        (*out)[n] = copy;
        (*lens)[n++] = (size_t)got;
    }
    free(line);
    fclose(fp);
    return (long)n;
}

int main(int argc, char **argv)
{
    const char *events_file = NULL, *filter_expr = NULL;
    while (argc > 2 && (strcmp(argv[1], "--events") == 0 || strcmp(argv[1], "--filter") == 0)) {
        if (strcmp(argv[1], "--events") == 0)
            events_file = argv[2];
        else
            filter_expr = argv[2];
        argv += 2;
        argc -= 2;
    }
    const char *kind = argc > 1 ? argv[1] : "";
    int dbz = strcmp(kind, "debezium") == 0 || strcmp(kind, "dbzonly") == 0;
    int filt = strcmp(kind, "debezium") == 0 || strcmp(kind, "filter") == 0;
    if (argc < 3 || (!dbz && !filt && strcmp(kind, "native") != 0)) {
        fprintf(
            stderr,
            "usage: wh_dspbench [--events FILE] [--filter EXPR] native|debezium|filter|dbzonly N "
            "[BATCH]\n");
        return 2;
    }
    const char *base = getenv("WH_DSPBENCH_BASELINE");
    if (base != NULL && strcmp(base, "1") == 0)
        wh_evidx_baseline(1);
    size_t n = strtoul(argv[2], NULL, 10);
    size_t batch = argc > 3 ? strtoul(argv[3], NULL, 10) : 1000;
    if (batch == 0)
        batch = 1000;
    wh_delivery d;
    memset(&d, 0, sizeof(d));
    if (dbz)
        wh_strlcpy(d.envelope, "debezium", sizeof(d.envelope));
    if (filt)
        wh_strlcpy(d.filter_expr,
                   filter_expr ? filter_expr
                               : "table == \"orders\" && op == \"insert\" && after.amount > 1",
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
    char **file = NULL;
    size_t *flen = NULL;
    long nfile = 0;
    if (events_file != NULL && (nfile = read_lines(events_file, &file, &flen)) <= 0) {
        fprintf(stderr, "wh_dspbench: %s: no events read\n", events_file);
        return 1;
    }
    uint64_t lsn0 = UINT64_C(0x10000000);
    for (size_t i = 0; i < batch; i++) {
        unsigned c = (unsigned)((i + 1) * 2654435761u % 100000u);
        uint64_t lsn = lsn0 + (uint64_t)i * 0x100;
        char ls[32];
        snprintf(ls, sizeof(ls), "%X/%X", (unsigned)(lsn >> 32), (unsigned)lsn);
        int len;
        if (nfile > 0) {
            len = (int)flen[i % (size_t)nfile];
            json[i] = malloc((size_t)len + 1);
            if (json[i] == NULL)
                return 1;
            memcpy(json[i], file[i % (size_t)nfile], (size_t)len + 1);
            goto event;
        }
        json[i] = malloc(1024);
        len = snprintf(
            json[i], 1024,
            "{\"id\":\"default:%s:0\",\"tenant\":\"default\",\"lsn\":\"%s\",\"seq\":0,\"xid\":%zu,"
            "\"commit_ts\":\"2026-12-01T21:50:06.%06zuZ\",\"op\":\"insert\",\"schema\":\"public\","
            "\"table\":\"orders\",\"key\":{\"id\":%zu},\"before\":null,\"after\":{\"id\":%zu,"
            "\"customer\":\"customer %u\",\"amount\":\"%u.%02u\",\"note\":\"note for order of "
            "customer %u\",\"created_at\":\"2026-12-01T21:50:%02zu.%06zuZ\"}}",
            ls, ls, 1000 + i, i % 1000000, i + 1, i + 1, c, c * 37 / 100, c % 100, c, i % 60,
            (i * 7919) % 1000000);
    event:
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
    for (long i = 0; i < nfile; i++)
        free(file[i]);
    free(file);
    free(flen);
    free(evp);
    free(ev);
    return 0;
}
