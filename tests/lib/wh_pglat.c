/* wh_pglat: PostgreSQL's own commit-to-client latency, the floor under
 * walhook's (bench/latency.sh).
 *
 *   wh_pglat --dsn DSN --out FILE [--publication walhook] [--seconds N]
 *
 * Opens a replication connection, creates a TEMPORARY logical slot
 * (pgoutput, protocol 1) and streams from it until SIGTERM/SIGINT or N
 * seconds. For every Commit message it appends to FILE the microseconds from
 * the commit's timestamp to the message's arrival here: what any logical
 * client, walhook's ingestor included, waits before it can do anything with
 * a transaction (PostgreSQL's commit, its WAL flush, the walsender's wake-up
 * and decoding, the socket). It does nothing else with the data, like
 * pg_recvlogical -f /dev/null, and confirms what it received every second
 * and whenever the server asks. Same host, same clock as the server.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

#include "wh_lsn.h"
#include "wh_util.h"

/* microseconds between the Unix epoch and PostgreSQL's (2000-01-01) */
#define PGLAT_EPOCH_DIFF_US (INT64_C(946684800) * 1000000)

static volatile sig_atomic_t pglat_stop;

static void pglat_on_signal(int sig)
{
    (void)sig;
    pglat_stop = 1;
}

static int64_t pglat_pg_now_us(void)
{
    return (int64_t)wh_wallclock_us() - PGLAT_EPOCH_DIFF_US;
}

/* Standby status update: written = flushed = applied = lsn. */
static int pglat_status(PGconn *conn, uint64_t lsn, int reply)
{
    unsigned char m[34];
    m[0] = 'r';
    wh_put_be64(m + 1, lsn);
    wh_put_be64(m + 9, lsn);
    wh_put_be64(m + 17, lsn);
    wh_put_be64(m + 25, (uint64_t)pglat_pg_now_us());
    m[33] = (unsigned char)reply;
    if (PQputCopyData(conn, (const char *)m, sizeof(m)) != 1 || PQflush(conn) != 0) {
        fprintf(stderr, "wh_pglat: status update: %s", PQerrorMessage(conn));
        return -1;
    }
    return 0;
}

static int pglat_command(PGconn *conn, const char *sql, ExecStatusType want)
{
    PGresult *res = PQexec(conn, sql);
    int ok = PQresultStatus(res) == want;
    if (!ok)
        fprintf(stderr, "wh_pglat: %s: %s", sql, PQerrorMessage(conn));
    PQclear(res);
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    const char *dsn = NULL, *out = NULL, *pub = "walhook";
    int seconds = 0;
    static const struct option opts[] = {{"dsn", required_argument, NULL, 'd'},
                                         {"out", required_argument, NULL, 'o'},
                                         {"publication", required_argument, NULL, 'p'},
                                         {"seconds", required_argument, NULL, 's'},
                                         {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dsn = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'p':
            pub = optarg;
            break;
        case 's':
            seconds = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: wh_pglat --dsn DSN --out FILE [--publication P] "
                            "[--seconds N]\n");
            return 2;
        }
    }
    if (!dsn || !out) {
        fprintf(stderr, "wh_pglat: --dsn and --out are required\n");
        return 2;
    }
    signal(SIGTERM, pglat_on_signal);
    signal(SIGINT, pglat_on_signal);

    int rc = 1;
    FILE *f = NULL;
    /* the DSN (keywords or URI) expanded, with replication=database */
    const char *keys[] = {"dbname", "replication", NULL};
    const char *vals[] = {dsn, "database", NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "wh_pglat: connect: %s", PQerrorMessage(conn));
        goto error;
    }
    char slot[64], sql[512];
    snprintf(slot, sizeof(slot), "wh_pglat_%d", (int)getpid());
    snprintf(sql, sizeof(sql), "CREATE_REPLICATION_SLOT %s TEMPORARY LOGICAL pgoutput", slot);
    if (pglat_command(conn, sql, PGRES_TUPLES_OK) != 0)
        goto error;
    snprintf(sql, sizeof(sql),
             "START_REPLICATION SLOT %s LOGICAL 0/0 (proto_version '1', publication_names '%s')",
             slot, pub);
    if (pglat_command(conn, sql, PGRES_COPY_BOTH) != 0)
        goto error;
    f = fopen(out, "w");
    if (!f) {
        fprintf(stderr, "wh_pglat: %s: %s\n", out, strerror(errno));
        goto error;
    }
    printf("wh_pglat: streaming from temporary slot %s\n", slot);
    fflush(stdout);

    uint64_t received = 0, last_status = wh_now_ms(), end_ms = 0;
    if (seconds > 0)
        end_ms = wh_now_ms() + (uint64_t)seconds * 1000;
    while (!pglat_stop && (end_ms == 0 || wh_now_ms() < end_ms)) {
        char *buf = NULL;
        int n = PQgetCopyData(conn, &buf, 1);
        if (n == 0) {
            int sock = PQsocket(conn);
            fd_set rfds;
            FD_ZERO(&rfds);
            FD_SET(sock, &rfds);
            struct timeval tv = {0, 100 * 1000};
            if (select(sock + 1, &rfds, NULL, NULL, &tv) < 0 && errno != EINTR) {
                fprintf(stderr, "wh_pglat: select: %s\n", strerror(errno));
                goto error;
            }
            if (PQconsumeInput(conn) != 1) {
                fprintf(stderr, "wh_pglat: %s", PQerrorMessage(conn));
                goto error;
            }
        } else if (n < 0) {
            fprintf(stderr, "wh_pglat: stream ended: %s", PQerrorMessage(conn));
            goto error;
        } else {
            const unsigned char *m = (const unsigned char *)buf;
            if (m[0] == 'w' && n >= 25) {
                uint64_t start = wh_get_be64(m + 1);
                const unsigned char *p = m + 25;
                size_t len = (size_t)n - 25;
                /* Commit: 'C', flags, commit LSN, end LSN, timestamp */
                if (len >= 26 && p[0] == 'C') {
                    int64_t ts = (int64_t)wh_get_be64(p + 18);
                    fprintf(f, "%" PRId64 "\n", pglat_pg_now_us() - ts);
                    received = wh_get_be64(p + 10);
                } else if (start > received) {
                    received = start;
                }
            } else if (m[0] == 'k' && n >= 18) {
                uint64_t end = wh_get_be64(m + 1);
                if (end > received)
                    received = end;
                if (m[17] && pglat_status(conn, received, 0) != 0) {
                    PQfreemem(buf);
                    goto error;
                }
            }
            PQfreemem(buf);
        }
        if (wh_now_ms() - last_status >= 1000) {
            if (pglat_status(conn, received, 0) != 0)
                goto error;
            last_status = wh_now_ms();
        }
    }
    rc = 0;
error:
    if (f && fclose(f) != 0) {
        fprintf(stderr, "wh_pglat: %s: %s\n", out, strerror(errno));
        rc = 1;
    }
    PQfinish(conn);
    return rc;
}
