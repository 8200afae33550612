/* wh_statectl: drives the store's runtime state over IPC, for tests (and
 * operators without the admin REST API).
 *
 *   wh_statectl [-c FILE] get                      the document (secrets in clear)
 *   wh_statectl [-c FILE] version
 *   wh_statectl [-c FILE] add-target TENANT NAME URL [SECRET...]
 *   wh_statectl [-c FILE] set-target TENANT NAME KEY=VALUE...
 *        keys: url, secrets (comma-separated, "" = none), paused (0|1),
 *        batch_max_events, batch_max_bytes, retry_base_ms, retry_max_ms,
 *        http_timeout_ms, and any delivery setting (max_connections=1,
 *        ordering=by_key, ...)
 *   wh_statectl [-c FILE] del-target TENANT NAME
 *   wh_statectl [-c FILE] add-tenant NAME DSN SLOT PUBLICATION
 *   wh_statectl [-c FILE] del-tenant NAME
 *   wh_statectl [-c FILE] set SETTING VALUE        a runtime setting
 *   wh_statectl [-c FILE] set-offset TENANT CONSUMER end|LSN:SEQ [VERSION]
 *        VERSION: SetOffset.expected_version, the store moves the offset only
 *        at that state version (else it prints the store's refusal, "status
 *        412: ...", exit 1)
 *   wh_statectl [-c FILE] dlq-write TENANT CONSUMER N   dead-letters the next N
 *        events after the consumer's offset (status 500, "boom", 3 attempts;
 *        exit 1 while fewer than N are stored)
 *        and moves the offset past them in the same request, as the
 *        dispatcher does; prints the new offset
 *   wh_statectl [-c FILE] positions TENANT CONSUMER    prints, as decimal
 *        integers: offset_lsn offset_seq watermark_lsn watermark_seq end_lsn
 *   wh_statectl [-c FILE] replay-read TENANT CONSUMER    prints the ids
 *        waiting in the replay queue, one a line
 *   wh_statectl [-c FILE] offset TENANT CONSUMER   prints the committed offset
 *        as "LSN-AS-DECIMAL SEQ" (0 0 when none)
 *   wh_statectl [-c FILE] dlq-ids TENANT CONSUMER  prints the id of every dead
 *        letter of the consumer, in position order, one a line
 *   wh_statectl [-c FILE] stats    prints the store's metrics (its Stats reply,
 *        served beside busy workers: also while the store waits for the disk)
 *   wh_statectl [-c FILE] lease-acquire TENANT CONSUMER OWNER TTL_MS   a
 *        LeaseAcquire as OWNER: prints "granted EPOCH" or "not granted"
 *        (exit 0), the store's error ("status N: ...") or the call's failure
 *        (exit 1)
 *   wh_statectl [-c FILE] lease-list   a LeaseList (of no owner): prints
 *        "TENANT CONSUMER OWNER EPOCH EXPIRES_IN_MS" a lease a line (OWNER
 *        "-" when none is live)
 *
 * Each change: GetState, edit, PutState(expected = the version read);
 * retried on a version conflict. Prints the new version. Exit 0 ok, 1
 * store error, 2 usage or a document the store refused. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wh_config.h"
#include "wh_ipc.h"
#include "wh_lsn.h"
#include "wh_state.h"
#include "wh_util.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: wh_statectl [-c FILE] get | version | add-target T NAME URL [SECRET...] "
            "| set-target T NAME K=V... | del-target T NAME | add-tenant NAME DSN SLOT PUB "
            "| del-tenant NAME | set SETTING VALUE | set-offset T CONSUMER end|LSN:SEQ [VERSION] "
            "| positions T CONSUMER | offset T CONSUMER | dlq-ids T CONSUMER | stats "
            "| lease-acquire T CONSUMER OWNER TTL_MS | lease-list\n");
    exit(2);
}

static wh_state_tenant *tenant_mut(wh_state *s, const char *name)
{
    for (int i = 0; i < s->ntenants; i++)
        if (strcmp(s->tenants[i].name, name) == 0)
            return &s->tenants[i];
    return NULL;
}

static wh_state_target *target_mut(wh_state_tenant *t, const char *name)
{
    for (int i = 0; i < t->ntargets; i++)
        if (strcmp(t->targets[i].name, name) == 0)
            return &t->targets[i];
    return NULL;
}

static int set_secrets(wh_state_target *tg, const char *list, char *err, size_t errlen)
{
    tg->nsecrets = 0;
    memset(tg->secrets, 0, sizeof(tg->secrets));
    char buf[1200];
    wh_strlcpy(buf, list, sizeof(buf));
    char *save = NULL;
    for (char *p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (tg->nsecrets == WH_MAX_SECRETS)
            return wh_seterr(err, errlen, "at most %d secrets", WH_MAX_SECRETS);
        wh_strlcpy(tg->secrets[tg->nsecrets++], p, sizeof(tg->secrets[0]));
    }
    return WH_OK;
}

static int set_kv(wh_state_target *tg, const char *kv, char *err, size_t errlen)
{
    const char *eq = strchr(kv, '=');
    if (eq == NULL)
        return wh_seterr(err, errlen, "%s: expected KEY=VALUE", kv);
    char key[64];
    snprintf(key, sizeof(key), "%.*s", (int)(eq - kv), kv);
    const char *v = eq + 1;
    long long n = atoll(v);
    if (strcmp(key, "url") == 0)
        wh_strlcpy(tg->url, v, sizeof(tg->url));
    else if (strcmp(key, "secrets") == 0)
        return set_secrets(tg, v, err, errlen);
    else if (strcmp(key, "paused") == 0)
        tg->paused = n != 0;
    else if (strcmp(key, "batch_max_events") == 0)
        tg->batch_max_events = (int)n;
    else if (strcmp(key, "batch_max_bytes") == 0)
        tg->batch_max_bytes = n;
    else if (strcmp(key, "retry_base_ms") == 0)
        tg->retry_base_ms = (int)n;
    else if (strcmp(key, "retry_max_ms") == 0)
        tg->retry_max_ms = (int)n;
    else if (strcmp(key, "http_timeout_ms") == 0)
        tg->http_timeout_ms = (int)n;
    else {
        /* a delivery setting (max_connections, ordering, ...): a number when
         * the value is one, else a string */
        char *end = NULL;
        long long num = strtoll(v, &end, 10);
        json_t *j = (*v != '\0' && end && *end == '\0') ? json_integer(num) : json_string(v);
        int rc = j ? wh_delivery_set(&tg->dl, key, j, err, errlen) : WH_ERR;
        json_decref(j);
        return rc;
    }
    return WH_OK;
}

