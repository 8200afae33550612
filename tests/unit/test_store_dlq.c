/* Unit tests of the store's dead-letter queue and dispatcher leases (st_db)
 * against a real RocksDB in a temporary directory: one batch for dead
 * letters and offset, epoch and lease fencing, list paging, replay and
 * purge, drop of a removed target, leases across a restart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stdb_fixture.h"

typedef stdb_fx fx;

static int setup(void **state)
{
    static const st_db_opts o = {0};
    *state = stdb_fx_new("test_store_dlq", &o);
    return 0;
}

typedef struct got {
    size_t n;
    uint64_t lsn[64];
    uint32_t seq[64];
    char val[64][32];
} got;

static int collect(void *arg, uint64_t lsn, uint32_t seq, const void *val, size_t len)
{
    got *g = arg;
    if (g->n < 64) {
        g->lsn[g->n] = lsn;
        g->seq[g->n] = seq;
        snprintf(g->val[g->n], sizeof(g->val[0]), "%.*s", (int)len, (const char *)val);
        g->n++;
    }
    return 0;
}

static st_dlq_item item(uint64_t lsn, uint32_t seq, const char *v)
{
    st_dlq_item it = {lsn, seq, v, strlen(v)};
    return it;
}

static void test_write_moves_offset(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    st_offset off;
    assert_int_equal(st_db_register(f->db, "t", "a", &off, err, sizeof(err)), WH_OK);
    st_dlq_item it[2] = {item(100, 0, "r1"), item(100, 1, "r2")};
    assert_int_equal(st_db_dlq_write(f->db, "t", "a", it, 2, 1, 100, 2, off.epoch, 0, 0, 0, 0, 0,
                                     &off, err, sizeof(err)),
                     WH_OK);
    assert_int_equal(off.lsn, 100);
    assert_int_equal(off.seq, 2);
    /* idempotent: the same request again */
    assert_int_equal(st_db_dlq_write(f->db, "t", "a", it, 2, 1, 100, 2, off.epoch, 0, 0, 0, 0, 0,
                                     &off, err, sizeof(err)),
                     WH_OK);
    uint64_t n;
    assert_int_equal(st_db_dlq_count(f->db, "t", "a", 'Q', 1000, &n, err, sizeof(err)), WH_OK);
    assert_int_equal(n, 2);
    /* a record after pos is refused */
    st_dlq_item late = item(200, 0, "x");
    assert_int_equal(st_db_dlq_write(f->db, "t", "a", &late, 1, 1, 150, 0, off.epoch, 0, 0, 0, 0, 0,
                                     &off, err, sizeof(err)),
                     WH_ERR);
    assert_non_null(strstr(err, "records[0]"));
    /* stale offset epoch (the operator moved the offset): refused, nothing written */
    st_offset prev, now;
    assert_int_equal(st_db_set_offset(f->db, "t", "a", 50, 0, &prev, &now, err, sizeof(err)),
                     WH_OK);
    st_dlq_item it3 = item(120, 0, "r3");
    assert_int_equal(st_db_dlq_write(f->db, "t", "a", &it3, 1, 1, 120, 0, off.epoch, 0, 0, 0, 0, 0,
                                     &off, err, sizeof(err)),
                     ST_DB_STALE);
    assert_non_null(strstr(err, "epoch"));
    assert_int_equal(st_db_dlq_count(f->db, "t", "a", 'Q', 1000, &n, err, sizeof(err)), WH_OK);
    assert_int_equal(n, 2);
    /* the offset never moves backwards through a dead-letter write */
    assert_int_equal(st_db_dlq_write(f->db, "t", "a", &it3, 1, 1, 10, 0, now.epoch, 0, 0, 0, 0, 0,
                                     &off, err, sizeof(err)),
                     WH_ERR); /* 120 > pos 10 */
    assert_int_equal(st_db_dlq_write(f->db, "t", "a", NULL, 0, 1, 10, 0, now.epoch, 0, 0, 0, 0, 0,
                                     &off, err, sizeof(err)),
                     WH_OK);
    assert_int_equal(off.lsn, 50);
}

