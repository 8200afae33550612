/* st_crc32c: CRC32C for RocksDB's checksums (see st_crc32c.cc: it replaces
 * the table-driven crc32c of Debian's portable librocksdb in walhook-store
 * with the SSE4.2 instruction). The C entries are for tests and callers of
 * the store: the same function RocksDB's WAL uses. */
#ifndef ST_CRC32C_H
#define ST_CRC32C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* CRC32C of data[0..n) continued from crc (0 to start): rocksdb::crc32c::Extend */
uint32_t st_crc32c_extend(uint32_t crc, const void *data, size_t n);
/* the same, always table-driven (the reference in tests) */
uint32_t st_crc32c_extend_portable(uint32_t crc, const void *data, size_t n);
/* 1 when the SSE4.2 instruction is used */
int st_crc32c_hardware(void);
/* CRC32C of A then B from crc(A), crc(B) and B's length: Crc32cCombine */
uint32_t st_crc32c_combine(uint32_t crc1, uint32_t crc2, size_t len2);

#ifdef __cplusplus
}
#endif
#endif
