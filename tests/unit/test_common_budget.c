/* Unit tests: wh_budget (memory plans, the check, the system's limit, the
 * metrics). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "wh_budget.h"
#include "wh_config.h"
#include "wh_ipc.h"
#include "wh_notify.h"
#include "wh_uds.h"
#include "wh_util.h"

#define MiB (1024LL * 1024LL)

static int64_t part(const wh_budget *b, const char *name)
{
    for (int i = 0; i < b->nparts; i++)
        if (strcmp(b->parts[i].name, name) == 0)
            return b->parts[i].bytes;
    fail_msg("no part %s", name);
    return -1;
}

static void test_sum_need_check(void **state)
{
    (void)state;
    wh_budget b;
    wh_budget_init(&b, "store");
    wh_budget_add(&b, "a", 100 * MiB, "setting a");
    wh_budget_add(&b, "b", 50 * MiB, "setting %s", "b");
    wh_budget_add(&b, "neg", -5, "counts as 0");
    assert_int_equal(wh_budget_sum(&b), 150 * MiB);
    assert_int_equal(wh_budget_need(&b), 180 * MiB); /* + 20% */
    char err[1024];
    assert_int_equal(wh_budget_check(&b, 180 * MiB, err, sizeof(err)), WH_OK);
    assert_int_equal(wh_budget_check(&b, 180 * MiB - 1, err, sizeof(err)), WH_ERR);
    /* names the daemon, the setting, and the parts largest first */
    assert_non_null(strstr(err, "walhook-store"));
    assert_non_null(strstr(err, "memory_budget_bytes"));
    char *pa = strstr(err, " a 100.0 MiB"), *pb = strstr(err, " b 50.0 MiB");
    assert_non_null(pa);
    assert_non_null(pb);
    assert_true(pa < pb);
    assert_null(strstr(err, "neg")); /* 0-byte parts are left out */
    /* unknown limit (-1): nothing to check against */
    assert_int_equal(wh_budget_check(&b, -1, err, sizeof(err)), WH_OK);
    /* one line per part in the printed plan */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    wh_budget_print(&b, 100 * MiB, "memory_budget_bytes", f);
    fclose(f);
    assert_non_null(strstr(text, "\n  a "));
    assert_non_null(strstr(text, "setting b"));
    assert_non_null(strstr(text, "refusing to start"));
    free(text);
}

static void test_too_many_parts(void **state)
{
    (void)state;
    wh_budget b;
    wh_budget_init(&b, "x");
    for (int i = 0; i < WH_BUDGET_MAX_PARTS + 5; i++)
        wh_budget_add(&b, "p", 1, "h");
    assert_int_equal(b.nparts, WH_BUDGET_MAX_PARTS);
    assert_int_equal(wh_budget_sum(&b), WH_BUDGET_MAX_PARTS);
}

/* The store's plan follows its settings and grows with tenants and
 * targets; the sizes are the ones st_db configures. */
