/* dsp_zone: the backpressure zone of each tenant as the store last gave it
 * (ReadReply.zone, BacklogReply.zone; the tenant's ingestor measures it,
 * docs/SLOTS.md). In red, targets in mode fast that are failing shed their
 * head batch to the DLQ at once (dsp_target's should_shed) instead of
 * after backlog_max_ms; reliable targets keep their order. */
#ifndef DSP_ZONE_H
#define DSP_ZONE_H

#include <stdint.h>

enum { DSP_ZONE_GREEN = 0, DSP_ZONE_YELLOW = 1, DSP_ZONE_RED = 2 };

/* Notes the zone of tenant (logs a change). Any thread. */
void dsp_zone_set(const char *tenant, uint32_t zone);
/* The tenant's last zone (green when never heard). Any thread. */
uint32_t dsp_zone_get(const char *tenant);

#endif