static void test_list_get_replay_purge(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    st_offset off;
    st_db_register(f->db, "t", "a", &off, err, sizeof(err));
    st_dlq_item it[5];
    const char *v[5] = {"v0", "v1", "v2", "v3", "v4"};
    for (int i = 0; i < 5; i++)
        it[i] = item(10 + (uint64_t)i, (uint32_t)i, v[i]);
    assert_int_equal(st_db_dlq_write(f->db, "t", "a", it, 5, 1, 20, 0, off.epoch, 0, 0, 0, 0, 0,
                                     &off, err, sizeof(err)),
                     WH_OK);
    /* another target's queue and a tenant with a longer name stay apart */
    st_db_register(f->db, "t", "ab", &off, err, sizeof(err));
    st_dlq_item o1 = item(11, 0, "other");
    assert_int_equal(st_db_dlq_write(f->db, "t", "ab", &o1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, NULL, err,
                                     sizeof(err)),
                     WH_OK);
    got g = {0};
    int more = 0;
    assert_int_equal(st_db_dlq_list(f->db, "t", "a", 'Q', 0, 0, 0, 2, 1 << 20, collect, &g, &more,
                                    err, sizeof(err)),
                     WH_OK);
    assert_int_equal(g.n, 2);
    assert_true(more);
    assert_string_equal(g.val[0], "v0");
    assert_string_equal(g.val[1], "v1");
    got g2 = {0};
    assert_int_equal(st_db_dlq_list(f->db, "t", "a", 'Q', 1, g.lsn[1], g.seq[1], 10, 1 << 20,
                                    collect, &g2, &more, err, sizeof(err)),
                     WH_OK);
    assert_int_equal(g2.n, 3);
    assert_false(more);
    assert_string_equal(g2.val[0], "v2");
    int found = 0;
    got g3 = {0};
    assert_int_equal(st_db_dlq_get(f->db, "t", "a", 13, 3, collect, &g3, &found, err, sizeof(err)),
                     WH_OK);
    assert_true(found);
    assert_string_equal(g3.val[0], "v3");
    assert_int_equal(st_db_dlq_get(f->db, "t", "a", 13, 4, collect, &g3, &found, err, sizeof(err)),
                     WH_OK);
    assert_false(found);
    /* replay two by position (one unknown is skipped), in position order */
    uint64_t l[3] = {14, 11, 99};
    uint32_t s[3] = {4, 1, 0};
    uint32_t moved = 0;
    assert_int_equal(st_db_dlq_replay(f->db, "t", "a", 0, l, s, 3, &moved, err, sizeof(err)),
                     WH_OK);
    assert_int_equal(moved, 2);
    uint64_t n;
    st_db_dlq_count(f->db, "t", "a", 'Q', 1000, &n, err, sizeof(err));
    assert_int_equal(n, 3);
    got r = {0};
    assert_int_equal(st_db_dlq_list(f->db, "t", "a", 'R', 0, 0, 0, 10, 1 << 20, collect, &r, &more,
                                    err, sizeof(err)),
                     WH_OK);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.val[0], "v1");
    assert_string_equal(r.val[1], "v4");
    /* ack the first replayed event */
    uint32_t del = 0;
    assert_int_equal(st_db_replay_ack(f->db, "t", "a", 11, 1, 0, 0, &del, err, sizeof(err)), WH_OK);
    assert_int_equal(del, 1);
    st_db_dlq_count(f->db, "t", "a", 'R', 1000, &n, err, sizeof(err));
    assert_int_equal(n, 1);
    /* a replayed event failing again: dead letter + replay ack in one batch */
    st_dlq_item again = item(14, 4, "v4b");
    assert_int_equal(st_db_dlq_write(f->db, "t", "a", &again, 1, 0, 0, 0, 0, 0, 1, 14, 4, 0, NULL,
                                     err, sizeof(err)),
                     WH_OK);
    st_db_dlq_count(f->db, "t", "a", 'R', 1000, &n, err, sizeof(err));
    assert_int_equal(n, 0);
    st_db_dlq_count(f->db, "t", "a", 'Q', 1000, &n, err, sizeof(err));
    assert_int_equal(n, 4);
    /* purge all */
    assert_int_equal(st_db_dlq_purge(f->db, "t", "a", 1, NULL, NULL, 0, &del, err, sizeof(err)),
                     WH_OK);
    assert_int_equal(del, 4);
    st_db_dlq_count(f->db, "t", "a", 'Q', 1000, &n, err, sizeof(err));
    assert_int_equal(n, 0);
    st_db_dlq_count(f->db, "t", "ab", 'Q', 1000, &n, err, sizeof(err));
    assert_int_equal(n, 1);
    /* a removed target: its queues go */
    uint64_t l1 = 11;
    uint32_t s1 = 0;
    assert_int_equal(st_db_dlq_replay(f->db, "t", "ab", 0, &l1, &s1, 1, &moved, err, sizeof(err)),
                     WH_OK);
    st_dlq_item o2 = item(12, 0, "other2");
    st_db_dlq_write(f->db, "t", "ab", &o2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, NULL, err, sizeof(err));
    assert_int_equal(st_db_dlq_drop(f->db, "t", "ab", err, sizeof(err)), WH_OK);
    st_db_dlq_count(f->db, "t", "ab", 'Q', 1000, &n, err, sizeof(err));
    assert_int_equal(n, 0);
    st_db_dlq_count(f->db, "t", "ab", 'R', 1000, &n, err, sizeof(err));
    assert_int_equal(n, 0);
}