/* Applies the command to s. */
static int edit(wh_state *s, int argc, char **argv, char *err, size_t errlen)
{
    const char *cmd = argv[0];
    if (strcmp(cmd, "add-target") == 0 || strcmp(cmd, "set-target") == 0 ||
        strcmp(cmd, "del-target") == 0) {
        if (argc < 3)
            usage();
        wh_state_tenant *tn = tenant_mut(s, argv[1]);
        if (tn == NULL)
            return wh_seterr(err, errlen, "no tenant %s", argv[1]);
        wh_state_target *tg = target_mut(tn, argv[2]);
        if (cmd[0] == 'a') {
            if (argc < 4)
                usage();
            if (tg != NULL)
                return wh_seterr(err, errlen, "target %s/%s exists", argv[1], argv[2]);
            if ((tg = wh_state_target_add(tn)) == NULL)
                return wh_seterr(err, errlen, "out of memory");
            wh_strlcpy(tg->name, argv[2], sizeof(tg->name));
            wh_strlcpy(tg->url, argv[3], sizeof(tg->url));
            for (int i = 4; i < argc && tg->nsecrets < WH_MAX_SECRETS; i++)
                wh_strlcpy(tg->secrets[tg->nsecrets++], argv[i], sizeof(tg->secrets[0]));
            return WH_OK;
        }
        if (tg == NULL)
            return wh_seterr(err, errlen, "no target %s/%s", argv[1], argv[2]);
        if (cmd[0] == 'd')
            return wh_state_target_remove(tn, argv[2]);
        for (int i = 3; i < argc; i++)
            if (set_kv(tg, argv[i], err, errlen) != WH_OK)
                return WH_ERR;
        return WH_OK;
    }
    if (strcmp(cmd, "add-tenant") == 0) {
        if (argc < 5)
            usage();
        if (tenant_mut(s, argv[1]) != NULL)
            return wh_seterr(err, errlen, "tenant %s exists", argv[1]);
        wh_state_tenant *tn = wh_state_tenant_add(s);
        if (tn == NULL)
            return wh_seterr(err, errlen, "out of memory");
        wh_strlcpy(tn->name, argv[1], sizeof(tn->name));
        wh_strlcpy(tn->dsn, argv[2], sizeof(tn->dsn));
        wh_strlcpy(tn->slot, argv[3], sizeof(tn->slot));
        wh_strlcpy(tn->publication, argv[4], sizeof(tn->publication));
        tn->create_slot = 1;
        return WH_OK;
    }
    if (strcmp(cmd, "del-tenant") == 0) {
        if (argc < 2)
            usage();
        if (wh_state_tenant_remove(s, argv[1]) != WH_OK)
            return wh_seterr(err, errlen, "no tenant %s", argv[1]);
        return WH_OK;
    }
    if (strcmp(cmd, "set") == 0) {
        if (argc < 3)
            usage();
        return wh_config_set(&s->settings, argv[1], argv[2], err, errlen);
    }
    usage();
    return WH_ERR;
}

