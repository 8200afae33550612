/* dsp_zone: per-tenant backpressure zone. See dsp_zone.h. */
#include "dsp_zone.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "wh_config.h"
#include "wh_util.h"

#define DSP_ZONE_TENANTS 256

static const char *const zone_names[] = {"green", "yellow", "red"};

static struct {
    pthread_mutex_t mu;
    struct {
        char tenant[WH_NAME_MAX];
        uint32_t zone;
    } v[DSP_ZONE_TENANTS];
    int n;
} zones = {.mu = PTHREAD_MUTEX_INITIALIZER};
/* tenants noted non-green: while 0, green costs a Read no lock */
static _Atomic int nongreen;
/* zone notes received (under zones.mu; read without it for marks) */
static _Atomic uint64_t notes;

uint64_t dsp_zone_mark(void)
{
    return atomic_load(&notes);
}

uint64_t dsp_zone_notes(void)
{
    return atomic_load(&notes);
}

/* note: from a zone note; else from a reply to a request sent at mark */
static int zone_apply(const char *tenant, uint32_t zone, int note, uint64_t mark)
{
    if (tenant == NULL)
        return 0;
    if (zone > DSP_ZONE_RED)
        zone = DSP_ZONE_RED;
    if (note)
        atomic_fetch_add(&notes, 1);
    else if (zone == DSP_ZONE_GREEN && atomic_load_explicit(&nongreen, memory_order_relaxed) == 0)
        return 0;
    uint32_t old = DSP_ZONE_GREEN;
    int changed = 0;
    pthread_mutex_lock(&zones.mu);
    if (!note && atomic_load(&notes) != mark) {
        /* a zone note came while the request was out: its answer may be
         * older than the note */
        pthread_mutex_unlock(&zones.mu);
        return 0;
    }
    int i;
    for (i = 0; i < zones.n; i++)
        if (strcmp(zones.v[i].tenant, tenant) == 0)
            break;
    if (i == zones.n && zones.n < DSP_ZONE_TENANTS) {
        wh_strlcpy(zones.v[i].tenant, tenant, sizeof(zones.v[i].tenant));
        zones.v[i].zone = DSP_ZONE_GREEN;
        zones.n++;
    }
    if (i < zones.n) {
        old = zones.v[i].zone;
        changed = old != zone;
        if ((old != DSP_ZONE_GREEN) != (zone != DSP_ZONE_GREEN))
            atomic_fetch_add(&nongreen, zone != DSP_ZONE_GREEN ? 1 : -1);
        zones.v[i].zone = zone;
    }
    pthread_mutex_unlock(&zones.mu);
    if (!changed)
        return 0;
    const char *via = note ? " (store notification)" : "";
    if (zone == DSP_ZONE_RED)
        wh_warn("tenant %s: backpressure zone %s -> red%s: failing targets in mode fast shed to "
                "their DLQ; reliable targets keep their order",
                tenant, zone_names[old], via);
    else
        wh_info("tenant %s: backpressure zone %s -> %s%s", tenant, zone_names[old],
                zone_names[zone], via);
    return 1;
}

void dsp_zone_set(const char *tenant, uint32_t zone, uint64_t mark)
{
    (void)zone_apply(tenant, zone, 0, mark);
}

int dsp_zone_note(const char *tenant, uint32_t zone)
{
    return zone_apply(tenant, zone, 1, 0);
}

uint32_t dsp_zone_get(const char *tenant)
{
    uint32_t z = DSP_ZONE_GREEN;
    if (atomic_load_explicit(&nongreen, memory_order_relaxed) == 0)
        return z;
    pthread_mutex_lock(&zones.mu);
    for (int i = 0; i < zones.n; i++)
        if (strcmp(zones.v[i].tenant, tenant) == 0) {
            z = zones.v[i].zone;
            break;
        }
    pthread_mutex_unlock(&zones.mu);
    return z;
}
