/* st_sfile: staging files (st_sfile.h). */
#include "st_sfile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <limits.h>

#include "st_crc32c.h"
#include "wh_lsn.h"
#include "wh_util.h"

#define SF_PATH_MAX 4200
/* a record's json, at most (a staged event's is bounded far below by the
 * IPC message size): a longer length field is damage */
#define SF_JSON_MAX (1u << 30)

void st_sfile_name(char *name, uint32_t cf, uint64_t gen)
{
    snprintf(name, ST_SFILE_NAME_MAX, "%" PRIu32 "-%016" PRIx64, cf, gen);
}

int st_sfile_parse_name(const char *name, uint32_t *cf, uint64_t *gen)
{
    const char *dash = strchr(name, '-');
    if (dash == NULL || dash == name || dash - name > 10 || strlen(dash + 1) != 16 ||
        (name[0] == '0' && dash - name > 1)) /* st_sfile_name's only */
        return WH_ERR;
    uint64_t c = 0, g = 0;
    for (const char *p = name; p < dash; p++) {
        if (*p < '0' || *p > '9')
            return WH_ERR;
        c = c * 10 + (uint64_t)(*p - '0');
    }
    for (const char *p = dash + 1; *p; p++) {
        int d = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
        if (d < 0)
            return WH_ERR;
        g = g << 4 | (uint64_t)d;
    }
    if (c > UINT32_MAX)
        return WH_ERR;
    *cf = (uint32_t)c;
    *gen = g;
    return WH_OK;
}

static int sf_path(char *p, size_t n, const char *dir, uint32_t cf, uint64_t gen)
{
    char name[ST_SFILE_NAME_MAX];
    st_sfile_name(name, cf, gen);
    return (size_t)snprintf(p, n, "%s/%s", dir, name) < n ? WH_OK : WH_ERR;
}

static int sf_fsync_dir(const char *dir, char *err, size_t errlen);

int st_sfile_dir_make(const char *dir, char *err, size_t errlen)
{
    if (wh_mkdirs(dir, 0700, err, errlen) != WH_OK)
        return WH_ERR;
    /* its entry in the parent durable too */
    char parent[SF_PATH_MAX];
    if (wh_strlcpy(parent, dir, sizeof(parent)) != WH_OK)
        return wh_seterr(err, errlen, "staging directory %s: path too long", dir);
    char *slash = strrchr(parent, '/');
    if (slash == NULL)
        return WH_OK;
    if (slash == parent)
        slash[1] = '\0';
    else
        *slash = '\0';
    return sf_fsync_dir(parent, err, errlen);
}

static int sf_fsync_dir(const char *dir, char *err, size_t errlen)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return wh_seterr(err, errlen, "staging directory %s: %s", dir, strerror(errno));
    int rc = fsync(fd) == 0 ? WH_OK
                            : wh_seterr(err, errlen, "staging directory %s: While fsync: %s", dir,
                                        strerror(errno));
    close(fd);
    return rc;
}

static uint32_t rec_crc(const uint8_t *hdr, const void *json, size_t len)
{
    uint32_t c = st_crc32c_extend(0, hdr + 4, ST_SFILE_HDR - 4);
    return len > 0 ? st_crc32c_extend(c, json, len) : c;
}

