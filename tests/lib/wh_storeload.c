/* wh_storeload: a backlog straight into the store's IPC, and a reader that
 * scans it (tests/integration/test_store_pss.sh).
 *
 *   wh_storeload append URL TENANT N   N orders-shaped events (~260 bytes of
 *                                      JSON each) in AppendBatch requests of
 *                                      ~512 KiB, one transaction per 100
 *                                      events; the JSON is made on the fly,
 *                                      so this process stays small
 *   wh_storeload read URL TENANT N     reads the tenant from its start with
 *                                      Read (1000 events, 1 MiB a reply)
 *                                      and checks that N events come back in
 *                                      position order
 *
 * Each prints "append|read N events in S s (R events/s)". Exit 0 on success,
 * 1 on a failure (named on stderr). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "walhook.pb-c.h"
#include "wh_buf.h"
#include "wh_ipc.h"
#include "wh_lsn.h"
#include "wh_util.h"

#define SL_REQ_BYTES (512u * 1024)
#define SL_TXN_EVENTS 100
#define SL_LSN0 0x1000000ULL
#define SL_MAX_BATCH 4096

static double now_s(void)
{
    return (double)wh_now_ms() / 1000.0;
}

static int do_append(const char *url, const char *tenant, uint64_t n)
{
    char err[WH_ERRLEN];
    wh_client *c = NULL;
    if (wh_client_open(&c, url, 60000, 64u << 20, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "wh_storeload: %s\n", err);
        return 1;
    }
    static Walhook__Event ev[SL_MAX_BATCH];
    static Walhook__Event *evp[SL_MAX_BATCH];
    static char json[SL_MAX_BATCH][320];
    double t0 = now_s();
    uint64_t i = 0, id = 0;
    while (i < n) {
        size_t k = 0, bytes = 0;
        while (i + k < n && k < SL_MAX_BATCH && bytes < SL_REQ_BYTES) {
            uint64_t x = i + k;
            int len = snprintf(json[k], sizeof(json[k]),
                               "{\"op\":\"insert\",\"schema\":\"public\",\"table\":\"orders\","
                               "\"after\":{\"id\":%" PRIu64 ",\"customer\":\"customer-%05" PRIu64
                               "\",\"amount\":\"%" PRIu64 ".%02" PRIu64
                               "\",\"note\":\"a note of some length for row %" PRIu64
                               "\",\"created_at\":\"2026-11-22T01:02:03.%06" PRIu64 "+00\"}}",
                               x + 1, x % 50000, x % 10000, x % 100, x, x % 1000000);
            walhook__event__init(&ev[k]);
            ev[k].commit_lsn = SL_LSN0 + (x / SL_TXN_EVENTS) * 0x100;
            ev[k].seq = (uint32_t)(x % SL_TXN_EVENTS);
            ev[k].commit_ts_us = 1796161806123456 + (int64_t)x;
            ev[k].json.data = (uint8_t *)json[k];
            ev[k].json.len = (size_t)len;
            evp[k] = &ev[k];
            bytes += (size_t)len;
            k++;
        }
        Walhook__AppendBatch ab = WALHOOK__APPEND_BATCH__INIT;
        ab.tenant = (char *)tenant;
        ab.n_events = k;
        ab.events = evp;
        ab.ack_lsn = ev[k - 1].commit_lsn + 0x30;
        ab.batch_id = ++id;
        Walhook__Request req = WALHOOK__REQUEST__INIT;
        req.body_case = WALHOOK__REQUEST__BODY_APPEND;
        req.append = &ab;
        Walhook__Reply *rep = NULL;
        int status = 0;
        if (wh_client_call_status(c, &req, &rep, &status, err, sizeof(err)) != WH_OK) {
            if (status == 429) { /* slow down: the tenant's write budget */
                uint32_t ms = wh_client_retry_after_ms(c);
                wh_sleep_ms(ms ? ms : 10);
                continue;
            }
            fprintf(stderr, "wh_storeload: append at event %" PRIu64 ": %s\n", i, err);
            wh_client_close(c);
            return 1;
        }
        walhook__reply__free_unpacked(rep, NULL);
        i += k;
    }
    double s = now_s() - t0;
    printf("append %" PRIu64 " events in %.1f s (%.0f events/s)\n", n, s, s > 0 ? n / s : 0);
    wh_client_close(c);
    return 0;
}

static int do_read(const char *url, const char *tenant, uint64_t n)
{
    char err[WH_ERRLEN];
    wh_client *c = NULL;
    if (wh_client_open(&c, url, 60000, 64u << 20, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "wh_storeload: %s\n", err);
        return 1;
    }
    double t0 = now_s();
    Walhook__Position from = WALHOOK__POSITION__INIT;
    uint64_t got = 0;
    uint64_t last_lsn = 0;
    uint32_t last_seq = 0;
    while (got < n) {
        Walhook__ReadRequest rr = WALHOOK__READ_REQUEST__INIT;
        rr.tenant = (char *)tenant;
        rr.has_from = 1; /* (0,0) first: the beginning */
        rr.from = &from;
        rr.max_events = 1000;
        rr.max_bytes = 1u << 20;
        Walhook__Request req = WALHOOK__REQUEST__INIT;
        req.body_case = WALHOOK__REQUEST__BODY_READ;
        req.read = &rr;
        Walhook__Reply *rep = NULL;
        if (wh_client_call(c, &req, &rep, err, sizeof(err)) != WH_OK) {
            fprintf(stderr, "wh_storeload: read after %" PRIu64 " events: %s\n", got, err);
            wh_client_close(c);
            return 1;
        }
        size_t k = rep->read ? rep->read->n_events : 0;
        if (k == 0) {
            fprintf(stderr, "wh_storeload: read: only %" PRIu64 " of %" PRIu64 " events stored\n",
                    got, n);
            walhook__reply__free_unpacked(rep, NULL);
            wh_client_close(c);
            return 1;
        }
        for (size_t j = 0; j < k; j++) {
            const Walhook__Event *e = rep->read->events[j];
            if (got > 0 && wh_pos_cmp(e->commit_lsn, e->seq, last_lsn, last_seq) <= 0) {
                fprintf(stderr, "wh_storeload: read: event %" PRIu64 " out of order\n", got);
                walhook__reply__free_unpacked(rep, NULL);
                wh_client_close(c);
                return 1;
            }
            last_lsn = e->commit_lsn;
            last_seq = e->seq;
            got++;
        }
        from.lsn = last_lsn;
        from.seq = last_seq;
        walhook__reply__free_unpacked(rep, NULL);
    }
    double s = now_s() - t0;
    printf("read %" PRIu64 " events in %.1f s (%.0f events/s)\n", got, s, s > 0 ? got / s : 0);
    wh_client_close(c);
    return 0;
}

int main(int argc, char **argv)
{
    wh_log_init("storeload", WH_LOG_WARN);
    if (argc != 5 || (strcmp(argv[1], "append") != 0 && strcmp(argv[1], "read") != 0)) {
        fprintf(stderr, "usage: wh_storeload append|read URL TENANT N\n");
        return 2;
    }
    uint64_t n = strtoull(argv[4], NULL, 10);
    if (n == 0) {
        fprintf(stderr, "wh_storeload: N: expected a positive number\n");
        return 2;
    }
    if (strcmp(argv[1], "append") == 0)
        return do_append(argv[2], argv[3], n);
    return do_read(argv[2], argv[3], n);
}