static int set_offset(wh_client *c, int argc, char **argv)
{
    if (argc < 4)
        usage();
    Walhook__SetOffset so = WALHOOK__SET_OFFSET__INIT;
    Walhook__Position pos = WALHOOK__POSITION__INIT;
    so.tenant = argv[1];
    so.consumer = argv[2];
    if (strcmp(argv[3], "end") == 0) {
        so.to_end = 1;
    } else {
        char lsn[64];
        const char *colon = strrchr(argv[3], ':');
        if (colon == NULL)
            usage();
        snprintf(lsn, sizeof(lsn), "%.*s", (int)(colon - argv[3]), argv[3]);
        if (wh_lsn_parse(lsn, &pos.lsn) != WH_OK)
            usage();
        pos.seq = (uint32_t)atol(colon + 1);
        so.pos = &pos;
    }
    if (argc > 4) {
        char *end;
        so.expected_version = strtoull(argv[4], &end, 10);
        if (*end != '\0' || so.expected_version == 0)
            usage();
    }
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    req.body_case = WALHOOK__REQUEST__BODY_SET_OFFSET;
    req.set_offset = &so;
    Walhook__Reply *rep = NULL;
    char err[WH_ERRLEN];
    int status = 0;
    if (wh_client_call_status(c, &req, &rep, &status, err, sizeof(err)) != WH_OK) {
        if (status != 0)
            fprintf(stderr, "wh_statectl: SetOffset: status %d: %s\n", status, err);
        else
            fprintf(stderr, "wh_statectl: SetOffset: %s\n", err);
        return 1;
    }
    if (rep->body_case == WALHOOK__REPLY__BODY_OFFSET && rep->offset && rep->offset->committed) {
        char a[WH_LSN_STRLEN], b[WH_LSN_STRLEN] = "0/0";
        wh_lsn_format(rep->offset->committed->lsn, a, sizeof(a));
        if (rep->offset->previous)
            wh_lsn_format(rep->offset->previous->lsn, b, sizeof(b));
        printf("%s:%u (was %s:%u) epoch %llu\n", a, rep->offset->committed->seq, b,
               rep->offset->previous ? rep->offset->previous->seq : 0,
               (unsigned long long)rep->offset->epoch);
    }
    walhook__reply__free_unpacked(rep, NULL);
    return 0;
}