/* writes iov[0..n) at off whole (short writes continued) */
static int sf_pwritev_all(int fd, struct iovec *iov, int n, uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwritev(fd, iov, n > IOV_MAX ? IOV_MAX : n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        off += (uint64_t)w;
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

int st_sfile_append(const char *dir, uint32_t cf, uint64_t gen, int truncate, const st_staged *ev,
                    size_t n, int *torn, char *err, size_t errlen)
{
    *torn = 0;
    char p[SF_PATH_MAX];
    if (sf_path(p, sizeof(p), dir, cf, gen) != WH_OK)
        return wh_seterr(err, errlen, "staging directory %s: path too long", dir);
    for (size_t i = 0; i < n; i++)
        if (ev[i].json != NULL && ev[i].json_len > SF_JSON_MAX)
            return wh_seterr(err, errlen, "staged event %" PRIu32 ": %zu bytes of json (max %u)",
                             ev[i].idx, ev[i].json_len, SF_JSON_MAX);
    struct stat st;
    int made = stat(p, &st) != 0;
    int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0600);
    if (fd < 0)
        return wh_seterr(err, errlen, "staging file %s: %s", p, strerror(errno));
    uint8_t *hdr = NULL;
    struct iovec *iov = NULL;
    int rc = WH_OK;
    off_t end = lseek(fd, 0, SEEK_END);
    if (end < 0) {
        rc = wh_seterr(err, errlen, "staging file %s: %s", p, strerror(errno));
        goto out;
    }
    if (n > 0) {
        hdr = malloc(n * ST_SFILE_HDR);
        iov = malloc(2 * n * sizeof(*iov));
        if (hdr == NULL || iov == NULL) {
            rc = wh_seterr(err, errlen, "out of memory");
            goto out;
        }
        int ni = 0;
        for (size_t i = 0; i < n; i++) {
            uint8_t *h = hdr + i * ST_SFILE_HDR;
            size_t len = ev[i].json != NULL ? ev[i].json_len : 0;
            wh_put_be32(h + 4, (uint32_t)len);
            wh_put_be32(h + 8, ev[i].idx);
            wh_put_be32(h + 12, ev[i].subxid);
            wh_put_be32(h, rec_crc(h, ev[i].json, len));
            iov[ni++] = (struct iovec){h, ST_SFILE_HDR};
            if (len > 0)
                iov[ni++] = (struct iovec){(void *)ev[i].json, len};
        }
        if (sf_pwritev_all(fd, iov, ni, (uint64_t)end) != 0) {
            rc = wh_seterr(err, errlen, "staging file %s: write: %s", p, strerror(errno));
            if (ftruncate(fd, end) != 0)
                *torn = 1;
            goto out;
        }
    }
    if (fdatasync(fd) != 0) {
        rc = wh_seterr(err, errlen, "staging file %s: While fdatasync: %s", p, strerror(errno));
        goto out;
    }
    if (made || truncate) /* a retry may find the file a failed attempt made */
        rc = sf_fsync_dir(dir, err, errlen);
out:
    free(hdr);
    free(iov);
    close(fd);
    return rc;
}

int st_sfile_remove(const char *dir, uint32_t cf, uint64_t gen, char *err, size_t errlen)
{
    char p[SF_PATH_MAX];
    if (sf_path(p, sizeof(p), dir, cf, gen) != WH_OK)
        return wh_seterr(err, errlen, "staging directory %s: path too long", dir);
    if (unlink(p) != 0 && errno != ENOENT)
        return wh_seterr(err, errlen, "staging file %s: remove: %s", p, strerror(errno));
    return WH_OK;
}

void st_sfile_rd_init(st_sfile_rd *r)
{
    memset(r, 0, sizeof(*r));
    r->fd = -1;
}

void st_sfile_rd_close(st_sfile_rd *r)
{
    if (r->fd >= 0)
        close(r->fd);
    free(r->buf);
    st_sfile_rd_init(r);
}

int st_sfile_rd_open(st_sfile_rd *r, const char *dir, uint32_t cf, uint64_t gen, int *missing,
                     char *err, size_t errlen)
{
    *missing = 0;
    char *buf = r->buf;
    size_t cap = r->cap;
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    r->len = 0;
    r->at = 0;
    r->size = 0;
    r->win = 0;
    r->cf = cf;
    r->gen = gen;
    r->buf = buf;
    r->cap = cap;
    char p[SF_PATH_MAX];
    if (sf_path(p, sizeof(p), dir, cf, gen) != WH_OK)
        return wh_seterr(err, errlen, "staging directory %s: path too long", dir);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            *missing = 1;
            return WH_OK;
        }
        return wh_seterr(err, errlen, "staging file %s: %s", p, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return wh_seterr(err, errlen, "staging file %s: %s", p, strerror(e));
    }
    r->fd = fd;
    r->size = (uint64_t)st.st_size;
    return WH_OK;
}