static void test_store_plan(void **state)
{
    (void)state;
    static wh_config c;
    wh_config_defaults(&c);
    wh_budget_counts n1 = {1, 1}, n10 = {10, 1}, t10 = {1, 10};
    wh_budget b1, b2, b3;
    wh_budget_plan_store(&b1, &c, &n1);
    assert_int_equal(part(&b1, "block_cache"), c.rocksdb_cache_bytes);
    assert_int_equal(part(&b1, "ipc_buffers"),
                     (int64_t)(c.store_workers + WH_STORE_SPARE_WORKERS) * 2 * c.ipc_max_msg_bytes);
    int64_t arena = wh_budget_arena_block(c.rocksdb_write_buffer_bytes);
    assert_int_equal(arena, c.rocksdb_write_buffer_bytes / 8);
    /* 1 tenant: 3 CFs; db-wide cap 2 memtables + one being flushed */
    assert_int_equal(part(&b1, "memtables"), 3 * c.rocksdb_write_buffer_bytes + 3 * arena);
    wh_budget_plan_store(&b2, &c, &n10);
    assert_int_equal(part(&b2, "memtables") - part(&b1, "memtables"), 18 * arena);
    wh_budget_plan_store(&b3, &c, &t10);
    assert_int_equal(part(&b3, "iterators") - part(&b1, "iterators"),
                     9LL * WH_BUDGET_ST_ITER_FILES *
                         (WH_BUDGET_ST_BLOCK_BYTES + WH_BUDGET_ST_ITER_READAHEAD_BYTES));
    /* more background jobs: more compaction buffers and stacks */
    c.store_background_jobs = 8;
    wh_budget b4;
    wh_budget_plan_store(&b4, &c, &n1);
    assert_true(part(&b4, "compaction_buffers") > part(&b1, "compaction_buffers"));
    assert_true(part(&b4, "thread_stacks") > part(&b1, "thread_stacks"));
    int fl, co;
    wh_budget_store_threads(8, &fl, &co);
    assert_int_equal(fl, 2);
    assert_int_equal(co, 6);
    wh_budget_store_threads(2, &fl, &co);
    assert_int_equal(fl, 1);
    assert_int_equal(co, 1);
    /* a small write buffer: at least a page; a large one: capped */
    assert_int_equal(wh_budget_arena_block(64 * 1024), 8192);
    assert_int_equal(wh_budget_arena_block(1024LL * MiB), WH_BUDGET_ST_ARENA_MAX);
}

static void test_other_plans(void **state)
{
    (void)state;
    static wh_config c;
    wh_config_defaults(&c);
    wh_budget b, b2;
    wh_budget_plan_ingestor(&b, &c, "ingestor-x");
    assert_string_equal(b.daemon, "ingestor-x");
    assert_int_equal(part(&b, "window"), c.window_bytes);
    assert_int_equal(part(&b, "batch_buffers"), 2 * c.flush_bytes);
    assert_int_equal(part(&b, "toast_cache"), c.toast_cache_bytes);
    wh_budget_counts n = {1, 2}, n3 = {1, 3};
    wh_budget_plan_dispatcher(&b, &c, &n);
    wh_budget_plan_dispatcher(&b2, &c, &n3);
    assert_int_equal(part(&b, "read_ahead"),
                     2LL * WH_BUDGET_DSP_BATCHES_PER_TARGET * c.batch_max_bytes);
    /* one target more: its read-ahead, its body, libcurl's upload buffer
     * (1 MiB batches: the 1 MiB cap), its state, its reader and committer
     * threads */
    assert_int_equal(part(&b, "upload_buffers"), 2LL * WH_BUDGET_DSP_UPLOAD_MAX);
    assert_int_equal(wh_budget_sum(&b2) - wh_budget_sum(&b),
                     WH_BUDGET_DSP_BATCHES_PER_TARGET * c.batch_max_bytes + 2 * c.batch_max_bytes +
                         WH_BUDGET_DSP_UPLOAD_MAX + WH_BUDGET_DSP_TARGET_BYTES +
                         2 * WH_BUDGET_STACK_BYTES);
    /* the admin takes as many connections as fit */
    assert_int_equal(wh_budget_admin_conns(&c, 64LL * 1024 * MiB), WH_BUDGET_ADM_CONNS);
    int n256 = wh_budget_admin_conns(&c, 256 * MiB);
    assert_true(n256 > WH_BUDGET_ADM_MIN_CONNS && n256 < WH_BUDGET_ADM_CONNS);
    char err[1024];
    wh_budget_plan_admin(&b, &c, n256);
    assert_int_equal(part(&b, "http_connections"), (int64_t)n256 * WH_BUDGET_ADM_CONN_BYTES);
    assert_int_equal(wh_budget_check(&b, 256 * MiB, err, sizeof(err)), WH_OK);
    wh_budget_plan_admin(&b, &c, n256 + 1);
    assert_int_equal(wh_budget_check(&b, 256 * MiB, err, sizeof(err)), WH_ERR);
    assert_int_equal(wh_budget_admin_conns(&c, 64 * MiB), WH_BUDGET_ADM_MIN_CONNS);
}