static int positions(wh_client *c, int argc, char **argv)
{
    if (argc < 3)
        usage();
    char err[WH_ERRLEN];
    Walhook__GetOffset g = WALHOOK__GET_OFFSET__INIT;
    g.tenant = argv[1];
    g.consumer = argv[2];
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    req.body_case = WALHOOK__REQUEST__BODY_GET_OFFSET;
    req.get_offset = &g;
    Walhook__Reply *o = NULL, *t = NULL;
    if (wh_client_call(c, &req, &o, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "wh_statectl: GetOffset: %s\n", err);
        return 1;
    }
    Walhook__TenantInfo ti = WALHOOK__TENANT_INFO__INIT;
    ti.tenant = argv[1];
    req.body_case = WALHOOK__REQUEST__BODY_TENANT_INFO;
    req.tenant_info = &ti;
    if (wh_client_call(c, &req, &t, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "wh_statectl: TenantInfo: %s\n", err);
        walhook__reply__free_unpacked(o, NULL);
        return 1;
    }
    const Walhook__Position *op = o->offset ? o->offset->committed : NULL;
    const Walhook__Position *wp = t->tenant_info ? t->tenant_info->watermark : NULL;
    const Walhook__Position *ep = t->tenant_info ? t->tenant_info->end : NULL;
    printf("%llu %u %llu %u %llu\n", (unsigned long long)(op ? op->lsn : 0), op ? op->seq : 0,
           (unsigned long long)(wp ? wp->lsn : 0), wp ? wp->seq : 0,
           (unsigned long long)(ep ? ep->lsn : 0));
    walhook__reply__free_unpacked(o, NULL);
    walhook__reply__free_unpacked(t, NULL);
    return 0;
}

/* Event id from an envelope (the "id" member), for replay-read. */
static void print_id(const Walhook__Event *e)
{
    const char *j = (const char *)e->json.data;
    const char *p = e->json.len > 8 ? strstr(j, "\"id\":\"") : NULL;
    if (!p) {
        printf("?\n");
        return;
    }
    p += 6;
    const char *q = memchr(p, '"', e->json.len - (size_t)(p - j));
    printf("%.*s\n", q ? (int)(q - p) : 0, p);
}

/* stats: the store's Stats, its metrics text. */
static int stats(wh_client *c)
{
    char err[WH_ERRLEN];
    Walhook__StatsRequest sr = WALHOOK__STATS_REQUEST__INIT;
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    req.body_case = WALHOOK__REQUEST__BODY_STATS;
    req.stats = &sr;
    Walhook__Reply *rep = NULL;
    if (wh_client_call(c, &req, &rep, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "wh_statectl: Stats: %s\n", err);
        return 1;
    }
    int ok = rep->body_case == WALHOOK__REPLY__BODY_STATS && rep->stats != NULL &&
             rep->stats->metrics_text != NULL;
    if (ok)
        fputs(rep->stats->metrics_text, stdout);
    else
        fprintf(stderr, "wh_statectl: Stats: no metrics in the reply\n");
    walhook__reply__free_unpacked(rep, NULL);
    return ok ? 0 : 1;
}

