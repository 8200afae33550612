/* dsp_loop: curl multi event loop over all targets. */
#include "dsp_loop.h"

#include <errno.h>
#include <limits.h>
#include <inttypes.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "dsp_zone.h"
#include "wh_lattrace.h"
#include "wh_lsn.h"
#include "wh_metrics.h"
#include "wh_util.h"

#define DSP_LOOP_STOP_COMMIT_MS 1000 /* every target's last commit at a stop, together */
#define DSP_POLL_MAX_MS 1000

struct dsp_loop {
    CURLM *multi;
    /* curl_multi_socket_action driven by epoll (curl's ephiperfifo.c):
     * curl tells which sockets to watch (sock_cb) and when to call it back
     * (timer_cb); other threads wake the loop through an eventfd */
    int epfd, evfd;
    int sigfd;                /* wh_signal_fd, in the epoll set: a signal wakes the loop */
    int64_t curl_deadline_ms; /* -1: curl wants no timeout call */
    dsp_target **targets;     /* each heap-allocated: readers hold the pointer */
    int ntargets;
    size_t cap;
    /* targets removed from the state (or deleted and created again) whose
     * requests in flight are let end (dsp_target.draining): loop thread
     * only, not in the metrics */
    dsp_target **draining;
    int ndraining;
    size_t dcap;
    int max_inflight; /* 0 = one per target */
    int inflight;
    int rr; /* round-robin start for fairness under the cap */
    atomic_int stop;
    int curl_inited;
    dsp_settings base; /* store endpoint, IPC limits */

    /* the target array changes on the loop thread under tmu; the metrics
     * (control thread) read it under tmu */
    pthread_mutex_t tmu;
    _Atomic uint64_t version;

    /* a target list waiting for the loop (dsp_loop_set_targets) */
    pthread_mutex_t pmu;
    dsp_spec *pend;
    int npend;
    uint64_t pend_version;
    atomic_int has_pend;

    void (*on_reload)(void *arg);
    void *reload_arg;
    dsp_loop_lease_hooks lease; /* all NULL without leases */

    /* targets refused at setup or at a change (bad URL or secret, curl
     * setup): the others go on; under tmu (the metrics read them) */
    dsp_refused refused[DSP_MAX_REFUSED];
    int nrefused;

    /* durability notifications from the store (wh_sub): a thread wakes
     * the readers of the tenant named (dsp_target_note) */
    wh_sub *sub;
    pthread_t nthr;
    int nthr_started;
    atomic_int nstop;
    wh_counter notes; /* notifications received */

    /* Over the direct connection the loop thread reads the notifications
     * itself (epoll): a batch taken for an idle target (dsp_target_note)
     * is posted without waking another thread. The notification thread
     * connects, offers the descriptor (hand: 1) and waits; the loop adopts
     * it (2) and gives it back (0) when it closed or was replaced. */
    pthread_mutex_t hmu;
    pthread_cond_t hcv;
    int hand;              /* 0 the notification thread reads, 1 offered, 2 the loop's */
    int hand_fd;           /* under hmu */
    uint64_t hand_gen;     /* under hmu */
    int reg_fd;            /* loop thread: the adopted descriptor, -1 none */
    uint64_t reg_gen;      /* loop thread */
    uint8_t *lmsg;         /* loop thread: its receive buffer */
    pthread_t loop_thr;    /* the thread in dsp_loop_run */
    atomic_int loop_on;    /* 1 while dsp_loop_run runs */
    wh_counter loop_notes; /* notifications read by the loop thread */
    wh_counter resyncs;    /* every target noted after a (re)connect */
};

/* Notification thread: "tenant T durable up to (lsn, seq)" (st_server's
 * publish_durable, wh_notify.h) -> every target of T is noted, with the
 * pushed events when they came along (dsp_push, shared). After a
 * (re)connect every target is noted once: what was published while
 * disconnected is lost (the readers' positions then no longer match a push,
 * so they Read). */
static void wake(void *arg);

/* 1 on the thread in dsp_loop_run */
static int on_loop(dsp_loop *l)
{
    return atomic_load(&l->loop_on) && pthread_equal(pthread_self(), l->loop_thr);
}

/* One notification (msg, n > 0), or with all set every target once. On
 * the notification thread or the loop thread (which alone changes the
 * target list: it needs no lock to walk it, so a metrics scrape holding
 * tmu does not hold up the notifications). 1 when msg was one. */
static int note_handle(dsp_loop *l, const uint8_t *msg, int n, int all)
{
    wh_note note;
    int have = n > 0 && wh_note_decode(msg, (size_t)n, &note) == WH_OK;
    int was_note = have;
    if (n > 0 && !have && !all)
        return 0; /* not a notification of ours */
    if (have)
        wh_counter_add(&l->notes, 1);
    if (all)
        wh_counter_add(&l->resyncs, 1);
    if (have && note.has_zone) {
        /* the tenant's zone changed: no Read needed; the loop looks at
         * its failing targets again (red sheds fast ones now) */
        if (dsp_zone_note(note.tenant, note.zone))
            wake(l);
        wh_note_free(&note);
        have = 0;
    }
    if (!have && !all)
        return was_note;
    if (have && note.push != NULL && wh_lat_trace_on()) {
        for (size_t i = 0; i < note.push->n_events; i++)
            wh_lat_trace_add("dsp_note", note.push->events[i]->commit_ts_us);
        wh_lat_trace_flush();
    }
    dsp_push *push = have ? dsp_push_new(&note, (size_t)n) : NULL;
    int own = on_loop(l);
    if (!own)
        pthread_mutex_lock(&l->tmu);
    int fast = 0; /* batches taken here for idle targets (dsp_target_note) */
    for (int i = 0; i < l->ntargets; i++) {
        dsp_target *t = l->targets[i];
        if (have && strcmp(t->set.tenant, note.tenant) == 0)
            fast += dsp_target_note(t, note.lsn, note.seq, push, fast < DSP_PUSH_FAST_TARGETS);
        else if (all) /* notifications may have been lost: read */
            dsp_target_note(t, UINT64_MAX, UINT32_MAX, NULL, 0);
    }
    if (!own)
        pthread_mutex_unlock(&l->tmu);
    dsp_push_unref(push);
    if (have)
        wh_note_free(&note);
    return was_note;
}

/* Notification thread: connects and reads until the loop takes the direct
 * connection over, then waits for it back (it closed: reconnect). */
static void *notify_main(void *arg)
{
    dsp_loop *l = arg;
    uint8_t *msg = malloc(WH_NOTE_MSG_MAX);
    if (msg == NULL) {
        wh_warn("no durability notifications: out of memory");
        return NULL;
    }
    int was = 0;
    while (!atomic_load(&l->nstop)) {
        int n = wh_sub_recv(l->sub, msg, WH_NOTE_MSG_MAX, 250);
        if (n < 0)
            break;
        int now = wh_sub_connected(l->sub);
        int all = now && !was;
        was = now;
        if (n > 0 || all)
            note_handle(l, msg, n, all);
        uint64_t gen;
        int fd = wh_sub_direct_fd(l->sub, &gen);
        if (fd < 0 || !atomic_load(&l->loop_on))
            continue;
        /* the loop reads from here on; what arrives meanwhile waits in the
         * socket (epoll is level-triggered), what this thread's read took
         * along in the buffer (poll_once looks there before it waits) */
        pthread_mutex_lock(&l->hmu);
        l->hand_fd = fd;
        l->hand_gen = gen;
        l->hand = 1;
        pthread_mutex_unlock(&l->hmu);
        wake(l);
        pthread_mutex_lock(&l->hmu);
        while (l->hand != 0 && !atomic_load(&l->nstop)) {
            if (l->hand == 1 && !atomic_load(&l->loop_on)) {
                l->hand = 0; /* the loop ended before it took it */
                break;
            }
            struct timespec ts;
            wh_deadline_in(&ts, CLOCK_MONOTONIC, 250);
            pthread_cond_timedwait(&l->hcv, &l->hmu, &ts);
        }
        pthread_mutex_unlock(&l->hmu);
        /* back after a disconnect: every target is noted again (not when
         * the loop left a message's rest to this thread) */
        uint64_t gen2;
        if (wh_sub_direct_fd(l->sub, &gen2) != fd || gen2 != gen)
            was = 0;
    }
    free(msg);
    return NULL;
}

