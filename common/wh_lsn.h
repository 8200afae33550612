/* wh_lsn: PostgreSQL LSNs ("16/B374D848") and event positions. */
#ifndef WH_LSN_H
#define WH_LSN_H

#include <stddef.h>
#include <stdint.h>

#define WH_LSN_STRLEN 32 /* enough for "FFFFFFFF/FFFFFFFF" + NUL */

/* Parses "X/X" (hex, 1-8 digits each side). Returns WH_OK or WH_ERR. */
int wh_lsn_parse(const char *s, uint64_t *out);
/* Formats as "%X/%X"; returns the length written. */
int wh_lsn_format(uint64_t lsn, char *buf, size_t len);

/* Event id "<tenant>:<lsn X/X>:<seq>"; returns length or -1 if too small. */
int wh_event_id(const char *tenant, uint64_t lsn, uint32_t seq, char *buf, size_t len);

/* Big-endian helpers so RocksDB's byte order is commit order. */
void wh_put_be64(uint8_t *p, uint64_t v);
void wh_put_be32(uint8_t *p, uint32_t v);
uint64_t wh_get_be64(const uint8_t *p);
uint32_t wh_get_be32(const uint8_t *p);
uint16_t wh_get_be16(const uint8_t *p);

/* Compare positions: <0, 0, >0. */
int wh_pos_cmp(uint64_t lsn_a, uint32_t seq_a, uint64_t lsn_b, uint32_t seq_b);

#endif