/* lease-acquire: one LeaseAcquire; lease-list: a LeaseList of no owner. */
static int leases(wh_client *c, int argc, char **argv)
{
    char err[WH_ERRLEN];
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__LeaseAcquire a = WALHOOK__LEASE_ACQUIRE__INIT;
    Walhook__LeaseList l = WALHOOK__LEASE_LIST__INIT;
    int acq = strcmp(argv[0], "lease-acquire") == 0;
    if (acq) {
        if (argc < 5)
            usage();
        a.tenant = argv[1];
        a.consumer = argv[2];
        a.owner = argv[3];
        a.ttl_ms = (uint32_t)strtoul(argv[4], NULL, 10);
        req.body_case = WALHOOK__REQUEST__BODY_LEASE_ACQUIRE;
        req.lease_acquire = &a;
    } else {
        req.body_case = WALHOOK__REQUEST__BODY_LEASE_LIST;
        req.lease_list = &l;
    }
    Walhook__Reply *rep = NULL;
    int status = 0;
    if (wh_client_call_status(c, &req, &rep, &status, err, sizeof(err)) != WH_OK) {
        if (status != 0)
            fprintf(stderr, "wh_statectl: %s: status %d: %s\n", argv[0], status, err);
        else
            fprintf(stderr, "wh_statectl: %s: %s\n", argv[0], err);
        return 1;
    }
    const Walhook__LeaseReply *r = rep->body_case == WALHOOK__REPLY__BODY_LEASE ? rep->lease : NULL;
    if (r == NULL) {
        fprintf(stderr, "wh_statectl: %s: no lease in the reply\n", argv[0]);
        walhook__reply__free_unpacked(rep, NULL);
        return 1;
    }
    if (acq) {
        if (r->granted)
            printf("granted %llu\n", (unsigned long long)r->epoch);
        else
            printf("not granted\n");
    }
    for (size_t i = 0; !acq && i < r->n_leases; i++) {
        const Walhook__LeaseInfo *e = r->leases[i];
        printf("%s %s %s %llu %lld\n", e->tenant, e->consumer,
               e->owner && e->owner[0] ? e->owner : "-", (unsigned long long)e->epoch,
               (long long)e->expires_in_ms);
    }
    walhook__reply__free_unpacked(rep, NULL);
    return 0;
}

/* offset: GetOffset; dlq-ids: DlqList paged to the end. */
static int inspect(wh_client *c, int argc, char **argv)
{
    if (argc < 3)
        usage();
    char err[WH_ERRLEN];
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__Reply *rep = NULL;
    if (strcmp(argv[0], "offset") == 0) {
        Walhook__GetOffset go = WALHOOK__GET_OFFSET__INIT;
        go.tenant = argv[1];
        go.consumer = argv[2];
        req.body_case = WALHOOK__REQUEST__BODY_GET_OFFSET;
        req.get_offset = &go;
        if (wh_client_call(c, &req, &rep, err, sizeof(err)) != WH_OK) {
            fprintf(stderr, "wh_statectl: GetOffset: %s\n", err);
            return 1;
        }
        const Walhook__Position *p = rep->body_case == WALHOOK__REPLY__BODY_OFFSET && rep->offset
                                         ? rep->offset->committed
                                         : NULL;
        printf("%llu %u\n", p ? (unsigned long long)p->lsn : 0ULL, p ? p->seq : 0);
        walhook__reply__free_unpacked(rep, NULL);
        return 0;
    }
    Walhook__Position after = WALHOOK__POSITION__INIT;
    Walhook__DlqList dl = WALHOOK__DLQ_LIST__INIT;
    dl.tenant = argv[1];
    dl.consumer = argv[2];
    dl.limit = 1000;
    req.body_case = WALHOOK__REQUEST__BODY_DLQ_LIST;
    req.dlq_list = &dl;
    for (;;) {
        if (wh_client_call(c, &req, &rep, err, sizeof(err)) != WH_OK) {
            fprintf(stderr, "wh_statectl: DlqList: %s\n", err);
            return 1;
        }
        if (rep->body_case != WALHOOK__REPLY__BODY_DLQ || rep->dlq == NULL) {
            walhook__reply__free_unpacked(rep, NULL);
            fprintf(stderr, "wh_statectl: DlqList: no list in the reply\n");
            return 1;
        }
        int more = rep->dlq->more && rep->dlq->n_records > 0;
        for (size_t i = 0; i < rep->dlq->n_records; i++) {
            const Walhook__Event *e = rep->dlq->records[i]->event;
            if (e == NULL)
                continue;
            print_id(e);
            after.lsn = e->commit_lsn;
            after.seq = e->seq;
        }
        walhook__reply__free_unpacked(rep, NULL);
        if (!more)
            return 0;
        dl.has_after = 1;
        dl.after = &after;
    }
}