/* The direct unix sockets (wh_uds) are in the plans: the store's endpoint
 * (WH_IPC_DIRECT_MAX connections with their stacks and kept buffers, and
 * store.workers requests in flight) and its notifications' subscribers,
 * the ingestor's and the dispatcher's control endpoints; none for a
 * tcp:// endpoint. */
static void test_direct_sockets(void **state)
{
    (void)state;
    static wh_config c;
    wh_config_defaults(&c);
    wh_budget_counts n = {1, 1};
    wh_budget b;
    int64_t conns = (int64_t)WH_IPC_DIRECT_MAX * (WH_BUDGET_STACK_BYTES + 2 * WH_UDS_KEEP_BYTES);
    /* what a connection keeps between requests is bounded, and small */
    assert_true(WH_UDS_KEEP_BYTES <= 256 * 1024);
    wh_budget_plan_store(&b, &c, &n);
    int64_t store = conns +
                    (int64_t)(c.store_workers + WH_STORE_SPARE_WORKERS) * 2 * c.ipc_max_msg_bytes +
                    (int64_t)WH_IPC_DIRECT_MAX * WH_NOTE_MSG_MAX;
    assert_int_equal(part(&b, "ipc_direct"), store);
    /* more workers: more requests in flight on the direct socket too */
    c.store_workers = 8;
    wh_budget_plan_store(&b, &c, &n);
    assert_int_equal(part(&b, "ipc_direct"), store + 4 * 2 * c.ipc_max_msg_bytes);
    c.store_workers = 4;
    wh_strlcpy(c.store_endpoint, "tcp://127.0.0.1:7000", sizeof(c.store_endpoint));
    wh_budget_plan_store(&b, &c, &n);
    assert_int_equal(part(&b, "ipc_direct"), (int64_t)WH_IPC_DIRECT_MAX * WH_NOTE_MSG_MAX);
    int64_t control = conns + WH_BUDGET_CONTROL_REQ_BYTES + (int64_t)WH_BUDGET_CONTROL_REPLY_BYTES;
    wh_budget_plan_ingestor(&b, &c, "ingestor");
    assert_int_equal(part(&b, "ipc_direct"), control);
    wh_budget_plan_dispatcher(&b, &c, &n);
    assert_int_equal(part(&b, "ipc_direct"), control);
    wh_strlcpy(c.dispatcher_control, "tcp://127.0.0.1:7001", sizeof(c.dispatcher_control));
    wh_budget_plan_dispatcher(&b, &c, &n);
    assert_int_equal(part(&b, "ipc_direct"), 0);
    assert_non_null(strstr(b.parts[b.nparts - 2].how, "not ipc://"));
}

/* ---- the system's limit, from fake /proc and /sys trees ---- */

