/* dsp_lane: the lane of an event for ordering = by_key (issue 8): a hash of
 * the bytes of the event's top-level "key" member, so every change of one
 * row lands in the same lane and keeps its order. O(bytes), no allocation.
 *
 * The ingestor renders "key" before "before"/"after" (docs/INTERNALS.md), so
 * the first `,"key":` outside a string is the top-level one; an unescaped
 * quote cannot occur inside a JSON string. Events without a key (null:
 * truncate, message) go to lane 0. */
#ifndef DSP_LANE_H
#define DSP_LANE_H

#include <stddef.h>
#include <stdint.h>

/* FNV-1a 64 of the key's bytes; 0 when there is none. *found tells which. */
uint64_t dsp_key_hash(const void *json, size_t len, int *found);
/* dsp_key_hash modulo nlanes (nlanes <= 1: 0). */
unsigned dsp_lane_of(const void *json, size_t len, unsigned nlanes);

#endif
