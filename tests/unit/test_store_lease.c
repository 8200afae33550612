/* Unit tests of what the store keeps of a dispatcher lease for its next
 * holder's takeover wait, against a real RocksDB in a temporary directory:
 * a release with requests abandoned survives a store restart (the next
 * holder is told taken_over and waits), a takeover is told again to its
 * holder's Acquire until it renews (also after a restart), the longest request timeout the
 * holders told is returned with a takeover (and survives a restart too),
 * a removed target's lease stays with its holder (also when its tenant is
 * removed), and lease values written before these fields still load; the
 * lease list answers from what is committed while a lease write of an
 * entry waits for its WAL sync. */
#include <dlfcn.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include "../../services/store/st_db_int.h"
#include "wh_lsn.h"
#include "wh_util.h"
#include "rmtree.h"

typedef struct fx {
    char dir[64];
    st_db *db;
} fx;

/* A gate on this process's fsync and fdatasync (RocksDB's WAL syncs), as
 * tests/lib/wh_syncgate.c is for the store daemon: while it is closed, a
 * sync waits (counted in gate_held) until it opens, as on a disk that
 * takes long to sync. Open unless a test closes it. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_closed, gate_held;

static void gate_wait(void)
{
    pthread_mutex_lock(&gate_mu);
    if (gate_closed) {
        gate_held++;
        pthread_cond_broadcast(&gate_cv);
        while (gate_closed)
            pthread_cond_wait(&gate_cv, &gate_mu);
        gate_held--;
    }
    pthread_mutex_unlock(&gate_mu);
}

int fdatasync(int fd)
{
    static int (*real)(int);
    gate_wait();
    if (real == NULL)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}

int fsync(int fd)
{
    static int (*real)(int);
    gate_wait();
    if (real == NULL)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}

static void gate_set(int closed)
{
    pthread_mutex_lock(&gate_mu);
    gate_closed = closed;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

/* 1 once a sync waits at the (closed) gate, 0 if none did within 10 s */
static int gate_holds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    pthread_mutex_lock(&gate_mu);
    int rc = 0;
    while (gate_held == 0 && rc == 0)
        rc = pthread_cond_timedwait(&gate_cv, &gate_mu, &ts);
    int held = gate_held > 0;
    pthread_mutex_unlock(&gate_mu);
    return held;
}

static void open_db(fx *f)
{
    char err[WH_ERRLEN];
    st_db_opts o = {f->dir, 1 << 20, 1 << 20, 0, 0, 0, 0, 0};
    if (st_db_open(&f->db, &o, err, sizeof(err)) != WH_OK)
        fail_msg("open: %s", err);
}