/* makes buf hold [off, off + need) of the file, or as much of it as the
 * file has; *have: the bytes from off in buf */
static int rd_fill(st_sfile_rd *r, uint64_t off, size_t need, size_t *have, char *err,
                   size_t errlen)
{
    if (off >= r->at && off - r->at <= r->len && r->len - (off - r->at) >= need) {
        *have = r->len - (size_t)(off - r->at);
        return WH_OK;
    }
    if (r->win == 0)
        r->win = ST_SFILE_READ_FIRST;
    else if (off == r->at + r->len && r->win < ST_SFILE_READ_BYTES)
        r->win *= 2; /* read on where the last read ended */
    size_t want = need > r->win ? need : r->win;
    if (r->cap < want) {
        char *b = realloc(r->buf, want);
        if (b == NULL)
            return wh_seterr(err, errlen, "out of memory");
        r->buf = b;
        r->cap = want;
    }
    if (off >= r->size)
        want = 0;
    else if (want > r->size - off)
        want = (size_t)(r->size - off);
    size_t got = 0;
    while (got < want) {
        ssize_t n = pread(r->fd, r->buf + got, want - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return wh_seterr(err, errlen,
                             "staging file %" PRIu32 "-%016" PRIx64 ": read at %" PRIu64 ": %s",
                             r->cf, r->gen, off + got, strerror(errno));
        if (n == 0)
            break;
        got += (size_t)n;
    }
    r->at = off;
    r->len = got;
    *have = got;
    return WH_OK;
}

int st_sfile_rd_at(st_sfile_rd *r, uint64_t off, st_sfile_rec *rec, int *end, char *err,
                   size_t errlen)
{
    *end = 1;
    if (r->fd < 0 || off >= r->size)
        return WH_OK;
    size_t have;
    if (rd_fill(r, off, ST_SFILE_HDR, &have, err, errlen) != WH_OK)
        return WH_ERR;
    if (have < ST_SFILE_HDR)
        return WH_OK;
    const uint8_t *h = (const uint8_t *)r->buf + (off - r->at);
    uint32_t len = wh_get_be32(h + 4);
    if (len > SF_JSON_MAX || (uint64_t)len + ST_SFILE_HDR > r->size - off)
        return WH_OK; /* past the end: torn */
    if (rd_fill(r, off, ST_SFILE_HDR + (size_t)len, &have, err, errlen) != WH_OK)
        return WH_ERR;
    if (have < ST_SFILE_HDR + (size_t)len)
        return WH_OK;
    h = (const uint8_t *)r->buf + (off - r->at);
    if (rec_crc(h, h + ST_SFILE_HDR, len) != (uint32_t)wh_get_be32(h))
        return WH_OK;
    rec->json_len = len;
    rec->idx = wh_get_be32(h + 8);
    rec->subxid = wh_get_be32(h + 12);
    rec->json = (const char *)h + ST_SFILE_HDR;
    rec->next = off + ST_SFILE_HDR + len;
    *end = 0;
    return WH_OK;
}

/* Whether what r's file holds from off on (not a whole record) is what an
 * append cut short leaves: a partial header, a record whose length runs
 * past the end (its bytes written in part), or zeros (a file system that
 * grew the file before writing its blocks). A whole-length record with a
 * bad checksum and other bytes is damage. */
static int tail_torn(st_sfile_rd *r, uint64_t off, int *torn, char *err, size_t errlen)
{
    *torn = 1;
    size_t have;
    if (rd_fill(r, off, ST_SFILE_HDR, &have, err, errlen) != WH_OK)
        return WH_ERR;
    if (have < ST_SFILE_HDR)
        return WH_OK;
    uint32_t len = wh_get_be32((const uint8_t *)r->buf + (off - r->at) + 4);
    if ((uint64_t)len + ST_SFILE_HDR > r->size - off)
        return WH_OK;
    for (uint64_t at = off; at < r->size;) {
        if (rd_fill(r, at, 1, &have, err, errlen) != WH_OK)
            return WH_ERR;
        if (have == 0)
            break;
        const char *b = r->buf + (at - r->at);
        for (size_t i = 0; i < have; i++)
            if (b[i] != 0) {
                *torn = 0;
                return WH_OK;
            }
        at += have;
    }
    return WH_OK;
}

/* Reads r's file through its whole records: *whole, the offset past the
 * last one; *next_idx, one past the highest index (0: none). */
static int rd_walk(st_sfile_rd *r, uint64_t *whole, uint64_t *next_idx, char *err, size_t errlen)
{
    *whole = *next_idx = 0;
    for (;;) {
        st_sfile_rec rec;
        int end;
        if (st_sfile_rd_at(r, *whole, &rec, &end, err, errlen) != WH_OK)
            return WH_ERR;
        if (end)
            return WH_OK;
        if ((uint64_t)rec.idx + 1 > *next_idx)
            *next_idx = (uint64_t)rec.idx + 1;
        *whole = rec.next;
    }
}

int st_sfile_next_idx(const char *dir, uint32_t cf, uint64_t gen, uint64_t *next_idx, char *err,
                      size_t errlen)
{
    *next_idx = 0;
    st_sfile_rd r;
    st_sfile_rd_init(&r);
    uint64_t whole;
    int missing, rc = st_sfile_rd_open(&r, dir, cf, gen, &missing, err, errlen);
    if (rc == WH_OK && !missing)
        rc = rd_walk(&r, &whole, next_idx, err, errlen);
    st_sfile_rd_close(&r);
    return rc;
}

int st_sfile_trim(const char *dir, uint32_t cf, uint64_t gen, uint64_t *cut, uint64_t *next_idx,
                  char *err, size_t errlen)
{
    *cut = 0;
    uint64_t nx = 0, off = 0;
    if (next_idx == NULL)
        next_idx = &nx;
    *next_idx = 0;
    st_sfile_rd r;
    st_sfile_rd_init(&r);
    int missing, rc = st_sfile_rd_open(&r, dir, cf, gen, &missing, err, errlen);
    if (rc == WH_OK && !missing)
        rc = rd_walk(&r, &off, next_idx, err, errlen);
    uint64_t size = r.size;
    int torn = 0;
    if (rc == WH_OK && !missing && off < size)
        rc = tail_torn(&r, off, &torn, err, errlen);
    st_sfile_rd_close(&r);
    if (rc != WH_OK || missing || off == size)
        return rc;
    if (!torn)
        return wh_seterr(err, errlen,
                         "staging file %" PRIu32 "-%016" PRIx64
                         ": damaged record at offset %" PRIu64 " with %" PRIu64
                         " bytes after it: not cut (an append cut short leaves "
                         "a partial record or zeros)",
                         cf, gen, off, size - off);
    char p[SF_PATH_MAX];
    if (sf_path(p, sizeof(p), dir, cf, gen) != WH_OK)
        return wh_seterr(err, errlen, "staging directory %s: path too long", dir);
    int fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return wh_seterr(err, errlen, "staging file %s: %s", p, strerror(errno));
    if (ftruncate(fd, (off_t)off) != 0)
        rc = wh_seterr(err, errlen, "staging file %s: cut back to %" PRIu64 " bytes: %s", p, off,
                       strerror(errno));
    else if (fdatasync(fd) != 0)
        rc = wh_seterr(err, errlen, "staging file %s: cut back: While fdatasync: %s", p,
                       strerror(errno));
    close(fd);
    if (rc == WH_OK)
        *cut = size - off;
    return rc;
}