/* A replay queued while a replay batch is in flight: the ack of that batch
 * (ReplayAck, or a dead letter written again with its replay ack) removes
 * only entries that batch could have read, never one queued after its read
 * (which would then be in neither queue, never delivered). */
static size_t queue_n(fx *f, char kind)
{
    char err[WH_ERRLEN];
    uint64_t n = 0;
    assert_int_equal(st_db_dlq_count(f->db, "t", "a", kind, 1000, &n, err, sizeof(err)), WH_OK);
    return (size_t)n;
}

static void replay1(fx *f, uint64_t lsn)
{
    char err[WH_ERRLEN];
    uint32_t s = 0, moved = 0;
    assert_int_equal(st_db_dlq_replay(f->db, "t", "a", 0, &lsn, &s, 1, &moved, err, sizeof(err)),
                     WH_OK);
    assert_int_equal(moved, 1);
}

static void test_replay_ack_generation(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    st_offset off;
    assert_int_equal(st_db_register(f->db, "t", "a", &off, err, sizeof(err)), WH_OK);
    st_dlq_item it[4] = {item(7, 0, "e7"), item(10, 0, "e10"), item(15, 0, "e15"),
                         item(20, 0, "e20")};
    assert_int_equal(st_db_dlq_write(f->db, "t", "a", it, 4, 1, 20, 0, off.epoch, 0, 0, 0, 0, 0,
                                     &off, err, sizeof(err)),
                     WH_OK);
    /* replay 10; the dispatcher reads [10] ... */
    replay1(f, 10);
    uint64_t g1 = st_db_replay_gen(f->db, "t", "a");
    assert_true(g1 != 0);
    got r = {0};
    int more = 0;
    assert_int_equal(st_db_dlq_list(f->db, "t", "a", 'R', 0, 0, 0, 10, 1 << 20, collect, &r, &more,
                                    err, sizeof(err)),
                     WH_OK);
    assert_int_equal(r.n, 1);
    /* ... the operator replays 7 meanwhile; 10 is delivered and acked */
    replay1(f, 7);
    assert_true(st_db_replay_gen(f->db, "t", "a") != g1);
    uint32_t del = 0;
    assert_int_equal(st_db_replay_ack(f->db, "t", "a", 10, 0, 0, g1, &del, err, sizeof(err)),
                     WH_OK);
    assert_int_equal(queue_n(f, 'R'), 1); /* 7 waits for its own read */
    got r2 = {0};
    assert_int_equal(st_db_dlq_list(f->db, "t", "a", 'R', 0, 0, 0, 10, 1 << 20, collect, &r2, &more,
                                    err, sizeof(err)),
                     WH_OK);
    assert_int_equal(r2.n, 1);
    assert_int_equal(r2.lsn[0], 7);
    uint64_t g2 = st_db_replay_gen(f->db, "t", "a");
    assert_int_equal(st_db_replay_ack(f->db, "t", "a", 7, 0, 0, g2, &del, err, sizeof(err)), WH_OK);
    assert_int_equal(queue_n(f, 'R'), 0);
    /* a replayed event failing again while another replay is queued: its
     * dead letter is written back, the queued one stays */
    replay1(f, 20);
    uint64_t g3 = st_db_replay_gen(f->db, "t", "a");
    replay1(f, 15);
    st_dlq_item again = item(20, 0, "e20b");
    assert_int_equal(st_db_dlq_write(f->db, "t", "a", &again, 1, 0, 0, 0, 0, 0, 1, 20, 0, g3, NULL,
                                     err, sizeof(err)),
                     WH_OK);
    assert_int_equal(queue_n(f, 'R'), 1); /* 15 */
    assert_int_equal(queue_n(f, 'Q'), 1); /* 20 again */
    /* generation 0 (an ack that names none): everything up to its position */
    replay1(f, 20);
    assert_int_equal(queue_n(f, 'R'), 2);
    assert_int_equal(st_db_replay_ack(f->db, "t", "a", 20, 0, 0, 0, &del, err, sizeof(err)), WH_OK);
    assert_int_equal(queue_n(f, 'R'), 0);
}

