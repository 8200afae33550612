/* dsp_zone: the backpressure zone of each tenant as the store last gave it
 * (the tenant's ingestor measures it, docs/SLOTS.md): at once from a zone
 * note (the store publishes one when the zone changes, wh_notify.h), and
 * from every ReadReply.zone / BacklogReply.zone (the fallback while the
 * notifications are down; an answer to a request sent before a zone note
 * came is ignored, as it may be older than the note). In red, targets in mode fast that are failing
 * shed their head batch to the DLQ at once (dsp_target's should_shed) instead of after
 * backlog_max_ms; reliable targets keep their order. */
#ifndef DSP_ZONE_H
#define DSP_ZONE_H

#include <stdint.h>

enum { DSP_ZONE_GREEN = 0, DSP_ZONE_YELLOW = 1, DSP_ZONE_RED = 2 };

/* Taken before a Read or Backlog request; passed to dsp_zone_set with its
 * answer's zone. */
uint64_t dsp_zone_mark(void);
/* Notes the zone of tenant from an answer to a request sent at mark (logs
 * a change). Any thread. */
void dsp_zone_set(const char *tenant, uint32_t zone, uint64_t mark);
/* Notes the zone of tenant from a zone note; 1 when it changed (the caller
 * wakes the delivery loop, so a failing fast target sheds now). */
int dsp_zone_note(const char *tenant, uint32_t zone);
/* Zone notes received since start. */
uint64_t dsp_zone_notes(void);
/* The tenant's last zone (green when never heard). Any thread. */
uint32_t dsp_zone_get(const char *tenant);

#endif