static void restart(fx *f)
{
    st_db_close(f->db);
    open_db(f);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_store_lease.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    open_db(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    st_db_close(f->db);
    wh_test_rmtree(f->dir);
    free(f);
    return 0;
}

static st_lease acquire(fx *f, const char *owner, uint32_t ttl_ms, uint32_t req_timeout_ms)
{
    char err[WH_ERRLEN];
    st_lease l;
    if (st_db_lease_acquire(f->db, "t", "a", owner, ttl_ms, req_timeout_ms, &l, err, sizeof(err)) !=
        WH_OK)
        fail_msg("acquire by %s: %s", owner, err);
    return l;
}

static void release(fx *f, const char *owner, uint64_t epoch, int abandoned)
{
    char err[WH_ERRLEN];
    st_lease l;
    if (st_db_lease_release(f->db, "t", "a", owner, epoch, abandoned, &l, err, sizeof(err)) !=
        WH_OK)
        fail_msg("release by %s: %s", owner, err);
}

static void renew(fx *f, const char *owner, uint64_t epoch)
{
    char err[WH_ERRLEN];
    st_lease l;
    if (st_db_lease_renew(f->db, "t", "a", owner, epoch, 60000, 0, &l, err, sizeof(err)) != WH_OK)
        fail_msg("renew by %s: %s", owner, err);
    assert_true(l.granted);
}

/* The review's repro: a holder stops with a request unanswered at the
 * target and releases the lease with abandoned; the store restarts before
 * the next acquire. The next holder must be told taken_over (it waits for
 * the abandoned request's timeout), once. */
static void test_abandoned_survives_restart(void **state)
{
    fx *f = *state;
    st_lease l = acquire(f, "r1", 60000, 8000);
    assert_true(l.granted);
    release(f, "r1", l.epoch, 1);
    restart(f);
    l = acquire(f, "r2", 60000, 2000);
    assert_true(l.granted);
    assert_true(l.taken_over);
    /* the release's time went with the old process: counted from the load */
    assert_true(l.expired_ms_ago >= 0 && l.expired_ms_ago < 60000);
    assert_int_equal(l.request_timeout_ms, 8000);
    /* told until r2 renews (test_takeover_told_until_renewed); then the
     * mark is gone, restart or not */
    renew(f, "r2", l.epoch);
    l = acquire(f, "r2", 60000, 2000);
    assert_true(l.granted);
    assert_false(l.taken_over);
    restart(f);
    l = acquire(f, "r2", 60000, 2000);
    assert_true(l.granted);
    assert_false(l.taken_over);
    release(f, "r2", l.epoch, 0);
    restart(f);
    l = acquire(f, "r3", 60000, 2000);
    assert_true(l.granted);
    assert_false(l.taken_over); /* released with nothing left at the target */
}

/* A takeover is told to every Acquire of its new holder until that holder
 * renews the lease: the reply that told it first may have been lost (the
 * holder's call timed out, or the store restarted after writing the
 * grant), and the holder's next Acquire is granted as its own lease.
 * Before, the store told it once: the holder, told nothing the second
 * time, posted at once while requests of the holder before were still at
 * the target (test_lease_reply_lost, test_lease_reply_restart). */
static void test_takeover_told_until_renewed(void **state)
{
    fx *f = *state;
    st_lease l = acquire(f, "r1", 60000, 8000);
    release(f, "r1", l.epoch, 1);
    l = acquire(f, "r2", 60000, 2000);
    assert_true(l.granted);
    assert_true(l.taken_over);
    uint64_t e2 = l.epoch;
    /* the reply is lost; r2 acquires again: the same takeover, counted from
     * the release, not from this call */
    usleep(50 * 1000);
    l = acquire(f, "r2", 60000, 2000);
    assert_true(l.granted);
    assert_true(l.taken_over);
    assert_int_equal(l.epoch, e2);
    assert_true(l.expired_ms_ago >= 50);
    assert_int_equal(l.request_timeout_ms, 8000);
    /* lost again, by a restart: stored with the grant, told from the load */
    restart(f);
    l = acquire(f, "r2", 60000, 2000);
    assert_true(l.granted);
    assert_true(l.taken_over);
    assert_int_equal(l.epoch, e2);
    assert_true(l.expired_ms_ago >= 0 && l.expired_ms_ago < 60000);
    assert_int_equal(l.request_timeout_ms, 8000);
    /* r2 renews: it got a grant, and is told no more, restart or not */
    renew(f, "r2", e2);
    l = acquire(f, "r2", 60000, 2000);
    assert_false(l.taken_over);
    restart(f);
    l = acquire(f, "r2", 60000, 2000);
    assert_true(l.granted);
    assert_false(l.taken_over);
    /* its own lease lapsed and acquired again: a takeover too, told until
     * it renews, also after a restart */
    l = acquire(f, "r2", 100, 2000);
    usleep(150 * 1000);
    l = acquire(f, "r2", 60000, 2000);
    assert_true(l.taken_over);
    restart(f);
    l = acquire(f, "r2", 60000, 2000);
    assert_true(l.granted);
    assert_true(l.taken_over);
    /* a release ends it: the next holder after a clean one is told none */
    release(f, "r2", l.epoch, 0);
    l = acquire(f, "r3", 60000, 2000);
    assert_true(l.granted);
    assert_false(l.taken_over);
    /* a takeover never renewed whose lease then lapsed: the next holder
     * takes it over from that lapse (the mark is not its) */
    l = acquire(f, "r3", 100, 2000);
    usleep(150 * 1000);
    l = acquire(f, "r4", 100, 2000);
    assert_true(l.taken_over);
    usleep(150 * 1000);
    l = acquire(f, "r5", 60000, 2000);
    assert_true(l.granted);
    assert_true(l.taken_over);
    assert_true(l.expired_ms_ago < 150);
    renew(f, "r5", l.epoch);
    l = acquire(f, "r5", 60000, 2000);
    assert_false(l.taken_over);
}

/* A removed target (st_db_dlq_drop, with its offset dropped) keeps its
 * lease with its holder: a request of it may still be at the receiver, and
 * the target created again under the name must not be taken by another
 * dispatcher at once (before, the removal freed the lease and the next
 * acquire by anyone was granted without a takeover wait). The holder
 * renews it, across a restart too, and releases it itself. */
static void test_removal_keeps_lease(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    st_lease l = acquire(f, "r1", 60000, 8000);
    assert_true(l.granted);
    uint64_t ep = l.epoch;
    assert_int_equal(st_db_dlq_drop(f->db, "t", "a", err, sizeof(err)), WH_OK);
    st_lease o = acquire(f, "r2", 60000, 2000);
    assert_false(o.granted);
    assert_string_equal(o.owner, "r1");
    assert_int_equal(
        st_db_lease_renew(f->db, "t", "a", "r1", ep, 60000, 8000, &l, err, sizeof(err)), WH_OK);
    assert_true(l.granted);
    assert_int_equal(l.epoch, ep);
    restart(f);
    o = acquire(f, "r2", 60000, 2000);
    assert_false(o.granted);
    release(f, "r1", ep, 0);
    o = acquire(f, "r2", 60000, 2000);
    assert_true(o.granted);
    assert_false(o.taken_over);
    assert_true(o.epoch > ep); /* the old holder stays fenced */
}

/* A removed tenant (st_db_tenant_drop: every target of it at once) keeps
 * its targets' leases with their holders too, as a removed target does:
 * before, the drop freed them, and the tenant created again with a target
 * of the same name was granted to another dispatcher at once, without a
 * takeover wait, while the old holder's request could still be at the
 * receiver. The holder renews and releases it though the tenant's column
 * families are gone (in memory: nothing of the tenant is stored), and a
 * release with requests abandoned still makes the next holder wait. */
static void test_tenant_removal_keeps_lease(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    st_lease l = acquire(f, "r1", 60000, 8000);
    assert_true(l.granted);
    uint64_t ep = l.epoch;
    assert_int_equal(st_db_tenant_drop(f->db, "t", err, sizeof(err)), WH_OK);
    assert_int_equal(
        st_db_lease_renew(f->db, "t", "a", "r1", ep, 60000, 8000, &l, err, sizeof(err)), WH_OK);
    assert_true(l.granted);
    /* created again under its name: still r1's */
    assert_int_equal(st_db_tenant_create(f->db, "t", err, sizeof(err)), WH_OK);
    st_lease o = acquire(f, "r2", 60000, 2000);
    assert_false(o.granted);
    assert_string_equal(o.owner, "r1");
    /* its next renewal stores it in the new column family: a restart
     * keeps it (before the renewal its L key was gone with the old one) */
    assert_int_equal(
        st_db_lease_renew(f->db, "t", "a", "r1", ep, 60000, 8000, &l, err, sizeof(err)), WH_OK);
    assert_true(l.granted);
    restart(f);
    o = acquire(f, "r2", 60000, 2000);
    assert_false(o.granted);
    assert_string_equal(o.owner, "r1");
    assert_int_equal(o.epoch, ep);
    release(f, "r1", ep, 0);
    o = acquire(f, "r2", 60000, 2000);
    assert_true(o.granted);
    assert_false(o.taken_over);
    assert_true(o.epoch > ep); /* the old holder stays fenced */
    uint64_t ep2 = o.epoch;

    /* removed for good, released by its holder with a request abandoned:
     * in memory only (no column family to write to), and the next holder
     * of a tenant created again waits */
    assert_int_equal(st_db_tenant_drop(f->db, "t", err, sizeof(err)), WH_OK);
    release(f, "r2", ep2, 1);
    assert_int_equal(st_db_tenant_create(f->db, "t", err, sizeof(err)), WH_OK);
    l = acquire(f, "r1", 60000, 2000);
    assert_true(l.granted);
    assert_true(l.taken_over);
    assert_int_equal(l.request_timeout_ms, 2000);
    assert_true(l.epoch > ep2);
}

/* The wait is by the longest request timeout of the holders whose requests
 * may still be at the target, not by the new holder's own. */
static void test_request_timeout_kept(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    st_lease l = acquire(f, "r1", 60000, 30000);
    assert_true(l.granted);
    assert_false(l.taken_over);
    uint64_t e1 = l.epoch;
    /* the timeout lowered at runtime: the longest told stays */
    assert_int_equal(
        st_db_lease_renew(f->db, "t", "a", "r1", e1, 60000, 5000, &l, err, sizeof(err)), WH_OK);
    assert_true(l.granted);
    /* r1 lapses (short TTL); r2, whose timeout is 2 s, takes over */
    l = acquire(f, "r1", 100, 5000);
    assert_true(l.granted);
    usleep(150 * 1000);
    l = acquire(f, "r2", 60000, 2000);
    assert_true(l.granted);
    assert_true(l.taken_over);
    assert_int_equal(l.request_timeout_ms, 30000);
    /* r2 stops in its wait (requests of r1 may still run): its release is
     * abandoned, and r3 is told r1's timeout still */
    release(f, "r2", l.epoch, 1);
    l = acquire(f, "r3", 60000, 1000);
    assert_true(l.taken_over);
    assert_int_equal(l.request_timeout_ms, 30000);
    /* a clean release: the next holder starts from its own timeout */
    release(f, "r3", l.epoch, 0);
    l = acquire(f, "r4", 60000, 1000);
    assert_true(l.granted);
    assert_false(l.taken_over);
    /* a longer timeout told by a renewal is stored at once: a restart
     * keeps it */
    assert_int_equal(
        st_db_lease_renew(f->db, "t", "a", "r4", l.epoch, 60000, 4000, &l, err, sizeof(err)),
        WH_OK);
    restart(f);
    l = acquire(f, "r4", 60000, 1000); /* its lease again after the restart */
    assert_true(l.granted);
    release(f, "r4", l.epoch, 1);
    restart(f);
    l = acquire(f, "r5", 60000, 1000);
    assert_true(l.taken_over);
    assert_int_equal(l.request_timeout_ms, 4000);
    /* a holder that tells none (an older dispatcher): 0 */
    release(f, "r5", l.epoch, 0);
    l = acquire(f, "r6", 60000, 0);
    release(f, "r6", l.epoch, 1);
    l = acquire(f, "r7", 60000, 0);
    assert_true(l.taken_over);
    assert_int_equal(l.request_timeout_ms, 0);
}

/* Writes the lease value of t/consumer as given. */
static void put_raw(fx *f, const char *consumer, const uint8_t *v, size_t vl)
{
    char err[WH_ERRLEN];
    st_tenant *t;
    assert_int_equal(st_dbi_ten_open(f->db, "t", ST_DBI_CREATE, &t, err, sizeof(err)), WH_OK);
    char k[ST_KEY_MAX];
    size_t kl = st_dbi_key_prefix(k, 'L', "t");
    memcpy(k + kl, consumer, strlen(consumer));
    kl += strlen(consumer);
    char *e = NULL;
    rocksdb_put_cf(f->db->rdb, f->db->wo, t->meta, k, kl, (const char *)v, vl, &e);
    st_dbi_ten_done(t);
    if (e)
        fail_msg("put: %s", e);
}

/* epoch(8) ttl_ms(4) owner (owner_len bytes) into v; returns the length. */
static size_t lease_value(uint8_t *v, uint64_t epoch, const char *owner, size_t owner_len)
{
    wh_put_be64(v, epoch);
    wh_put_be32(v + 8, 60000);
    memcpy(v + 12, owner, owner_len);
    return 12 + owner_len;
}

/* Writes a lease value in the format before the abandoned mark and the
 * request timeout: epoch(8) ttl_ms(4) owner. */
static void put_old_value(fx *f, const char *consumer, uint64_t epoch, const char *owner)
{
    uint8_t v[12 + ST_OWNER_MAX];
    put_raw(f, consumer, v, lease_value(v, epoch, owner, strlen(owner)));
}

static void test_old_values_load(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    put_old_value(f, "a", 7, "old1"); /* held */
    put_old_value(f, "b", 9, "");     /* released */
    restart(f);
    st_lease l = acquire(f, "r2", 60000, 1000);
    assert_false(l.granted); /* old1's lease is live for its TTL again */
    assert_string_equal(l.owner, "old1");
    assert_int_equal(l.epoch, 7);
    assert_int_equal(st_db_lease_acquire(f->db, "t", "b", "r2", 60000, 1000, &l, err, sizeof(err)),
                     WH_OK);
    assert_true(l.granted);
    assert_int_equal(l.epoch, 10);
    assert_false(l.taken_over);
}

/* A request timeout over dispatcher.http_timeout_ms's maximum is refused
 * with an error naming it: kept as the longest told, it would be what
 * every later takeover waits for (up to 49 days for UINT32_MAX). */
static void test_request_timeout_bounded(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN] = "";
    st_lease l;
    assert_int_equal(
        st_db_lease_acquire(f->db, "t", "a", "r1", 60000, UINT32_MAX, &l, err, sizeof(err)),
        WH_ERR);
    assert_non_null(strstr(err, "request_timeout_ms"));
    assert_false(l.granted);
    l = acquire(f, "r1", 60000, ST_LEASE_REQ_TIMEOUT_MAX);
    assert_true(l.granted);
    uint64_t e1 = l.epoch;
    err[0] = '\0';
    assert_int_equal(st_db_lease_renew(f->db, "t", "a", "r1", e1, 60000,
                                       ST_LEASE_REQ_TIMEOUT_MAX + 1, &l, err, sizeof(err)),
                     WH_ERR);
    assert_non_null(strstr(err, "request_timeout_ms"));
    release(f, "r1", e1, 1);
    l = acquire(f, "r2", 60000, 1000);
    assert_true(l.taken_over);
    assert_int_equal(l.request_timeout_ms, ST_LEASE_REQ_TIMEOUT_MAX);
}