static int dlq_tools(wh_client *c, int argc, char **argv)
{
    char err[WH_ERRLEN];
    if (argc < 3)
        usage();
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__Reply *rep = NULL;
    if (strcmp(argv[0], "replay-read") == 0) {
        Walhook__ReplayRead rr = WALHOOK__REPLAY_READ__INIT;
        rr.tenant = argv[1];
        rr.consumer = argv[2];
        rr.max_events = 1000;
        req.body_case = WALHOOK__REQUEST__BODY_REPLAY_READ;
        req.replay_read = &rr;
        if (wh_client_call(c, &req, &rep, err, sizeof(err)) != WH_OK) {
            fprintf(stderr, "wh_statectl: ReplayRead: %s\n", err);
            return 1;
        }
        for (size_t i = 0; rep->read && i < rep->read->n_events; i++)
            print_id(rep->read->events[i]);
        walhook__reply__free_unpacked(rep, NULL);
        return 0;
    }
    if (argc < 4)
        usage();
    Walhook__ReadRequest rd = WALHOOK__READ_REQUEST__INIT;
    rd.tenant = argv[1];
    rd.consumer = argv[2];
    rd.max_events = (uint32_t)atoi(argv[3]);
    req.body_case = WALHOOK__REQUEST__BODY_READ;
    req.read = &rd;
    if (rd.max_events == 0 || wh_client_call(c, &req, &rep, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "wh_statectl: Read: %s\n", rd.max_events ? err : "N must be > 0");
        return rd.max_events ? 1 : 2;
    }
    Walhook__ReadReply *r = rep->read;
    size_t n = r ? r->n_events : 0;
    if (n < rd.max_events) { /* not stored yet: the caller retries */
        walhook__reply__free_unpacked(rep, NULL);
        fprintf(stderr, "wh_statectl: %zu events after the offset, want %u\n", n, rd.max_events);
        return 1;
    }
    Walhook__DlqRecord *recs = calloc(n, sizeof(*recs));
    Walhook__DlqRecord **rp = calloc(n, sizeof(*rp));
    Walhook__DlqError *errs = calloc(2 * n, sizeof(*errs));
    int64_t now = wh_wallclock_us();
    for (size_t i = 0; recs && rp && errs && i < n; i++) {
        walhook__dlq_record__init(&recs[i]);
        for (int k = 0; k < 2; k++) {
            Walhook__DlqError *e = &errs[2 * i + (size_t)k];
            walhook__dlq_error__init(e);
            e->status = 500;
            e->body_excerpt.data = (uint8_t *)"boom";
            e->body_excerpt.len = 4;
            e->at_us = now - (k ? 0 : 1000000);
        }
        recs[i].event = r->events[i];
        recs[i].attempts = 3;
        recs[i].first_error = &errs[2 * i];
        recs[i].last_error = &errs[2 * i + 1];
        recs[i].dead_at_us = now;
        recs[i].reason = "exhausted";
        rp[i] = &recs[i];
    }
    Walhook__Position pos = WALHOOK__POSITION__INIT;
    pos.lsn = r->events[n - 1]->commit_lsn;
    pos.seq = r->events[n - 1]->seq;
    Walhook__DlqWrite w = WALHOOK__DLQ_WRITE__INIT;
    w.tenant = argv[1];
    w.consumer = argv[2];
    w.n_records = n;
    w.records = rp;
    w.has_pos = 1;
    w.pos = &pos;
    w.epoch = r->epoch;
    Walhook__Request wr = WALHOOK__REQUEST__INIT;
    wr.body_case = WALHOOK__REQUEST__BODY_DLQ_WRITE;
    wr.dlq_write = &w;
    Walhook__Reply *wrep = NULL;
    int rc = 0;
    if (!recs || !rp || !errs || wh_client_call(c, &wr, &wrep, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "wh_statectl: DlqWrite: %s\n", recs && rp && errs ? err : "no memory");
        rc = 1;
    } else {
        char l[WH_LSN_STRLEN];
        wh_lsn_format(pos.lsn, l, sizeof(l));
        printf("%s:%u\n", l, pos.seq);
        walhook__reply__free_unpacked(wrep, NULL);
    }
    free(recs);
    free(rp);
    free(errs);
    walhook__reply__free_unpacked(rep, NULL);
    return rc;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int i = 1;
    if (argc > 2 && strcmp(argv[1], "-c") == 0) {
        path = argv[2];
        i = 3;
    }
    if (i >= argc)
        usage();
    static wh_config cfg;
    char err[WH_ERRLEN];
    wh_log_init("wh_statectl", WH_LOG_WARN);
    if (wh_config_load(&cfg, path, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "wh_statectl: %s\n", err);
        return 2;
    }
    wh_client *c = NULL;
    size_t maxmsg = cfg.ipc_max_msg_bytes > 0 ? (size_t)cfg.ipc_max_msg_bytes : (size_t)64 << 20;
    if (wh_client_open(&c, cfg.store_endpoint, 5000, maxmsg, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "wh_statectl: %s\n", err);
        return 1;
    }
    int rc = 1;
    char **av = argv + i;
    int ac = argc - i;
    if (strcmp(av[0], "set-offset") == 0) {
        rc = set_offset(c, ac, av);
        goto out;
    }
    if (strcmp(av[0], "stats") == 0) {
        rc = stats(c);
        goto out;
    }
    if (strcmp(av[0], "positions") == 0) {
        rc = positions(c, ac, av);
        goto out;
    }
    if (strcmp(av[0], "dlq-write") == 0 || strcmp(av[0], "replay-read") == 0) {
        rc = dlq_tools(c, ac, av);
        goto out;
    }
    if (strcmp(av[0], "lease-acquire") == 0 || strcmp(av[0], "lease-list") == 0) {
        rc = leases(c, ac, av);
        goto out;
    }
    if (strcmp(av[0], "offset") == 0 || strcmp(av[0], "dlq-ids") == 0) {
        rc = inspect(c, ac, av);
        goto out;
    }
    for (int attempt = 0; attempt < 10; attempt++) {
        wh_state *s = NULL, *m = NULL;
        int frc = wh_state_fetch(c, 0, &cfg, &s, err, sizeof(err));
        if (frc != WH_OK || s == NULL) {
            fprintf(stderr, "wh_statectl: GetState: %s\n", frc != WH_OK ? err : "no state");
            goto out;
        }
        if (strcmp(av[0], "get") == 0 || strcmp(av[0], "version") == 0) {
            if (av[0][0] == 'v') {
                printf("%llu\n", (unsigned long long)s->version);
            } else {
                wh_buf b;
                wh_buf_init(&b, 0);
                if (wh_state_render(s, &b, 0) == WH_OK && wh_buf_cstr(&b) == WH_OK)
                    printf("%s\n", b.data);
                wh_buf_free(&b);
            }
            wh_state_unref(s);
            rc = 0;
            goto out;
        }
        if (wh_state_clone(&m, s) != WH_OK) {
            wh_state_unref(s);
            fprintf(stderr, "wh_statectl: out of memory\n");
            goto out;
        }
        uint64_t expect = s->version;
        wh_state_unref(s);
        if (edit(m, ac, av, err, sizeof(err)) != WH_OK) {
            fprintf(stderr, "wh_statectl: %s\n", err);
            wh_state_unref(m);
            rc = 2;
            goto out;
        }
        uint64_t nv = 0;
        int status = 0;
        int r = wh_state_store(c, m, expect, "api", &nv, &status, err, sizeof(err));
        wh_state_unref(m);
        if (r == WH_OK) {
            printf("%llu\n", (unsigned long long)nv);
            rc = 0;
            goto out;
        }
        if (status != 412) {
            fprintf(stderr, "wh_statectl: PutState: %s\n", err);
            rc = status == 400 ? 2 : 1;
            goto out;
        }
    }
    fprintf(stderr, "wh_statectl: version conflicts, giving up\n");
out:
    wh_client_close(c);
    return rc;
}