/* Loop thread: the notification thread reads again. */
static void note_release(dsp_loop *l)
{
    if (l->reg_fd >= 0)
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, l->reg_fd, NULL); /* may be closed already */
    l->reg_fd = -1;
    pthread_mutex_lock(&l->hmu);
    l->hand = 0;
    pthread_cond_broadcast(&l->hcv);
    pthread_mutex_unlock(&l->hmu);
}

/* Loop thread: watches the descriptor the notification thread offers. */
static void note_adopt(dsp_loop *l)
{
    pthread_mutex_lock(&l->hmu);
    int offered = l->hand == 1;
    int fd = l->hand_fd;
    uint64_t gen = l->hand_gen;
    if (offered)
        l->hand = 2;
    pthread_mutex_unlock(&l->hmu);
    if (!offered)
        return;
    if (l->lmsg == NULL)
        l->lmsg = malloc(WH_NOTE_MSG_MAX);
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (l->lmsg == NULL || epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        note_release(l); /* the notification thread goes on reading */
        return;
    }
    l->reg_fd = fd;
    l->reg_gen = gen;
}

/* Loop thread: the notifications that arrived (a bounded number per call:
 * curl's sockets wait meanwhile). Only whole frames: the rest of a frame
 * the store is still sending is read by the notification thread (which may
 * wait for it), and the socket comes back after it. */
static void note_drain(dsp_loop *l)
{
    for (int k = 0; k < 64; k++) {
        int ready = wh_sub_pending(l->sub, WH_NOTE_MSG_MAX);
        if (ready == WH_SUB_NONE)
            return;
        if (ready == WH_SUB_PART) {
            note_release(l);
            return;
        }
        int n = wh_sub_recv(l->sub, l->lmsg, WH_NOTE_MSG_MAX, 0);
        uint64_t gen;
        int fd = wh_sub_direct_fd(l->sub, &gen);
        if (n > 0 && note_handle(l, l->lmsg, n, 0))
            wh_counter_add(&l->loop_notes, 1);
        if (n < 0 || fd != l->reg_fd || gen != l->reg_gen) {
            note_release(l); /* closed, or replaced by a reconnect */
            return;
        }
        if (n == 0)
            return;
    }
}

/* Loop thread: notes that (tenant, name) was refused; counts every time. */
static void note_refused(dsp_loop *l, const char *tenant, const char *name)
{
    pthread_mutex_lock(&l->tmu);
    dsp_refused *r = NULL;
    for (int i = 0; i < l->nrefused && r == NULL; i++)
        if (strcmp(l->refused[i].tenant, tenant) == 0 && strcmp(l->refused[i].name, name) == 0)
            r = &l->refused[i];
    if (r == NULL && l->nrefused < DSP_MAX_REFUSED) {
        r = &l->refused[l->nrefused++];
        memset(r, 0, sizeof(*r));
        wh_strlcpy(r->tenant, tenant, sizeof(r->tenant));
        wh_strlcpy(r->name, name, sizeof(r->name));
    }
    if (r != NULL) {
        r->count++;
        r->current = 1;
    }
    pthread_mutex_unlock(&l->tmu);
}

static void wake(void *arg)
{
    dsp_loop *l = arg;
    /* on the loop thread itself: it looks at its targets before it waits */
    if (on_loop(l))
        return;
    if (l->evfd >= 0) {
        uint64_t one = 1;
        ssize_t r = write(l->evfd, &one, sizeof(one));
        WH_UNUSED(r); /* EAGAIN: a wake-up is pending anyway */
    }
}

/* CURLMOPT_SOCKETFUNCTION: watch, change or forget a socket. socketp
 * (curl_multi_assign) marks a socket already in the epoll set: one
 * epoll_ctl per change (a keep-alive connection is forgotten between its
 * requests and watched again for the next one: before, each time a MOD
 * that failed, then an ADD). */
static int sock_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    WH_UNUSED(e);
    dsp_loop *l = userp;
    if (what == CURL_POLL_REMOVE) {
        /* may be closed already, its number even the notification socket's
         * now: that registration is not curl's */
        if (fd != l->reg_fd)
            epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
        return 0;
    }
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
    ev.data.fd = fd;
    int op = socketp != NULL ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(l->epfd, op, fd, &ev) != 0 &&
        epoll_ctl(l->epfd, errno == ENOENT ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) != 0) {
        wh_error("epoll_ctl(socket %d): %s", (int)fd, strerror(errno));
        return 0;
    }
    if (socketp == NULL)
        curl_multi_assign(l->multi, fd, l); /* any non-NULL mark */
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: curl wants curl_multi_socket_action(TIMEOUT) in
 * timeout_ms (-1: never). */
static int timer_cb(CURLM *m, long timeout_ms, void *userp)
{
    WH_UNUSED(m);
    dsp_loop *l = userp;
    l->curl_deadline_ms = timeout_ms < 0 ? -1 : (int64_t)wh_now_ms() + timeout_ms;
    return 0;
}

/* Creates a target and starts its reader; appends it (under tmu). */
static int add_target(dsp_loop *l, const dsp_spec *sp, char *err, size_t errlen)
{
    /* under tmu: realloc may free the array the metrics are reading */
    pthread_mutex_lock(&l->tmu);
    int grown = wh_grow(&l->targets, (size_t)l->ntargets + 1, &l->cap, sizeof(*l->targets), 8);
    pthread_mutex_unlock(&l->tmu);
    if (grown != WH_OK)
        return wh_seterr(err, errlen, "out of memory (targets)");
    dsp_target *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return wh_seterr(err, errlen, "out of memory (target)");
    dsp_spec s = *sp;
    wh_strlcpy(s.set.store_endpoint, l->base.store_endpoint, sizeof(s.set.store_endpoint));
    s.set.ipc_timeout_ms = l->base.ipc_timeout_ms;
    s.set.ipc_max_msg = l->base.ipc_max_msg;
    dsp_settings_clamp(&s.set);
    int rc = dsp_target_init(t, &s, wake, l, err, errlen);
    t->notify_sub = l->sub;
    if (rc != WH_OK || dsp_target_start_reader(t, err, errlen) != WH_OK) {
        dsp_target_destroy(t);
        free(t);
        return WH_ERR;
    }
    t->spec = s;
    t->has_spec = 1;
    pthread_mutex_lock(&l->tmu);
    l->targets[l->ntargets++] = t;
    pthread_mutex_unlock(&l->tmu);
    curl_multi_setopt(l->multi, CURLMOPT_MAXCONNECTS, (long)(l->ntargets * 2 + 4));
    return WH_OK;
}

/* 1 when a draining target (an old incarnation) of (tenant, name) still
 * has requests in flight: a target of that name posts nothing meanwhile. */
static int draining_has(const dsp_loop *l, const char *tenant, const char *name)
{
    for (int i = 0; i < l->ndraining; i++)
        if (strcmp(l->draining[i]->name, name) == 0 &&
            strcmp(l->draining[i]->set.tenant, tenant) == 0)
            return 1;
    return 0;
}

