/* Unit tests: adm_bg, the tasks a request waits for until a deadline: the
 * request goes on with the tasks that returned, a task that has not
 * returned finishes later by itself, and the memory they share is freed
 * once, by the last of them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>

#include "../../services/admin/adm_bg.h"
#include "wh_util.h"

/* Task 0 returns at once; task 1 waits until hold is cleared. */
typedef struct shared {
    int out[2];
} shared;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int hold, freed, task1_started;

static void task(void *ctx, int i)
{
    shared *s = ctx;
    if (i == 1) {
        pthread_mutex_lock(&mu);
        task1_started = 1;
        pthread_cond_broadcast(&cv);
        while (hold)
            pthread_cond_wait(&cv, &mu);
        pthread_mutex_unlock(&mu);
    }
    s->out[i] = 10 + i;
}

static void shared_free(void *ctx)
{
    pthread_mutex_lock(&mu);
    freed++;
    pthread_mutex_unlock(&mu);
    free(ctx);
}

/* A task that has not returned at the deadline: the other's result is
 * there, the request releases the group, the task then finishes and the
 * shared memory is freed once. */
static void test_deadline_leaves_a_task(void **state)
{
    (void)state;
    hold = 1;
    freed = 0;
    task1_started = 0;
    shared *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    adm_bg *g = adm_bg_start(s, shared_free, task, 2);
    assert_non_null(g);
    pthread_mutex_lock(&mu);
    while (!task1_started)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    int done[ADM_BG_MAX];
    /* task 1 is held: whatever the wait, it has not returned */
    assert_int_equal(adm_bg_wait(g, wh_now_ms() + 200, done), 1);
    assert_int_equal(done[0], 1);
    assert_int_equal(done[1], 0);
    assert_int_equal(s->out[0], 10);
    adm_bg_release(g);
    assert_int_equal(freed, 0); /* task 1 still uses it */
    assert_int_equal(adm_bg_drain(0), 0);
    pthread_mutex_lock(&mu);
    hold = 0;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    assert_int_equal(adm_bg_drain(10000), 1);
    assert_int_equal(freed, 1);
}

/* Every task returned: the wait ends with all of them done, and the
 * release frees the shared memory. */
static void test_all_return(void **state)
{
    (void)state;
    hold = 0;
    freed = 0;
    shared *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    adm_bg *g = adm_bg_start(s, shared_free, task, 2);
    assert_non_null(g);
    int done[ADM_BG_MAX];
    assert_int_equal(adm_bg_wait(g, wh_now_ms() + 60000, done), 2);
    assert_int_equal(s->out[0], 10);
    assert_int_equal(s->out[1], 11);
    adm_bg_release(g);
    assert_int_equal(adm_bg_drain(10000), 1);
    assert_int_equal(freed, 1);
    assert_null(adm_bg_start(NULL, NULL, task, ADM_BG_MAX + 1));
}

int main(void)
{
    wh_log_init("test", WH_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deadline_leaves_a_task),
        cmocka_unit_test(test_all_return),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