static char root[64];

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void put(const char *rel, const char *text)
{
    char p[256], cmd[300];
    snprintf(p, sizeof(p), "%s%s", root, rel);
    snprintf(cmd, sizeof(cmd), "mkdir -p \"$(dirname '%s')\"", p);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int fs_setup(void **state)
{
    (void)state;
    strcpy(root, "/tmp/test_budget.XXXXXX");
    assert_non_null(mkdtemp(root));
    put("/proc/meminfo", "MemFree: 5 kB\nMemTotal:       4096000 kB\n");
    return 0;
}

static int fs_teardown(void **state)
{
    (void)state;
    nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static void test_limit_memtotal(void **state)
{
    (void)state;
    char src[64];
    put("/proc/self/cgroup", "0::/\n");
    assert_int_equal(wh_budget_system_limit(root, src, sizeof(src)), 4096000LL * 1024);
    assert_string_equal(src, "MemTotal");
    /* v2 "max": no limit */
    put("/sys/fs/cgroup/memory.max", "max\n");
    assert_int_equal(wh_budget_system_limit(root, src, sizeof(src)), 4096000LL * 1024);
}

static void test_limit_cgroup_v2(void **state)
{
    (void)state;
    char src[64];
    put("/proc/self/cgroup", "0::/\n");
    put("/sys/fs/cgroup/memory.max", "536870912\n");
    assert_int_equal(wh_budget_system_limit(root, src, sizeof(src)), 512 * MiB);
    assert_string_equal(src, "cgroup v2 memory.max");
    /* outside a cgroup namespace: the process's own path */
    put("/proc/self/cgroup", "0::/system.slice/walhook-store.service\n");
    put("/sys/fs/cgroup/system.slice/walhook-store.service/memory.max", "268435456\n");
    assert_int_equal(wh_budget_system_limit(root, src, sizeof(src)), 256 * MiB);
    /* a limit above MemTotal counts as none */
    put("/sys/fs/cgroup/system.slice/walhook-store.service/memory.max", "99999999999999\n");
    put("/sys/fs/cgroup/memory.max", "max\n");
    assert_int_equal(wh_budget_system_limit(root, src, sizeof(src)), 4096000LL * 1024);
}

static void test_limit_cgroup_v1(void **state)
{
    (void)state;
    char src[64];
    put("/proc/self/cgroup", "5:cpu,cpuacct:/\n4:memory:/docker/abc\n");
    /* v1's "unlimited" is a huge number */
    put("/sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
    assert_int_equal(wh_budget_system_limit(root, src, sizeof(src)), 4096000LL * 1024);
    put("/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes", "1073741824\n");
    assert_int_equal(wh_budget_system_limit(root, src, sizeof(src)), 1024 * MiB);
    assert_string_equal(src, "cgroup v1 memory.limit_in_bytes");
}

static void test_limit_setting_wins(void **state)
{
    (void)state;
    static wh_config c;
    wh_config_defaults(&c);
    char src[64];
    c.memory_budget_bytes = 123 * MiB;
    assert_int_equal(wh_budget_limit(&c, src, sizeof(src)), 123 * MiB);
    assert_string_equal(src, "memory_budget_bytes");
    c.memory_budget_bytes = 0; /* the real machine's: something positive */
    assert_true(wh_budget_limit(&c, src, sizeof(src)) > 0);
}

static void test_metrics(void **state)
{
    (void)state;
    wh_buf out;
    wh_buf_init(&out, 0);
    wh_budget b;
    wh_budget_init(&b, "store");
    wh_budget_add(&b, "block_cache", 4 * MiB, "store.cache_bytes");
    wh_budget_add(&b, "memtables", 12 * MiB, "store.write_buffer_bytes");
    wh_budget_publish(&b, 1024 * MiB);
    assert_int_equal(wh_budget_metrics(&out), WH_OK);
    assert_int_equal(wh_buf_cstr(&out), WH_OK);
    assert_non_null(strstr(out.data, "walhook_memory_budget_bytes{daemon=\"store\"} 1073741824\n"));
    assert_non_null(strstr(
        out.data, "walhook_memory_part_bytes{daemon=\"store\",part=\"memtables\"} 12582912\n"));
    assert_non_null(strstr(out.data, "walhook_memory_need_bytes{daemon=\"store\"} 20132659\n"));
    assert_non_null(strstr(out.data, "# TYPE walhook_memory_part_bytes gauge"));
    wh_buf_free(&out);
}

int main(void)
{
    wh_log_init("test", WH_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sum_need_check),
        cmocka_unit_test(test_too_many_parts),
        cmocka_unit_test(test_store_plan),
        cmocka_unit_test(test_other_plans),
        cmocka_unit_test(test_direct_sockets),
        cmocka_unit_test_setup_teardown(test_limit_memtotal, fs_setup, fs_teardown),
        cmocka_unit_test_setup_teardown(test_limit_cgroup_v2, fs_setup, fs_teardown),
        cmocka_unit_test_setup_teardown(test_limit_cgroup_v1, fs_setup, fs_teardown),
        cmocka_unit_test(test_limit_setting_wins),
        cmocka_unit_test(test_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