static void target_free(dsp_target *t)
{
    dsp_target_destroy(t);
    free(t->next_spec);
    free(t);
}

/* How remove_target stops a target. */
typedef enum {
    /* its lease is not held here: requests in flight abandoned (the lease
     * is told, dsp_lease_abandoned), the commit it held back dropped */
    RM_UNHELD,
    /* handed to another replica to balance (dsp_spec.handover): requests
     * abandoned, the commit it held back sent as it stops */
    RM_HANDOVER,
    /* removed from the state, or deleted and created again: requests in
     * flight are let end (draining: their answers are not applied, and no
     * target of its name posts before they ended, so the receiver never
     * has two of the name at once); what it held back is dropped (the
     * store dropped its offset and queues) */
    RM_GONE
} rm_how;

/* Stops targets[i] (loop thread) and destroys it, or with RM_GONE and
 * requests in flight moves it to the draining list (reap destroys it when
 * the last one ended). */
static void remove_target(dsp_loop *l, int i, rm_how how)
{
    dsp_target *t = l->targets[i];
    pthread_mutex_lock(&l->tmu);
    l->targets[i] = l->targets[--l->ntargets];
    pthread_mutex_unlock(&l->tmu);
    if (how != RM_HANDOVER)
        dsp_target_forget_commit(t);
    int inflight = dsp_target_inflight(t);
    if (how == RM_GONE && inflight > 0 &&
        wh_grow(&l->draining, (size_t)l->ndraining + 1, &l->dcap, sizeof(*l->draining), 4) ==
            WH_OK) {
        t->draining = 1;
        t->drain_ms = wh_now_ms();
        l->draining[l->ndraining++] = t;
        dsp_target_stop_reader(t); /* joined when the drain ends */
        wh_info("target %s/%s: letting its %d request(s) in flight end (at most its "
                "http_timeout_ms, %d ms; their answers are not applied); a target of that name "
                "posts nothing before",
                t->set.tenant, t->name, inflight, t->set.http_timeout_ms);
        return;
    }
    int n = dsp_target_abandon(t, l->multi);
    l->inflight -= n;
    /* a request of an older incarnation of the name may still be at the
     * target (draining here): the lease is then not left clean either */
    int older = draining_has(l, t->set.tenant, t->name);
    if ((n > 0 || (how != RM_GONE && older)) && l->lease.abandoned)
        l->lease.abandoned(l->lease.arg, t->set.tenant, t->name);
    dsp_target_stop_reader(t);
    dsp_target_destroy(t); /* sends the held commit (with the lease's epoch) */
    if (how == RM_HANDOVER && n == 0 && !older && l->lease.handed)
        l->lease.handed(l->lease.arg, t->set.tenant, t->name);
    free(t->next_spec);
    free(t);
}

/* Loop thread: the lease of (tenant, name) was given up to balance while
 * no target of that name runs here: it was never started (its lease was
 * taken and given up before this thread applied a list holding it, or it
 * waited out a takeover, when it is not run), or it was stopped before.
 * Nothing of it is then in flight or held back here but what a draining
 * older incarnation still has at the target: with one, the lease is told
 * of abandoned requests and left to lapse (as remove_target does); else
 * it is handed, and released at once rather than after the TTL (marked
 * abandoned when requests abandoned here, or its last holder's in its
 * takeover wait, may still be at the target: dsp_lease_handed). Every
 * list applied while the handover lasts comes here again: the lease acts
 * once. */
static void handed_idle(dsp_loop *l, const char *tenant, const char *name)
{
    if (draining_has(l, tenant, name)) {
        if (l->lease.abandoned)
            l->lease.abandoned(l->lease.arg, tenant, name);
        return;
    }
    if (l->lease.handed)
        l->lease.handed(l->lease.arg, tenant, name);
}

/* Loop thread: a request of draining target t ended (its answer is not
 * applied); the target is destroyed after its last one. */
static void drain_reaped(dsp_loop *l, dsp_target *t, dsp_xfer *x, CURLcode res)
{
    long code = 0;
    int left = dsp_target_discard(t, x, l->multi, &code);
    if (left > 0)
        return;
    for (int i = 0; i < l->ndraining; i++)
        if (l->draining[i] == t) {
            l->draining[i] = l->draining[--l->ndraining];
            break;
        }
    char what[96];
    if (res == CURLE_OK)
        snprintf(what, sizeof(what), "HTTP %ld", code);
    else
        snprintf(what, sizeof(what), "%s", curl_easy_strerror(res));
    wh_info(
        "target %s/%s: its last request in flight ended after %" PRIu64 " ms (%s, not applied)%s",
        t->set.tenant, t->name, wh_now_ms() - t->drain_ms, what,
        dsp_loop_find(l, t->set.tenant, t->name) != NULL && !draining_has(l, t->set.tenant, t->name)
            ? "; the target of that name posts from now on"
            : "");
    target_free(t);
}

/* Loop thread, stopping: the draining targets' requests still in flight
 * are abandoned (told to the lease) and the targets destroyed. */
static void drain_abandon(dsp_loop *l)
{
    while (l->ndraining > 0) {
        dsp_target *t = l->draining[--l->ndraining];
        if (dsp_target_abandon(t, l->multi) > 0 && l->lease.abandoned)
            l->lease.abandoned(l->lease.arg, t->set.tenant, t->name);
        target_free(t);
    }
}