static void test_lease_fencing(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    st_offset off;
    st_lease l;
    st_db_register(f->db, "t", "a", &off, err, sizeof(err));
    /* without a lease, epoch 0 commits */
    assert_int_equal(
        st_db_commit_fenced(f->db, "t", "a", 5, 0, off.epoch, 0, &off, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_lease_acquire(f->db, "t", "a", "r1", 60000, 0, &l, err, sizeof(err)),
                     WH_OK);
    assert_true(l.granted);
    uint64_t e1 = l.epoch;
    assert_true(e1 >= 1);
    /* another owner is refused while it is live */
    assert_int_equal(st_db_lease_acquire(f->db, "t", "a", "r2", 60000, 0, &l, err, sizeof(err)),
                     WH_OK);
    assert_false(l.granted);
    assert_string_equal(l.owner, "r1");
    /* re-acquire by the holder keeps the epoch (idempotent) */
    assert_int_equal(st_db_lease_acquire(f->db, "t", "a", "r1", 60000, 0, &l, err, sizeof(err)),
                     WH_OK);
    assert_true(l.granted);
    assert_int_equal(l.epoch, e1);
    assert_false(l.taken_over); /* the first grant took nothing over */
    /* commits: with the epoch ok; with 0 while leased refused */
    assert_int_equal(
        st_db_commit_fenced(f->db, "t", "a", 6, 0, off.epoch, e1, &off, err, sizeof(err)), WH_OK);
    assert_int_equal(
        st_db_commit_fenced(f->db, "t", "a", 7, 0, off.epoch, 0, &off, err, sizeof(err)),
        ST_DB_STALE);
    assert_non_null(strstr(err, "r1"));
    /* r1 pauses; its lease expires (short TTL); r2 takes over */
    assert_int_equal(st_db_lease_acquire(f->db, "t", "a", "r1", 100, 0, &l, err, sizeof(err)),
                     WH_OK);
    usleep(150 * 1000);
    assert_int_equal(st_db_lease_acquire(f->db, "t", "a", "r2", 60000, 0, &l, err, sizeof(err)),
                     WH_OK);
    assert_true(l.granted);
    uint64_t e2 = l.epoch;
    assert_true(e2 > e1);
    /* r1 let it lapse: r2 is told, with how long ago (r1's requests may
     * still be at the target) */
    assert_true(l.taken_over);
    assert_true(l.expired_ms_ago >= 0 && l.expired_ms_ago < 60000);
    /* the old owner's commit, renew and dead-letter write are refused */
    assert_int_equal(
        st_db_commit_fenced(f->db, "t", "a", 8, 0, off.epoch, e1, &off, err, sizeof(err)),
        ST_DB_STALE);
    assert_int_equal(off.lsn, 6);
    assert_int_equal(st_db_lease_renew(f->db, "t", "a", "r1", e1, 60000, 0, &l, err, sizeof(err)),
                     WH_OK);
    assert_false(l.granted);
    st_dlq_item it = item(8, 0, "x");
    assert_int_equal(st_db_dlq_write(f->db, "t", "a", &it, 1, 1, 8, 0, off.epoch, e1, 0, 0, 0, 0,
                                     &off, err, sizeof(err)),
                     ST_DB_STALE);
    uint32_t del;
    assert_int_equal(st_db_replay_ack(f->db, "t", "a", 8, 0, e1, 0, &del, err, sizeof(err)),
                     ST_DB_STALE);
    assert_int_equal(st_db_dlq_write(f->db, "t", "a", &it, 1, 1, 8, 0, off.epoch, e2, 0, 0, 0, 0,
                                     &off, err, sizeof(err)),
                     WH_OK);
    assert_int_equal(off.lsn, 8);
    /* renew by the holder; release frees it, the epoch stays */
    assert_int_equal(st_db_lease_renew(f->db, "t", "a", "r2", e2, 60000, 0, &l, err, sizeof(err)),
                     WH_OK);
    assert_true(l.granted);
    /* the lease survives a restart with its epoch and owner */
    stdb_fx_reopen(f);
    assert_int_equal(st_db_lease_acquire(f->db, "t", "a", "r1", 60000, 0, &l, err, sizeof(err)),
                     WH_OK);
    assert_false(l.granted);
    assert_string_equal(l.owner, "r2");
    assert_int_equal(l.epoch, e2);
    assert_int_equal(st_db_lease_release(f->db, "t", "a", "r2", e2, 0, &l, err, sizeof(err)),
                     WH_OK);
    assert_int_equal(st_db_lease_acquire(f->db, "t", "a", "r1", 60000, 0, &l, err, sizeof(err)),
                     WH_OK);
    assert_true(l.granted);
    assert_true(l.epoch > e2);
    assert_false(l.taken_over); /* released with nothing left at the target */
    /* released with requests abandoned: the next grant is a takeover, told
     * to its holder's Acquires until it renews (test_store_lease) */
    uint64_t e3 = l.epoch;
    assert_int_equal(st_db_lease_release(f->db, "t", "a", "r1", e3, 1, &l, err, sizeof(err)),
                     WH_OK);
    assert_int_equal(st_db_lease_acquire(f->db, "t", "a", "r2", 60000, 0, &l, err, sizeof(err)),
                     WH_OK);
    assert_true(l.granted);
    assert_true(l.taken_over);
    assert_true(l.expired_ms_ago >= 0 && l.expired_ms_ago < 60000);
    uint64_t e4 = l.epoch;
    assert_int_equal(st_db_lease_renew(f->db, "t", "a", "r2", e4, 60000, 0, &l, err, sizeof(err)),
                     WH_OK);
    assert_int_equal(st_db_lease_acquire(f->db, "t", "a", "r2", 60000, 0, &l, err, sizeof(err)),
                     WH_OK);
    assert_true(l.granted);
    assert_false(l.taken_over);
    /* bad arguments name the field */
    assert_int_equal(st_db_lease_acquire(f->db, "t", "a", "", 60000, 0, &l, err, sizeof(err)),
                     WH_ERR);
    assert_non_null(strstr(err, "owner"));
    assert_int_equal(st_db_lease_acquire(f->db, "t", "a", "r1", 5, 0, &l, err, sizeof(err)),
                     WH_ERR);
    assert_non_null(strstr(err, "ttl_ms"));
}

static int count_lease(void *arg, const char *tenant, const char *consumer, const st_lease *l)
{
    (void)tenant;
    (void)consumer;
    (void)l;
    (*(int *)arg)++;
    return 0;
}

static void count_owner(void *arg, const char *owner, const char *control)
{
    (void)owner;
    (void)control;
    (*(int *)arg)++;
}

typedef struct {
    const char *owner;
    char control[64];
} find_control;

static void owner_control(void *arg, const char *owner, const char *control)
{
    find_control *f = arg;
    if (strcmp(owner, f->owner) == 0)
        snprintf(f->control, sizeof(f->control), "%s", control);
}

/* A replica's announced control endpoint is kept with its owner entry; a
 * renewal (no control) leaves it, a new announcement replaces it. */
static void test_lease_owner_control(void **state)
{
    fx *f = *state;
    find_control fc = {.owner = "r1"};
    st_db_owners_live(f->db, "r1", "ipc:///x/dispatcher-r1.sock", 60000, NULL, NULL);
    st_db_owners_live(f->db, "r2", NULL, 60000, NULL, NULL);
    st_db_owners_live(f->db, "r1", NULL, 60000, NULL, NULL);
    st_db_owners_live(f->db, NULL, NULL, 0, owner_control, &fc);
    assert_string_equal(fc.control, "ipc:///x/dispatcher-r1.sock");
    fc.owner = "r2";
    st_db_owners_live(f->db, NULL, NULL, 0, owner_control, &fc);
    assert_string_equal(fc.control, "");
    fc.owner = "r1";
    st_db_owners_live(f->db, "r1", "tcp://host-b:7003", 60000, NULL, NULL);
    st_db_owners_live(f->db, NULL, NULL, 0, owner_control, &fc);
    assert_string_equal(fc.control, "tcp://host-b:7003");
}

static void test_lease_list_owners(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    st_lease l;
    st_db_lease_acquire(f->db, "t", "a", "r1", 60000, 0, &l, err, sizeof(err));
    st_db_lease_acquire(f->db, "t", "b", "r1", 60000, 0, &l, err, sizeof(err));
    int n = 0;
    st_db_lease_each(f->db, count_lease, &n);
    assert_int_equal(n, 2);
    int owners = 0;
    st_db_owners_live(f->db, "r1", NULL, 60000, NULL, NULL);
    st_db_owners_live(f->db, "r2", NULL, 100, NULL, NULL);
    st_db_owners_live(f->db, NULL, NULL, 0, count_owner, &owners);
    assert_int_equal(owners, 2);
    usleep(150 * 1000);
    owners = 0;
    st_db_owners_live(f->db, NULL, NULL, 0, count_owner, &owners);
    assert_int_equal(owners, 1); /* r2 was not seen within its TTL */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_moves_offset, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_lease_owner_control, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_list_get_replay_purge, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_replay_ack_generation, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_lease_fencing, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_lease_list_owners, setup, stdb_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