/* Stored values this store did not write (corrupt, cut, or by another
 * program) load without a crash or an overflow: a lease whose owner or
 * tail cannot be read keeps its epoch and is a takeover for the next
 * holder (a held one's cut tail: for its holder until it renews); a stored timeout over the maximum
 * is read as the maximum; an owner of the maximum length with the tail loads whole. */
static void test_bad_values_load(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    uint8_t v[512];
    size_t vl;
    /* b: released, the tail cut after 3 of its 6 bytes; b2: held, the
     * same */
    vl = lease_value(v, 5, "", 0);
    memcpy(v + vl, "\0\0\0", 3);
    put_raw(f, "b", v, vl + 3);
    vl = lease_value(v, 4, "old1", 4);
    memcpy(v + vl, "\0\0\0", 3);
    put_raw(f, "b2", v, vl + 3);
    /* b3: held, the same: the cut part may be the flag saying its holder
     * got a takeover it has not renewed yet (the reply that told it lost) */
    vl = lease_value(v, 3, "old3", 4);
    memcpy(v + vl, "\0\2\0", 3);
    put_raw(f, "b3", v, vl + 3);
    /* c: an owner longer than any (200 bytes) */
    char longer[200];
    memset(longer, 'x', sizeof(longer));
    put_raw(f, "c", v, lease_value(v, 6, longer, sizeof(longer)));
    /* d: an owner with a control byte */
    put_raw(f, "d", v, lease_value(v, 7, "ab\001cd", 5));
    /* e: released with requests abandoned, a timeout of UINT32_MAX */
    vl = lease_value(v, 8, "", 0);
    v[vl] = 0;
    v[vl + 1] = 1;
    wh_put_be32(v + vl + 2, UINT32_MAX);
    put_raw(f, "e", v, vl + 6);
    /* g: an owner of the maximum length, with the tail */
    char maxo[ST_OWNER_MAX + 1];
    memset(maxo, 'm', ST_OWNER_MAX);
    maxo[ST_OWNER_MAX] = '\0';
    vl = lease_value(v, 9, maxo, ST_OWNER_MAX);
    v[vl] = 0;
    v[vl + 1] = 0;
    wh_put_be32(v + vl + 2, 7000);
    put_raw(f, "g", v, vl + 6);
    /* h: shorter than epoch and ttl_ms */
    put_raw(f, "h", (const uint8_t *)"abc", 3);
    restart(f);
    const char *bad[] = {"b", "c", "d"};
    uint64_t epochs[] = {5, 6, 7};
    st_lease l;
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(
            st_db_lease_acquire(f->db, "t", bad[i], "r2", 60000, 1000, &l, err, sizeof(err)),
            WH_OK);
        assert_true(l.granted);
        assert_true(l.taken_over);
        assert_int_equal(l.epoch, epochs[i] + 1);
    }
    /* its owner readable: live for its TTL again, renewable */
    assert_int_equal(st_db_lease_acquire(f->db, "t", "b2", "r2", 60000, 1000, &l, err, sizeof(err)),
                     WH_OK);
    assert_false(l.granted);
    assert_string_equal(l.owner, "old1");
    assert_int_equal(st_db_lease_renew(f->db, "t", "b2", "old1", 4, 60000, 0, &l, err, sizeof(err)),
                     WH_OK);
    assert_true(l.granted);
    /* read as a takeover old3 has not renewed: told to its Acquire (counted
     * from the load) until it renews. Before, its Acquire was a plain
     * grant, and a holder whose takeover reply was lost posted at once */
    assert_int_equal(
        st_db_lease_acquire(f->db, "t", "b3", "old3", 60000, 1000, &l, err, sizeof(err)), WH_OK);
    assert_true(l.granted);
    assert_true(l.taken_over);
    assert_int_equal(l.epoch, 3);
    assert_true(l.expired_ms_ago >= 0 && l.expired_ms_ago < 60000);
    assert_int_equal(st_db_lease_renew(f->db, "t", "b3", "old3", 3, 60000, 0, &l, err, sizeof(err)),
                     WH_OK);
    assert_true(l.granted);
    assert_int_equal(
        st_db_lease_acquire(f->db, "t", "b3", "old3", 60000, 1000, &l, err, sizeof(err)), WH_OK);
    assert_true(l.granted);
    assert_false(l.taken_over);
    assert_int_equal(st_db_lease_acquire(f->db, "t", "e", "r2", 60000, 1000, &l, err, sizeof(err)),
                     WH_OK);
    assert_true(l.granted);
    assert_true(l.taken_over);
    assert_int_equal(l.request_timeout_ms, ST_LEASE_REQ_TIMEOUT_MAX);
    assert_int_equal(st_db_lease_acquire(f->db, "t", "g", "r2", 60000, 1000, &l, err, sizeof(err)),
                     WH_OK);
    assert_false(l.granted); /* live for its TTL again */
    assert_string_equal(l.owner, maxo);
    assert_int_equal(st_db_lease_renew(f->db, "t", "g", maxo, 9, 100, 0, &l, err, sizeof(err)),
                     WH_OK);
    assert_true(l.granted);
    assert_int_equal(st_db_lease_acquire(f->db, "t", "h", "r2", 60000, 1000, &l, err, sizeof(err)),
                     WH_OK);
    assert_true(l.granted);
    assert_false(l.taken_over);
}

