/* adm_bg: tasks a request waits for until a deadline (adm_bg.h). */
#include "adm_bg.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "wh_util.h"

struct adm_bg {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    int refs;          /* the request's and each running task's */
    int n;             /* tasks */
    int done[ADM_BG_MAX];
    void *ctx;
    void (*ctx_free)(void *ctx);
    adm_bg_fn fn;
};

typedef struct adm_bg_task {
    adm_bg *g;
    int i;
} adm_bg_task;

/* Tasks running in the process, for adm_bg_drain. */
static pthread_mutex_t run_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t run_cv = PTHREAD_COND_INITIALIZER;
static int running;

static void unref(adm_bg *g)
{
    pthread_mutex_lock(&g->mu);
    int last = --g->refs == 0;
    pthread_mutex_unlock(&g->mu);
    if (!last)
        return;
    if (g->ctx_free)
        g->ctx_free(g->ctx);
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

/* Task i ran: marks it done and drops its reference. */
static void finish(adm_bg *g, int i)
{
    pthread_mutex_lock(&g->mu);
    g->done[i] = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    unref(g);
}

static void *task_main(void *arg)
{
    adm_bg_task t = *(adm_bg_task *)arg;
    free(arg);
    t.g->fn(t.g->ctx, t.i);
    finish(t.g, t.i);
    pthread_mutex_lock(&run_mu);
    running--;
    pthread_cond_broadcast(&run_cv);
    pthread_mutex_unlock(&run_mu);
    return NULL;
}

adm_bg *adm_bg_start(void *ctx, void (*ctx_free)(void *ctx), adm_bg_fn fn, int n)
{
    if (n < 0 || n > ADM_BG_MAX)
        return NULL;
    adm_bg *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    pthread_mutex_init(&g->mu, NULL);
    wh_cond_init_monotonic(&g->cv);
    g->refs = 1 + n;
    g->n = n;
    g->ctx = ctx;
    g->ctx_free = ctx_free;
    g->fn = fn;
    pthread_attr_t attr;
    int attr_ok = pthread_attr_init(&attr) == 0 &&
                  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0;
    for (int i = 0; i < n; i++) {
        adm_bg_task *t = attr_ok ? malloc(sizeof(*t)) : NULL;
        int started = 0;
        if (t != NULL) {
            *t = (adm_bg_task){g, i};
            pthread_mutex_lock(&run_mu);
            running++;
            pthread_mutex_unlock(&run_mu);
            pthread_t th;
            started = pthread_create(&th, &attr, task_main, t) == 0;
            if (!started) {
                free(t);
                pthread_mutex_lock(&run_mu);
                running--;
                pthread_cond_broadcast(&run_cv);
                pthread_mutex_unlock(&run_mu);
            }
        }
        if (!started) { /* no thread: here, at once */
            fn(ctx, i);
            finish(g, i);
        }
    }
    if (attr_ok)
        pthread_attr_destroy(&attr);
    return g;
}

int adm_bg_wait(adm_bg *g, uint64_t deadline_ms, int done[ADM_BG_MAX])
{
    pthread_mutex_lock(&g->mu);
    for (;;) {
        int ndone = 0;
        for (int i = 0; i < g->n; i++)
            ndone += g->done[i];
        uint64_t now = wh_now_ms();
        if (ndone == g->n || now >= deadline_ms) {
            for (int i = 0; i < ADM_BG_MAX; i++)
                done[i] = g->done[i];
            pthread_mutex_unlock(&g->mu);
            return ndone;
        }
        struct timespec ts;
        wh_deadline_in(&ts, CLOCK_MONOTONIC, (int64_t)(deadline_ms - now));
        pthread_cond_timedwait(&g->cv, &g->mu, &ts);
    }
}

void adm_bg_release(adm_bg *g)
{
    if (g != NULL)
        unref(g);
}

int adm_bg_drain(int timeout_ms)
{
    uint64_t deadline = wh_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    pthread_mutex_lock(&run_mu);
    while (running > 0) {
        uint64_t now = wh_now_ms();
        if (now >= deadline)
            break;
        struct timespec ts;
        wh_deadline_in(&ts, CLOCK_REALTIME, (int64_t)(deadline - now));
        pthread_cond_timedwait(&run_cv, &run_mu, &ts);
    }
    int none = running == 0;
    pthread_mutex_unlock(&run_mu);
    return none;
}