int dsp_loop_create(dsp_loop **out, const wh_config *cfg, char *err, size_t errlen)
{
    *out = NULL;
    dsp_loop *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return wh_seterr(err, errlen, "out of memory");
    l->epfd = l->evfd = l->sigfd = -1;
    l->reg_fd = -1;
    pthread_mutex_init(&l->tmu, NULL);
    pthread_mutex_init(&l->pmu, NULL);
    pthread_mutex_init(&l->hmu, NULL);
    wh_cond_init_monotonic(&l->hcv);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        wh_seterr(err, errlen, "curl_global_init failed");
        goto error;
    }
    l->curl_inited = 1;
    l->max_inflight = cfg->max_inflight > 0 ? cfg->max_inflight : 0;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->curl_deadline_ms = -1;
    if (l->epfd < 0 || l->evfd < 0) {
        wh_seterr(err, errlen, "epoll/eventfd: %s", strerror(errno));
        goto error;
    }
    struct epoll_event wev;
    memset(&wev, 0, sizeof(wev));
    wev.events = EPOLLIN;
    wev.data.fd = l->evfd;
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &wev) != 0) {
        wh_seterr(err, errlen, "epoll_ctl(eventfd): %s", strerror(errno));
        goto error;
    }
    /* SIGHUP and SIGTERM take effect at once, not at the next timeout */
    l->sigfd = wh_signal_fd();
    wev.data.fd = l->sigfd;
    if (l->sigfd >= 0 && epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->sigfd, &wev) != 0) {
        wh_warn("epoll_ctl(signal pipe): %s; signals are seen at the loop's next timeout",
                strerror(errno));
        l->sigfd = -1;
    }
    l->multi = curl_multi_init();
    if (l->multi == NULL) {
        wh_seterr(err, errlen, "out of memory (curl multi)");
        goto error;
    }
    curl_multi_setopt(l->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(l->multi, CURLMOPT_SOCKETDATA, l);
    curl_multi_setopt(l->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(l->multi, CURLMOPT_TIMERDATA, l);
    /* HTTP/2 where the target speaks it: requests share a connection */
    curl_multi_setopt(l->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(l->multi, CURLMOPT_MAXCONNECTS, (long)(cfg->ntargets * 2 + 4));
    dsp_settings_from_config(&l->base, cfg);
    char nurl[WH_URL_MAX + 16], nerr[WH_ERRLEN];
    if (wh_notify_url(cfg->store_endpoint, cfg->store_notify_endpoint, nurl, sizeof(nurl), nerr,
                      sizeof(nerr)) != WH_OK ||
        wh_sub_open(&l->sub, nurl, nerr, sizeof(nerr)) != WH_OK) {
        wh_info("no durability notifications (readers long-poll the store): %s", nerr);
        l->sub = NULL;
    } else if (pthread_create(&l->nthr, NULL, notify_main, l) != 0) {
        wh_warn("no durability notifications: cannot start their thread");
        wh_sub_close(l->sub);
        l->sub = NULL;
    } else {
        l->nthr_started = 1;
    }
    for (int i = 0; i < cfg->ntargets; i++) {
        dsp_spec sp;
        memset(&sp, 0, sizeof(sp));
        wh_strlcpy(sp.name, cfg->targets[i].name, sizeof(sp.name));
        wh_strlcpy(sp.url, cfg->targets[i].url, sizeof(sp.url));
        if (cfg->targets[i].secret[0]) {
            wh_strlcpy(sp.secrets[0], cfg->targets[i].secret, sizeof(sp.secrets[0]));
            sp.nsecrets = 1;
        }
        sp.set = l->base;
        char terr[WH_ERRLEN];
        if (add_target(l, &sp, terr, sizeof(terr)) != WH_OK) {
            note_refused(l, sp.set.tenant, sp.name);
            wh_error("target %s/%s refused, nothing is delivered to it (the other targets go on): "
                     "%s",
                     sp.set.tenant, sp.name, terr);
        }
    }
    *out = l;
    return WH_OK;
error:
    dsp_loop_destroy(l);
    return WH_ERR;
}

int dsp_loop_set_targets(dsp_loop *l, const dsp_spec *specs, int n, uint64_t version)
{
    dsp_spec *copy = NULL;
    if (n > 0) {
        copy = malloc((size_t)n * sizeof(*copy));
        if (copy == NULL)
            return WH_ERR;
        memcpy(copy, specs, (size_t)n * sizeof(*copy));
    }
    pthread_mutex_lock(&l->pmu);
    free(l->pend);
    l->pend = copy;
    l->npend = n;
    l->pend_version = version;
    atomic_store(&l->has_pend, 1);
    pthread_mutex_unlock(&l->pmu);
    wake(l);
    return WH_OK;
}

uint64_t dsp_loop_version(dsp_loop *l)
{
    return atomic_load(&l->version);
}

void dsp_loop_on_reload(dsp_loop *l, void (*fn)(void *arg), void *arg)
{
    l->on_reload = fn;
    l->reload_arg = arg;
}

void dsp_loop_set_lease_hooks(dsp_loop *l, const dsp_loop_lease_hooks *h)
{
    l->lease = *h;
}

dsp_target *dsp_loop_find(dsp_loop *l, const char *tenant, const char *name)
{
    for (int i = 0; i < l->ntargets; i++) {
        dsp_target *t = l->targets[i];
        if (strcmp(t->name, name) == 0 && strcmp(t->set.tenant, tenant) == 0)
            return t;
    }
    return NULL;
}

static void apply_change(dsp_loop *l, dsp_target *t, const dsp_spec *sp)
{
    char err[WH_ERRLEN];
    uint64_t old_epoch = t->lease_epoch;
    if (dsp_target_reconfigure(t, sp, err, sizeof(err)) != WH_OK) {
        note_refused(l, sp->set.tenant, sp->name);
        wh_error("%s; the target keeps its previous URL, secrets and settings", err);
        return;
    }
    if (old_epoch != 0 && sp->lease_epoch != old_epoch) {
        /* the lease was lost and taken again: another replica may have
         * delivered meanwhile, so what was read here before is stale */
        wh_info("target %s/%s: lease epoch %" PRIu64 " -> %" PRIu64
                "; reading again from its committed offset",
                sp->set.tenant, sp->name, old_epoch, sp->lease_epoch);
        dsp_target_reset(t);
    }
    wh_info("target %s/%s: URL, secrets and delivery settings swapped in (batch_max_events=%u "
            "batch_max_bytes=%u retry=%d..%d ms http_timeout=%d ms)",
            sp->set.tenant, sp->name, sp->set.batch_max_events, sp->set.batch_max_bytes,
            sp->set.retry_base_ms, sp->set.retry_max_ms, sp->set.http_timeout_ms);
}

/* Loop thread: applies the pending target list. */
static void reconcile(dsp_loop *l)
{
    pthread_mutex_lock(&l->pmu);
    dsp_spec *specs = l->pend;
    int n = l->npend;
    uint64_t version = l->pend_version;
    l->pend = NULL;
    l->npend = 0;
    atomic_store(&l->has_pend, 0);
    pthread_mutex_unlock(&l->pmu);

    for (int i = 0; i < l->ntargets; i++)
        l->targets[i]->seen = 0;
    /* a refused target stays refused only while the new list still has it
     * refused; its count of refusals is kept for the metric */
    pthread_mutex_lock(&l->tmu);
    for (int i = 0; i < l->nrefused; i++)
        l->refused[i].current = 0;
    pthread_mutex_unlock(&l->tmu);
    int added = 0, changed = 0, removed = 0;
    for (int k = 0; k < n; k++) {
        dsp_spec *sp = &specs[k];
        if (sp->unheld) {
            /* not seen: stopped below if it runs (RM_HANDOVER tells the
             * lease); given up to balance while it does not run here (its
             * lease taken and given up before this thread started it, or
             * during its takeover wait), the lease is told now */
            if (sp->handover && dsp_loop_find(l, sp->set.tenant, sp->name) == NULL)
                handed_idle(l, sp->set.tenant, sp->name);
            continue;
        }
        wh_strlcpy(sp->set.store_endpoint, l->base.store_endpoint, sizeof(sp->set.store_endpoint));
        sp->set.ipc_timeout_ms = l->base.ipc_timeout_ms;
        sp->set.ipc_max_msg = l->base.ipc_max_msg;
        dsp_settings_clamp(&sp->set);
        dsp_target *t = dsp_loop_find(l, sp->set.tenant, sp->name);
        char err[WH_ERRLEN];
        if (t != NULL && t->has_spec && t->spec.created_version != sp->created_version) {
            /* deleted and created again under its name, both seen as this
             * one version (the loop was busy, the dispatcher stopped): a
             * new target, as when the removal and the creation are seen
             * apart. The old one stops (requests abandoned, its held commit
             * dropped: the store dropped its offset and dead letters with
             * the removal); the new one starts enabled (not disabled by the
             * old one's 410, not blocked), with a fresh breaker, nack
             * window, rate buckets and counters, and reads from the offset
             * its creation set. */
            wh_info("target %s/%s was deleted and created again (created by state version "
                    "%" PRId64 ", the running one by %" PRId64 "): the old one stops, the new "
                    "one starts",
                    sp->set.tenant, sp->name, sp->created_version, t->spec.created_version);
            for (int i = 0; i < l->ntargets; i++)
                if (l->targets[i] == t) {
                    remove_target(l, i, RM_GONE);
                    break;
                }
            removed++;
            t = NULL;
        }
        if (t == NULL) {
            if (add_target(l, sp, err, sizeof(err)) != WH_OK) {
                note_refused(l, sp->set.tenant, sp->name);
                wh_error("target %s/%s refused, nothing is delivered to it (the other targets go "
                         "on): %s",
                         sp->set.tenant, sp->name, err);
                continue;
            }
            l->targets[l->ntargets - 1]->seen = 1;
            wh_info("target %s/%s added%s", sp->set.tenant, sp->name,
                    sp->paused ? " (paused)" : "");
            added++;
            continue;
        }
        t->seen = 1;
        /* an operator's resume: the state's resume count grew. Compared as
         * a count, not as paused -> not paused: versions in between may not
         * be seen (a pause and a resume stored before this thread got to
         * the first, or a resume of a target that was not paused). Only a
         * growth: a count that went down (a state written by an older
         * walhook, or one rebuilt from the file) is no one's resume. */
        int resumed = sp->resumes > t->spec.resumes && !sp->paused;
        t->spec.resumes = sp->resumes;
        if (t->paused != sp->paused || resumed) {
            int was_disabled = t->disabled, was_paused = t->paused;
            pthread_mutex_lock(&l->tmu);
            t->paused = sp->paused;
            pthread_mutex_unlock(&l->tmu);
            /* a resumed target reads again from its committed offset: what it
             * read before the pause may be stale (the offset may have moved) */
            if (!sp->paused && (was_paused || was_disabled || t->blocked) &&
                t->state != DSP_T_POSTING)
                dsp_target_reset(t);
            /* resuming is also how an operator re-enables a target that
             * answered 410 Gone (or is blocked by on_failure = block) */
            if (!sp->paused) {
                dsp_target_enable(t);
                dsp_target_publish(t);
            }
            if (sp->paused)
                wh_info("target %s/%s paused (it keeps its offset)", sp->set.tenant, sp->name);
            else
                wh_info("target %s/%s resumed%s", sp->set.tenant, sp->name,
                        was_disabled ? ": enabled again after its 410 Gone"
                        : was_paused ? ""
                                     : " (it was not paused)");
        }
        dsp_spec *prev = t->next_spec;
        if (!t->has_spec || dsp_spec_changed(&t->spec, sp)) {
            changed++;
            t->spec = *sp;
            t->has_spec = 1;
            if (t->state == DSP_T_POSTING || t->state == DSP_T_DEADLETTER) {
                /* between requests, never mid-request; nor while dead
                 * letters are written: the batches read ahead were filtered
                 * and rendered the old way and would go on after it without
                 * the reset a format change needs */
                if (prev == NULL)
                    prev = malloc(sizeof(*prev));
                if (prev != NULL) {
                    *prev = *sp;
                    t->next_spec = prev;
                }
            } else {
                free(prev);
                t->next_spec = NULL;
                apply_change(l, t, sp);
            }
        }
    }
    for (int i = l->ntargets - 1; i >= 0; i--) {
        if (l->targets[i]->seen)
            continue;
        dsp_target *t = l->targets[i];
        const dsp_spec *sp = NULL;
        for (int k = 0; k < n && sp == NULL; k++)
            if (specs[k].unheld && strcmp(specs[k].name, t->name) == 0 &&
                strcmp(specs[k].set.tenant, t->set.tenant) == 0)
                sp = &specs[k];
        wh_info("target %s/%s %s", t->set.tenant, t->name,
                sp == NULL     ? "removed"
                : sp->handover ? "handed over (its lease given up to balance; the last commit "
                                 "is sent)"
                               : "removed: its lease is not held here");
        remove_target(l, i, sp == NULL ? RM_GONE : sp->handover ? RM_HANDOVER : RM_UNHELD);
        removed++;
    }
    free(specs);
    wh_info("state version %" PRIu64 " applied: %d target(s) (%d added, %d changed, %d removed)",
            version, l->ntargets, added, changed, removed);
    atomic_store(&l->version, version); /* after the log line: tests wait on it */
}

/* Loop thread: swaps in changes that waited for a request to finish. */
static void apply_deferred(dsp_loop *l)
{
    for (int i = 0; i < l->ntargets; i++) {
        dsp_target *t = l->targets[i];
        if (t->next_spec == NULL || t->state == DSP_T_POSTING || t->state == DSP_T_DEADLETTER)
            continue;
        apply_change(l, t, t->next_spec);
        free(t->next_spec);
        t->next_spec = NULL;
    }
}

static int stopping(dsp_loop *l)
{
    return atomic_load(&l->stop) || wh_stop_requested;
}

/* Collects finished transfers. Returns how many finished. */
static int reap(dsp_loop *l)
{
    int n = 0, left = 0;
    CURLMsg *m;
    while ((m = curl_multi_info_read(l->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *e = m->easy_handle;
        CURLcode res = m->data.result;
        dsp_xfer *x = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
        if (x == NULL) {
            curl_multi_remove_handle(l->multi, e);
            continue;
        }
        if (x->t->draining)
            drain_reaped(l, x->t, x, res);
        else if (x->lane >= 0)
            dsp_target_lane_finished(x->t, x, l->multi, res, wh_now_ms());
        else
            dsp_target_finished(x->t, l->multi, res, wh_now_ms());
        l->inflight--;
        n++;
    }
    return n;
}

#define DSP_LEASE_RECHECK_MS 20

/* With leases, a request starts only while the lease is valid here (not
 * merely while the loop still has the target: the lease thread may tell
 * the loop late, its store calls being slow) and its takeover wait is over;
 * the answer is kept until the validity it gave ends. */
static int lease_allows(dsp_loop *l, dsp_target *t, uint64_t now)
{
    uint64_t ep = atomic_load(&t->lease_epoch);
    if (l->lease.post_until == NULL || ep == 0)
        return 1;
    if (now < t->lease_post_until && ep == t->lease_post_epoch)
        return 1;
    t->lease_post_epoch = ep;
    t->lease_post_until = l->lease.post_until(l->lease.arg, t->set.tenant, t->name, ep);
    return now < t->lease_post_until;
}

static int start_ready(dsp_loop *l)
{
    int started = 0;
    if (l->ntargets == 0)
        return 0;
    uint64_t now = wh_now_ms();
    for (int k = 0; k < l->ntargets; k++) {
        if (l->max_inflight > 0 && l->inflight >= l->max_inflight)
            break;
        dsp_target *t = l->targets[(l->rr + k) % l->ntargets];
        /* an old incarnation's request may still be at the receiver */
        if (l->ndraining > 0 && draining_has(l, t->set.tenant, t->name))
            continue;
        if (!lease_allows(l, t, now))
            continue;
        int budget = l->max_inflight > 0 ? l->max_inflight - l->inflight : INT_MAX;
        int r = dsp_target_maybe_post(t, l->multi, now, budget);
        if (r > 0) {
            l->inflight += r;
            started += r;
        }
    }
    l->rr = (l->rr + 1) % l->ntargets;
    return started;
}

static int next_timeout(dsp_loop *l)
{
    uint64_t now = wh_now_ms();
    long to = DSP_POLL_MAX_MS;
    for (int i = 0; i < l->ntargets; i++) {
        dsp_target_publish(l->targets[i]);
        dsp_target_log_flush(l->targets[i], now);
        long t = dsp_target_timeout_ms(l->targets[i], now);
        /* a target its lease keeps from posting is looked at again soon,
         * not at once (no spin until the loop is told to drop it) */
        if (t >= 0 && t < DSP_LEASE_RECHECK_MS && l->lease.post_until != NULL &&
            atomic_load(&l->targets[i]->lease_epoch) != 0 && now >= l->targets[i]->lease_post_until)
            t = DSP_LEASE_RECHECK_MS;
        if (t >= 0 && t < to)
            to = t;
    }
    return (int)to;
}

/* Waits up to max_ms for sockets, curl's timer or a wake-up, and lets curl
 * act on what happened (curl_multi_socket_action). */
static void poll_once(dsp_loop *l, int max_ms)
{
    int running = 0;
    int wait = max_ms;
    if (l->curl_deadline_ms >= 0) {
        int64_t left = l->curl_deadline_ms - (int64_t)wh_now_ms();
        if (left < wait)
            wait = left > 0 ? (int)left : 0;
    }
    /* notifications an earlier recv left in the subscriber's buffer (the
     * notification thread's before it handed the socket over, or past
     * note_drain's bound): the socket is not readable for them */
    int buffered = l->reg_fd >= 0 && wh_sub_buffered(l->sub);
    if (buffered)
        wait = 0;
    struct epoll_event evs[64];
    int n = epoll_wait(l->epfd, evs, (int)WH_ARRAY_LEN(evs), wait);
    if (n < 0 && errno != EINTR) {
        wh_error("epoll_wait: %s", strerror(errno));
        wh_sleep_ms(10);
    }
    for (int i = 0; i < n; i++) {
        if (evs[i].data.fd == l->evfd) {
            uint64_t v; /* one read takes every wake-up (a counter) */
            ssize_t r = read(l->evfd, &v, sizeof(v));
            WH_UNUSED(r);
            continue;
        }
        if (l->sigfd >= 0 && evs[i].data.fd == l->sigfd) {
            wh_signal_drain(); /* the loop reads the flags next */
            continue;
        }
        if (l->reg_fd >= 0 && evs[i].data.fd == l->reg_fd) {
            note_drain(l);
            continue;
        }
        int flags = ((evs[i].events & EPOLLIN) ? CURL_CSELECT_IN : 0) |
                    ((evs[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
                    ((evs[i].events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);
        CURLMcode mc = curl_multi_socket_action(l->multi, evs[i].data.fd, flags, &running);
        if (mc != CURLM_OK)
            wh_error("curl_multi_socket_action: %s", curl_multi_strerror(mc));
    }
    if (buffered && l->reg_fd >= 0 && wh_sub_buffered(l->sub))
        note_drain(l);
    if (l->curl_deadline_ms >= 0 && (int64_t)wh_now_ms() >= l->curl_deadline_ms) {
        l->curl_deadline_ms = -1;
        CURLMcode mc = curl_multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        if (mc != CURLM_OK)
            wh_error("curl_multi_socket_action: %s", curl_multi_strerror(mc));
    }
}

int dsp_loop_run(dsp_loop *l)
{
    wh_info("dispatching to %d target(s)", l->ntargets);
    l->loop_thr = pthread_self();
    atomic_store(&l->loop_on, 1);
    while (!stopping(l)) {
        note_adopt(l);
        if (wh_reload_requested) {
            wh_reload_requested = 0;
            if (l->on_reload != NULL)
                l->on_reload(l->reload_arg);
        }
        if (atomic_load(&l->has_pend))
            reconcile(l);
        reap(l);
        apply_deferred(l);
        /* new transfers: curl asks for a timeout call at once (timer_cb 0) */
        int started = start_ready(l);
        poll_once(l, started > 0 ? 0 : next_timeout(l));
    }
    /* Drain: let requests in flight finish for a bounded time. */
    uint64_t deadline = wh_now_ms() + DSP_DRAIN_MS;
    if (l->inflight > 0)
        wh_info("stopping: waiting up to %d ms for %d request(s) in flight", DSP_DRAIN_MS,
                l->inflight);
    while (l->inflight > 0) {
        uint64_t now = wh_now_ms();
        if (now >= deadline)
            break;
        long left = (long)(deadline - now);
        poll_once(l, left < 100 ? (int)left : 100);
        reap(l);
    }
    for (int i = 0; i < l->ntargets; i++) {
        int n = dsp_target_abandon(l->targets[i], l->multi);
        if (n > 0 && l->lease.abandoned)
            l->lease.abandoned(l->lease.arg, l->targets[i]->set.tenant, l->targets[i]->name);
    }
    drain_abandon(l);
    l->inflight = 0;
    atomic_store(&l->loop_on, 0);
    if (l->reg_fd >= 0)
        note_release(l);
    return WH_OK;
}

void dsp_loop_stop(dsp_loop *l)
{
    atomic_store(&l->stop, 1);
    wake(l);
}

/* Label value escaping for Prometheus: \ " and newline. */
static int put_value(wh_buf *b, const char *v)
{
    for (const char *p = v; *p; p++) {
        if ((*p == '\\' || *p == '"') && wh_buf_putc(b, '\\') != WH_OK)
            return WH_ERR;
        if (*p == '\n') {
            if (wh_buf_puts(b, "\\n") != WH_OK)
                return WH_ERR;
            continue;
        }
        if (wh_buf_putc(b, *p) != WH_OK)
            return WH_ERR;
    }
    return WH_OK;
}

static int put_labels_of(wh_buf *b, const char *tenant, const char *name)
{
    if (wh_buf_puts(b, "tenant=\"") != WH_OK || put_value(b, tenant) != WH_OK ||
        wh_buf_puts(b, "\",target=\"") != WH_OK || put_value(b, name) != WH_OK ||
        wh_buf_putc(b, '"') != WH_OK)
        return WH_ERR;
    return wh_buf_cstr(b);
}

static int put_labels(wh_buf *b, const dsp_target *t)
{
    return put_labels_of(b, t->set.tenant, t->name);
}

typedef enum {
    M_DELIVERED,
    M_FAILURES,
    M_LATENCY,
    M_COMMITTED_LSN,
    M_PAUSED,
    M_STATE,
    M_RESETS,
    M_RETRIES,
    M_DEAD,
    M_SHED,
    M_PERMANENT,
    M_RATE_WAITS,
    M_SSRF,
    M_BR_STATE,
    M_BR_OPENS,
    M_DEGRADED,
    M_DISABLED,
    M_BLOCKED,
    M_FILTERED,
    M_REPLAYED,
    M_NEEDS_SNAPSHOT,
    M_CONNECTIONS,
    M_N
} metric_kind;

static int render_metric(dsp_loop *l, wh_buf *out, metric_kind kind)
{
    static const char *names[] = {"walhook_events_delivered_total",
                                  "walhook_delivery_failures_total",
                                  "walhook_delivery_latency_seconds",
                                  "walhook_dispatcher_committed_lsn",
                                  "walhook_target_paused",
                                  "walhook_target_state",
                                  "walhook_target_offset_resets_total",
                                  "walhook_target_retries_total",
                                  "walhook_target_dead_letters_total",
                                  "walhook_target_shed_total",
                                  "walhook_target_permanent_failures_total",
                                  "walhook_target_rate_limited_total",
                                  "walhook_target_ssrf_refused_total",
                                  "walhook_target_breaker_state",
                                  "walhook_target_breaker_opens_total",
                                  "walhook_target_degraded",
                                  "walhook_target_disabled",
                                  "walhook_target_blocked",
                                  "walhook_target_filtered_total",
                                  "walhook_target_replayed_total",
                                  "walhook_target_needs_snapshot",
                                  "walhook_target_connections"};
    static const char *types[] = {
        "counter", "counter", "histogram", "gauge",   "gauge",   "gauge", "counter", "counter",
        "counter", "counter", "counter",   "counter", "counter", "gauge", "counter", "gauge",
        "gauge",   "gauge",   "counter",   "counter", "gauge",   "gauge"};
    _Static_assert(sizeof(names) / sizeof(names[0]) == M_N, "a name per metric");
    _Static_assert(sizeof(types) / sizeof(types[0]) == M_N, "a type per metric");
    static const char *helps[] = {
        "Events delivered with a 2xx response, per target.",
        "Failed delivery attempts (non-2xx or transport error), per target.",
        "Time from commit_ts to the 2xx response, per event, per target.",
        "Commit LSN of the last offset the store acknowledged, per target.",
        "1 while the target is paused (it keeps its offset).",
        "Delivery state of the target: 0 idle, 1 posting, 2 waiting (backoff, breaker, rate "
        "limit), 3 paused, 4 disabled (410), 5 writing dead letters, 6 blocked.",
        "Times the target dropped its read-ahead because its offset was moved.",
        "Failed attempts that will be retried.",
        "Events written to the dead-letter queue (permanent failure, retries exhausted, shed).",
        "Events shed to the dead-letter queue by mode fast (backlog over its cap).",
        "Attempts answered with a permanent failure (4xx other than 408/425/429, 3xx).",
        "Times a request waited for the target's token bucket.",
        "Connections refused by the SSRF guard (address not allowed).",
        "Circuit breaker: 0 closed, 1 open, 2 half-open.",
        "Times the circuit breaker opened.",
        "1 while the nack window holds more failures than its threshold.",
        "1 while the target is disabled after a 410 Gone (resume it).",
        "1 while on_failure = block holds the target at a failing event.",
        "Events the target's filter skipped (committed past, not posted).",
        "Dead letters delivered again after an operator replayed them.",
        "1 while the store marks the target NEEDS_SNAPSHOT (behind its tenant's retention cap, or "
        "force_resync): "
        "nothing is posted until its offset is set.",
        "Sockets open to the target, idle keep-alive ones included (at most max_connections)."};
    _Static_assert(sizeof(helps) / sizeof(helps[0]) == M_N, "a help per metric");
    if (wh_metric_header(out, names[kind], types[kind], helps[kind]) != WH_OK)
        return WH_ERR;
    wh_buf lab;
    wh_buf_init(&lab, 0);
    int rc = WH_OK;
    for (int i = 0; i < l->ntargets && rc == WH_OK; i++) {
        dsp_target *t = l->targets[i];
        wh_buf_reset(&lab);
        if (put_labels(&lab, t) != WH_OK) {
            rc = WH_ERR;
            break;
        }
        switch (kind) {
        case M_DELIVERED:
            rc = wh_metric_u64(out, names[kind], lab.data, wh_counter_get(&t->delivered));
            break;
        case M_FAILURES:
            rc = wh_metric_u64(out, names[kind], lab.data, wh_counter_get(&t->failures));
            break;
        case M_LATENCY:
            rc = wh_metric_hist(out, names[kind], lab.data, &t->latency);
            break;
        case M_COMMITTED_LSN:
            rc = wh_metric_i64(out, names[kind], lab.data, wh_gauge_get(&t->committed_lsn));
            break;
        case M_PAUSED:
            rc = wh_metric_u64(out, names[kind], lab.data, t->paused ? 1 : 0);
            break;
        case M_STATE:
            rc = wh_metric_u64(out, names[kind], lab.data,
                               t->paused ? 3 : (uint64_t)atomic_load(&t->state_pub));
            break;
        case M_RESETS:
            rc = wh_metric_u64(out, names[kind], lab.data, wh_counter_get(&t->resets));
            break;
        case M_RETRIES:
            rc = wh_metric_u64(out, names[kind], lab.data, wh_counter_get(&t->retries));
            break;
        case M_DEAD:
            rc = wh_metric_u64(out, names[kind], lab.data, wh_counter_get(&t->dead_letters));
            break;
        case M_SHED:
            rc = wh_metric_u64(out, names[kind], lab.data, wh_counter_get(&t->shed));
            break;
        case M_PERMANENT:
            rc = wh_metric_u64(out, names[kind], lab.data, wh_counter_get(&t->permanent));
            break;
        case M_RATE_WAITS:
            rc = wh_metric_u64(out, names[kind], lab.data, wh_counter_get(&t->rate_waits));
            break;
        case M_SSRF:
            rc = wh_metric_u64(out, names[kind], lab.data, wh_counter_get(&t->ssrf_refusals));
            break;
        case M_BR_STATE:
            rc = wh_metric_u64(out, names[kind], lab.data, (uint64_t)atomic_load(&t->breaker_pub));
            break;
        case M_BR_OPENS:
            rc = wh_metric_u64(out, names[kind], lab.data, wh_counter_get(&t->breaker_opens));
            break;
        case M_DEGRADED:
            rc = wh_metric_u64(out, names[kind], lab.data, (uint64_t)atomic_load(&t->degraded_pub));
            break;
        case M_DISABLED:
            rc = wh_metric_u64(out, names[kind], lab.data, (uint64_t)atomic_load(&t->disabled_pub));
            break;
        case M_REPLAYED:
            rc = wh_metric_u64(out, names[kind], lab.data, wh_counter_get(&t->replayed));
            break;
        case M_FILTERED:
            rc = wh_metric_u64(out, names[kind], lab.data, wh_counter_get(&t->filtered));
            break;
        case M_BLOCKED:
            rc = wh_metric_u64(out, names[kind], lab.data, (uint64_t)atomic_load(&t->blocked_pub));
            break;
        case M_NEEDS_SNAPSHOT:
            rc = wh_metric_u64(out, names[kind], lab.data,
                               (uint64_t)atomic_load(&t->needs_snapshot_pub));
            break;
        case M_CONNECTIONS: {
            int n = atomic_load(&t->nsock);
            rc = wh_metric_u64(out, names[kind], lab.data, n > 0 ? (uint64_t)n : 0);
            break;
        }
        default:
            break;
        }
    }
    wh_buf_free(&lab);
    return rc;
}

int dsp_loop_metrics(dsp_loop *l, wh_buf *out)
{
    int rc = WH_OK;
    pthread_mutex_lock(&l->tmu);
    for (int k = 0; k < M_N && rc == WH_OK; k++)
        rc = render_metric(l, out, (metric_kind)k);
    if (rc == WH_OK)
        rc = wh_metric_header(out, "walhook_target_config_errors_total", "counter",
                              "Times a target was refused for a bad configuration (it then "
                              "delivers nothing; the other targets go on).");
    for (int i = 0; i < l->nrefused && rc == WH_OK; i++) {
        wh_buf lab;
        wh_buf_init(&lab, 0);
        rc = put_labels_of(&lab, l->refused[i].tenant, l->refused[i].name);
        if (rc == WH_OK)
            rc = wh_metric_u64(out, "walhook_target_config_errors_total", lab.data,
                               l->refused[i].count);
        wh_buf_free(&lab);
    }
    if (rc == WH_OK)
        rc = wh_metric_header(out, "walhook_target_config_error", "gauge",
                              "1 while the target's stored settings are refused (a filter that "
                              "does not compile, a bad URL or secret; the log says why): a new "
                              "target then delivers nothing, a changed one keeps its previous "
                              "settings.");
    for (int i = 0; i < l->nrefused && rc == WH_OK; i++) {
        wh_buf lab;
        wh_buf_init(&lab, 0);
        rc = put_labels_of(&lab, l->refused[i].tenant, l->refused[i].name);
        if (rc == WH_OK)
            rc = wh_metric_u64(out, "walhook_target_config_error", lab.data,
                               l->refused[i].current ? 1 : 0);
        wh_buf_free(&lab);
    }
    if (rc == WH_OK)
        rc = wh_metric_header(out, "walhook_target_last_error_timestamp_seconds", "gauge",
                              "Unix time of the target's last failed attempt, with its error "
                              "(HTTP status or transport error; never a body) as a label; absent "
                              "while the target never failed.");
    for (int i = 0; i < l->ntargets && rc == WH_OK; i++) {
        char why[DSP_CURLERR_MAX];
        int64_t at_us = 0;
        if (!dsp_target_last_error(l->targets[i], why, sizeof(why), &at_us))
            continue;
        wh_buf lab;
        wh_buf_init(&lab, 0);
        rc = put_labels(&lab, l->targets[i]);
        if (rc == WH_OK &&
            (wh_buf_puts(&lab, ",error=\"") != WH_OK || put_value(&lab, why) != WH_OK ||
             wh_buf_putc(&lab, '"') != WH_OK || wh_buf_cstr(&lab) != WH_OK))
            rc = WH_ERR;
        if (rc == WH_OK)
            rc = wh_metric_i64(out, "walhook_target_last_error_timestamp_seconds", lab.data,
                               at_us / 1000000);
        wh_buf_free(&lab);
    }
    int n = l->ntargets;
    pthread_mutex_unlock(&l->tmu);
    if (rc == WH_OK)
        rc = wh_metric_header(out, "walhook_dispatcher_targets", "gauge",
                              "Targets the dispatcher runs (every tenant).");
    if (rc == WH_OK)
        rc = wh_metric_i64(out, "walhook_dispatcher_targets", "", n);
    uint64_t empty = 0;
    pthread_mutex_lock(&l->tmu);
    for (int i = 0; i < l->ntargets; i++)
        empty += wh_counter_get(&l->targets[i]->empty_reads);
    pthread_mutex_unlock(&l->tmu);
    if (rc == WH_OK)
        rc = wh_metric_header(out, "walhook_dispatcher_notifications_total", "counter",
                              "Durability notifications received from the store (readers read "
                              "when their tenant has new events).");
    if (rc == WH_OK)
        rc = wh_metric_u64(out, "walhook_dispatcher_notifications_total", "",
                           wh_counter_get(&l->notes));
    if (rc == WH_OK)
        rc = wh_metric_header(out, "walhook_dispatcher_notifications_loop_total", "counter",
                              "Of those, notifications the delivery loop read itself (direct "
                              "connection): a batch taken for an idle target is posted without "
                              "a thread hand-off.");
    if (rc == WH_OK)
        rc = wh_metric_u64(out, "walhook_dispatcher_notifications_loop_total", "",
                           wh_counter_get(&l->loop_notes));
    if (rc == WH_OK)
        rc = wh_metric_header(out, "walhook_dispatcher_notify_resyncs_total", "counter",
                              "Times every target was noted after the subscription to the "
                              "store's notifications (re)connected (notifications may have "
                              "been lost meanwhile: each reader Reads).");
    if (rc == WH_OK)
        rc = wh_metric_u64(out, "walhook_dispatcher_notify_resyncs_total", "",
                           wh_counter_get(&l->resyncs));
    if (rc == WH_OK)
        rc = wh_metric_header(out, "walhook_dispatcher_zone_notes_total", "counter",
                              "backpressure zone changes the store notified (taken at once, "
                              "without waiting for a Read or a Backlog poll)");
    if (rc == WH_OK)
        rc = wh_metric_u64(out, "walhook_dispatcher_zone_notes_total", "", dsp_zone_notes());
    if (rc == WH_OK)
        rc = wh_metric_header(out, "walhook_dispatcher_push_batches_total", "counter",
                              "Batches taken from the events pushed with durability "
                              "notifications, without a Read (all targets).");
    if (rc == WH_OK)
        rc = wh_metric_u64(out, "walhook_dispatcher_push_batches_total", "", dsp_push_batches());
    if (rc == WH_OK)
        rc = wh_metric_header(out, "walhook_dispatcher_push_fast_total", "counter",
                              "Of those, batches taken for an idle target as the notification "
                              "arrived, without waking its reader (all targets).");
    if (rc == WH_OK)
        rc = wh_metric_u64(out, "walhook_dispatcher_push_fast_total", "", dsp_push_fast());
    if (rc == WH_OK)
        rc = wh_metric_header(out, "walhook_dispatcher_notify_connected", "gauge",
                              "1 while subscribed to the store's durability notifications "
                              "(else readers long-poll).");
    if (rc == WH_OK)
        rc = wh_metric_u64(out, "walhook_dispatcher_notify_connected", "",
                           (uint64_t)wh_sub_connected(l->sub));
    if (rc == WH_OK)
        rc = wh_metric_header(out, "walhook_dispatcher_empty_reads_total", "counter",
                              "Reads from the store that found no event (all targets).");
    if (rc == WH_OK)
        rc = wh_metric_u64(out, "walhook_dispatcher_empty_reads_total", "", empty);
    if (rc == WH_OK)
        rc = wh_metric_header(out, "walhook_state_version", "gauge",
                              "Version of the runtime state the daemon applied last.");
    if (rc == WH_OK)
        rc = wh_metric_u64(out, "walhook_state_version", "daemon=\"dispatcher\"",
                           atomic_load(&l->version));
    if (rc != WH_OK)
        return WH_ERR;
    return wh_buf_cstr(out);
}

void dsp_loop_destroy(dsp_loop *l)
{
    if (l == NULL)
        return;
    if (l->nthr_started) {
        atomic_store(&l->nstop, 1);
        wh_sub_interrupt(l->sub);
        pthread_mutex_lock(&l->hmu);
        pthread_cond_broadcast(&l->hcv); /* it may wait for the loop */
        pthread_mutex_unlock(&l->hmu);
        pthread_join(l->nthr, NULL);
    }
    /* requests unanswered at the stop are abandoned (told, so a lease
     * released after this makes its next holder wait for them) */
    for (int i = 0; l->multi != NULL && i < l->ntargets; i++)
        if (dsp_target_abandon(l->targets[i], l->multi) > 0 && l->lease.abandoned)
            l->lease.abandoned(l->lease.arg, l->targets[i]->set.tenant, l->targets[i]->name);
    if (l->multi != NULL)
        drain_abandon(l);
    free(l->draining);
    /* stop every reader first so their final commits run in parallel */
    for (int i = 0; i < l->ntargets; i++)
        if (l->targets[i]->thr_started)
            dsp_target_stop_reader(l->targets[i]);
    uint64_t until = wh_now_ms() + DSP_LOOP_STOP_COMMIT_MS;
    for (int i = 0; i < l->ntargets; i++)
        dsp_target_drain_commit(l->targets[i], until);
    for (int i = 0; i < l->ntargets; i++) {
        dsp_target_destroy(l->targets[i]);
        free(l->targets[i]->next_spec);
        free(l->targets[i]);
    }
    free(l->targets);
    wh_sub_close(l->sub); /* after the readers: they look at its state */
    free(l->pend);
    if (l->multi != NULL)
        curl_multi_cleanup(l->multi);
    if (l->epfd >= 0)
        close(l->epfd);
    if (l->evfd >= 0)
        close(l->evfd);
    if (l->curl_inited)
        curl_global_cleanup();
    pthread_mutex_destroy(&l->tmu);
    pthread_mutex_destroy(&l->pmu);
    pthread_mutex_destroy(&l->hmu);
    pthread_cond_destroy(&l->hcv);
    free(l->lmsg);
    free(l);
}

int dsp_loop_ntargets(const dsp_loop *l)
{
    return l->ntargets;
}

dsp_target *dsp_loop_target(dsp_loop *l, int i)
{
    return (i >= 0 && i < l->ntargets) ? l->targets[i] : NULL;
}

int dsp_loop_nunhealthy(dsp_loop *l)
{
    int n = 0;
    pthread_mutex_lock(&l->tmu);
    for (int i = 0; i < l->ntargets; i++) {
        dsp_target *t = l->targets[i];
        if (atomic_load(&t->breaker_pub) == DSP_BR_OPEN || atomic_load(&t->degraded_pub) ||
            atomic_load(&t->disabled_pub) || atomic_load(&t->blocked_pub) ||
            atomic_load(&t->needs_snapshot_pub))
            n++;
    }
    pthread_mutex_unlock(&l->tmu);
    return n;
}

int dsp_loop_nrefused(dsp_loop *l)
{
    int n = 0;
    pthread_mutex_lock(&l->tmu);
    for (int i = 0; i < l->nrefused; i++)
        n += l->refused[i].current;
    pthread_mutex_unlock(&l->tmu);
    return n;
}
