/* libFuzzer target for the store's staging files (services/store/st_sfile):
 * the input is a staging file's bytes, as a damaged disk or a store killed
 * in an append could leave them; or (its first byte odd) a program that
 * appends whole records with st_sfile_append (each: a length byte, then
 * that many bytes of json), then raw bytes after them and one byte
 * flipped, so damage meets valid records. The file is read record by record from
 * offset 0 (then at offsets taken from the input's first bytes), then cut
 * back by st_sfile_trim. Oracles: no sanitizer report; a record handed out
 * lies inside the file and its next offset is past it; after a trim that
 * cut, the file ends exactly after its last whole record; a trim that
 * refused left the file as it was.
 *
 * fuzz-sources: services/store/st_sfile.c services/store/st_crc32c.cc
 * fuzz-libs: -lrocksdb
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "st_sfile.h"
#include "wh_util.h"

static char dir[64];

static void setup(void)
{
    if (dir[0] != '\0')
        return;
    snprintf(dir, sizeof(dir), "%s/fuzz_sfile.XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (mkdtemp(dir) == NULL)
        abort();
}

static uint64_t read_all(st_sfile_rd *r, uint64_t size)
{
    uint64_t off = 0;
    for (;;) {
        st_sfile_rec rec;
        int end;
        char err[256];
        if (st_sfile_rd_at(r, off, &rec, &end, err, sizeof(err)) != WH_OK || end)
            return off;
        if (rec.next <= off || rec.next > size || rec.json_len != rec.next - off - ST_SFILE_HDR)
            abort();
        if (rec.json_len > 0) {
            volatile char last = rec.json[rec.json_len - 1]; /* inside the buffer */
            (void)last;
        }
        off = rec.next;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    const size_t in = size; /* the input's length (size: the file's, below) */
    char name[ST_SFILE_NAME_MAX], path[128], err[256];
    st_sfile_name(name, 1, 1);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        abort();
    if (size > 2 && (data[0] & 1)) {
        size_t flip = data[1], i = 2, n = 0;
        st_staged ev[32];
        while (i < size && n < 32) {
            size_t l = data[i++] % 48;
            if (l > size - i)
                break;
            ev[n] = (st_staged){(uint32_t)n, 7, data + i, l};
            n++;
            i += l;
        }
        close(fd);
        int torn;
        if (st_sfile_append(dir, 1, 1, 1, ev, n, &torn, err, sizeof(err)) != WH_OK)
            abort();
        st_sfile_rd r0;
        st_sfile_rd_init(&r0);
        int missing0;
        if (st_sfile_rd_open(&r0, dir, 1, 1, &missing0, err, sizeof(err)) != WH_OK || missing0)
            abort();
        uint64_t off = 0;
        for (size_t k = 0; k < n; k++) { /* every record reads back as written */
            st_sfile_rec rec;
            int end;
            if (st_sfile_rd_at(&r0, off, &rec, &end, err, sizeof(err)) != WH_OK || end ||
                rec.idx != k || rec.json_len != ev[k].json_len ||
                (rec.json_len > 0 && memcmp(rec.json, ev[k].json, rec.json_len) != 0))
                abort();
            off = rec.next;
        }
        st_sfile_rd_close(&r0);
        fd = open(path, O_RDWR); /* not O_APPEND: Linux's pwrite would append */
        if (fd < 0)
            abort();
        struct stat st0;
        if (fstat(fd, &st0) != 0)
            abort();
        if (i < size && pwrite(fd, data + i, size - i, st0.st_size) != (ssize_t)(size - i))
            abort();
        if (fstat(fd, &st0) != 0)
            abort();
        if (st0.st_size > 0 && flip < (size_t)st0.st_size * 2) {
            unsigned char b;
            off_t at = (off_t)(flip % (size_t)st0.st_size);
            if (pread(fd, &b, 1, at) != 1)
                abort();
            b ^= 0x5a;
            if (pwrite(fd, &b, 1, at) != 1)
                abort();
        }
        size = (size_t)st0.st_size;
    } else if (size > 0 && write(fd, data, size) != (ssize_t)size) {
        abort();
    }
    close(fd);

    st_sfile_rd r;
    st_sfile_rd_init(&r);
    int missing;
    if (st_sfile_rd_open(&r, dir, 1, 1, &missing, err, sizeof(err)) != WH_OK || missing)
        abort();
    uint64_t whole = read_all(&r, size);
    /* random access at offsets the input names */
    for (size_t i = 0; i + 2 <= in && i < 16; i += 2) {
        uint64_t off = ((uint64_t)data[i] << 8 | data[i + 1]) % (size + 2);
        st_sfile_rec rec;
        int end;
        if (st_sfile_rd_at(&r, off, &rec, &end, err, sizeof(err)) != WH_OK)
            abort();
        if (!end && (rec.next <= off || rec.next > size))
            abort();
    }
    st_sfile_rd_close(&r);

    uint64_t cut = 0;
    int rc = st_sfile_trim(dir, 1, 1, &cut, NULL, err, sizeof(err));
    struct stat st;
    if (stat(path, &st) != 0)
        abort();
    if (rc == WH_OK && (uint64_t)st.st_size != whole)
        abort(); /* cut back to the last whole record (or nothing to cut) */
    if (rc == WH_OK && cut != size - whole)
        abort();
    if (rc != WH_OK && (uint64_t)st.st_size != size)
        abort(); /* refused: untouched */
    unlink(path);
    return 0;
}
