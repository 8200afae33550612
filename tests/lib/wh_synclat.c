/* wh_synclat: the disk's own latency for a small synced write, the floor
 * under the store's synced Appends (bench/latency.sh).
 *
 *   wh_synclat --dir DIR --out FILE [--rate N] [--seconds N] [--bytes N]
 *
 * Makes a file of 1 MiB in DIR, written and synced, as the store keeps its
 * WAL's blocks written ahead of its end (st_walfs.h). Then, N times a second
 * (default 1000) for N seconds (default 10) or until SIGTERM/SIGINT, it
 * overwrites the next N bytes (default 512) of it and calls fdatasync,
 * appending to FILE the microseconds the two took, one number a line. The
 * file is removed at the end. A Append of the store does more (RocksDB's
 * WAL record, the memtable, the reply) and waits for the same fdatasync.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "wh_util.h"

#define SYNCLAT_FILE_BYTES (1024 * 1024)

static volatile sig_atomic_t synclat_stop;

static void synclat_on_signal(int sig)
{
    (void)sig;
    synclat_stop = 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: wh_synclat --dir DIR --out FILE [--rate N] [--seconds N] "
                    "[--bytes N]\n");
    exit(2);
}

static long arg_long(const char *name, const char *v, long lo, long hi)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno != 0 || *end != '\0' || end == v || n < lo || n > hi) {
        fprintf(stderr, "wh_synclat: --%s: '%s' is not a number from %ld to %ld\n", name, v, lo,
                hi);
        exit(2);
    }
    return n;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *out = NULL;
    long rate = 1000, seconds = 10, bytes = 512;
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'},   {"out", required_argument, NULL, 'o'},
        {"rate", required_argument, NULL, 'r'},  {"seconds", required_argument, NULL, 's'},
        {"bytes", required_argument, NULL, 'b'}, {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'd':
            dir = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'r':
            rate = arg_long("rate", optarg, 1, 100000);
            break;
        case 's':
            seconds = arg_long("seconds", optarg, 1, 3600);
            break;
        case 'b':
            bytes = arg_long("bytes", optarg, 1, SYNCLAT_FILE_BYTES);
            break;
        default:
            usage();
        }
    }
    if (dir == NULL || out == NULL || optind != argc)
        usage();

    char path[4096];
    snprintf(path, sizeof(path), "%s/wh_synclat.%d", dir, (int)getpid());
    int rc = 1, fd = -1;
    char *buf = calloc(1, SYNCLAT_FILE_BYTES);
    FILE *f = fopen(out, "w");
    if (buf == NULL || f == NULL) {
        fprintf(stderr, "wh_synclat: %s: %s\n", f == NULL ? out : "memory", strerror(errno));
        goto error;
    }
    fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, buf, SYNCLAT_FILE_BYTES) != SYNCLAT_FILE_BYTES || fsync(fd) != 0) {
        fprintf(stderr, "wh_synclat: %s: %s\n", path, strerror(errno));
        goto error;
    }
    memset(buf, 'x', (size_t)bytes);
    signal(SIGTERM, synclat_on_signal);
    signal(SIGINT, synclat_on_signal);

    uint64_t period_ns = 1000000000u / (uint64_t)rate;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    uint64_t end_us = wh_now_us() + (uint64_t)seconds * 1000000u;
    off_t off = 0;
    while (!synclat_stop && wh_now_us() < end_us) {
        if (off + bytes > SYNCLAT_FILE_BYTES)
            off = 0;
        uint64_t t0 = wh_now_us();
        if (pwrite(fd, buf, (size_t)bytes, off) != bytes || fdatasync(fd) != 0) {
            fprintf(stderr, "wh_synclat: %s: %s\n", path, strerror(errno));
            goto error;
        }
        fprintf(f, "%" PRIu64 "\n", wh_now_us() - t0);
        off += bytes;
        next.tv_nsec += (long)period_ns;
        while (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR &&
               !synclat_stop)
            ;
    }
    rc = 0;
error:
    if (fd >= 0) {
        close(fd);
        unlink(path);
    }
    if (f != NULL && fclose(f) != 0 && rc == 0) {
        fprintf(stderr, "wh_synclat: %s: %s\n", out, strerror(errno));
        rc = 1;
    }
    free(buf);
    return rc;
}