/* A lease acquired for a consumer never read yet registers it (stored at
 * (0,0)): its holder's first Read may come only after a takeover wait, and
 * an unregistered consumer let the GC watermark pass it, so the events the
 * other consumers passed meanwhile were dropped before it read them (a
 * target started at the middle of the stream in test_leases). */
static void test_acquire_registers_consumer(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    st_offset off;
    assert_int_equal(st_db_commit_epoch(f->db, "t", "b", 100, 0, 0, &off, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_offset_live(f->db, "t", "a"), 0);
    st_lease l = acquire(f, "r1", 60000, 30000);
    assert_true(l.granted);
    assert_int_equal(st_db_offset_live(f->db, "t", "a"), 1);
    uint64_t wl = 0;
    uint32_t ws = 0;
    assert_int_equal(st_db_watermark(f->db, "t", &wl, &ws), WH_OK);
    assert_int_equal(wl, 0); /* held at "a"'s (0,0), not at "b"'s 100 */
    restart(f);
    assert_int_equal(st_db_offset_live(f->db, "t", "a"), 1);
    assert_int_equal(st_db_offset_info(f->db, "t", "a", &off, err, sizeof(err)), WH_OK);
    assert_int_equal(off.lsn, 0);
    assert_int_equal(st_db_watermark(f->db, "t", &wl, &ws), WH_OK);
    assert_int_equal(wl, 0);
}

/* A lease call on a thread of its own (its write may wait at the gate). */
typedef struct lcall {
    fx *f;
    const char *owner;
    uint64_t epoch; /* 0: acquire, else release of that epoch */
    int rc;
    pthread_t th;
} lcall;

static void *lcall_main(void *arg)
{
    lcall *c = arg;
    char err[WH_ERRLEN];
    st_lease l;
    c->rc =
        c->epoch == 0
            ? st_db_lease_acquire(c->f->db, "t", "a", c->owner, 60000, 0, &l, err, sizeof(err))
            : st_db_lease_release(c->f->db, "t", "a", c->owner, c->epoch, 0, &l, err, sizeof(err));
    return NULL;
}

static void lcall_start(lcall *c, fx *f, const char *owner, uint64_t epoch)
{
    c->f = f;
    c->owner = owner;
    c->epoch = epoch;
    c->rc = WH_ERR;
    assert_int_equal(pthread_create(&c->th, NULL, lcall_main, c), 0);
}

/* A lease list (st_db_lease_each, what LeaseList answers) on a thread of
 * its own: t/a's lease as listed. */
typedef struct llist {
    fx *f;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, found;
    st_lease l;
    pthread_t th;
} llist;

static int llist_entry(void *arg, const char *tenant, const char *consumer, const st_lease *l)
{
    llist *c = arg;
    if (strcmp(tenant, "t") == 0 && strcmp(consumer, "a") == 0) {
        c->l = *l;
        c->found = 1;
    }
    return 0;
}

static void *llist_main(void *arg)
{
    llist *c = arg;
    st_db_lease_each(c->f->db, llist_entry, c);
    pthread_mutex_lock(&c->mu);
    c->done = 1;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Lists the leases while the lease write of w waits at the closed gate:
 * the list must answer within 10 s, with t/a's lease as committed before
 * that write. Opens the gate and waits for w either way. */
static st_lease list_during(fx *f, lcall *w, const char *what)
{
    llist c = {.f = f};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    assert_int_equal(pthread_create(&c.th, NULL, llist_main, &c), 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    pthread_mutex_lock(&c.mu);
    while (!c.done && pthread_cond_timedwait(&c.cv, &c.mu, &ts) == 0)
        ;
    int done = c.done;
    pthread_mutex_unlock(&c.mu);
    gate_set(0);
    pthread_join(c.th, NULL);
    pthread_join(w->th, NULL);
    pthread_mutex_destroy(&c.mu);
    pthread_cond_destroy(&c.cv);
    if (!done)
        fail_msg("the lease list waited for %s's write (its WAL sync held) instead of answering "
                 "from the committed lease",
                 what);
    assert_int_equal(w->rc, WH_OK);
    assert_true(c.found);
    return c.l;
}

static st_lease list_now(fx *f)
{
    llist c = {.f = f};
    st_db_lease_each(f->db, llist_entry, &c);
    assert_true(c.found);
    return c.l;
}

/* The lease list (LeaseList: every dispatcher's round, the admin's replica
 * count) answers while a lease write of one entry waits for its WAL sync,
 * from the lease as last committed: a release or a grant is listed once it
 * is stored, never before. Before, the list took each entry's writer lock,
 * held across that sync, and every replica's LeaseList waited behind the
 * one slow write. */
static void test_list_not_behind_write(void **state)
{
    fx *f = *state;
    st_lease l = acquire(f, "r1", 60000, 0);
    assert_true(l.granted);
    uint64_t e1 = l.epoch;

    /* r1's release: its write waits for the sync; listed as r1's still */
    gate_set(1);
    lcall w;
    lcall_start(&w, f, "r1", e1);
    if (!gate_holds()) {
        gate_set(0);
        pthread_join(w.th, NULL);
        fail_msg("the release's write never reached the sync gate");
    }
    l = list_during(f, &w, "a release");
    assert_string_equal(l.owner, "r1");
    assert_int_equal(l.epoch, e1);
    assert_true(l.expires_in_ms > 0);
    l = list_now(f); /* stored: free */
    assert_string_equal(l.owner, "");
    assert_int_equal(l.epoch, e1);

    /* r2's grant: not listed before its write is synced */
    gate_set(1);
    lcall_start(&w, f, "r2", 0);
    if (!gate_holds()) {
        gate_set(0);
        pthread_join(w.th, NULL);
        fail_msg("the grant's write never reached the sync gate");
    }
    l = list_during(f, &w, "a grant");
    assert_string_equal(l.owner, "");
    assert_int_equal(l.epoch, e1);
    l = list_now(f);
    assert_string_equal(l.owner, "r2");
    assert_int_equal(l.epoch, e1 + 1);
    assert_true(l.expires_in_ms > 0);

    /* and after a restart, as loaded */
    restart(f);
    l = list_now(f);
    assert_string_equal(l.owner, "r2");
    assert_int_equal(l.epoch, e1 + 1);
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test_setup_teardown(test_abandoned_survives_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_takeover_told_until_renewed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_timeout_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_removal_keeps_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenant_removal_keeps_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_values_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_timeout_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_values_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acquire_registers_consumer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_not_behind_write, setup, teardown),
    };
    return cmocka_run_group_tests(t, NULL, NULL);
}
