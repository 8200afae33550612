/* st_crc32c: RocksDB's CRC32C (rocksdb::crc32c) with the SSE4.2 crc32
 * instruction, linked into walhook-store in place of the library's.
 *
 * Debian's librocksdb is built portable without SSE4.2, so its crc32c.o
 * has only the table-driven Slow_CRC32: every WAL record's checksum (every
 * event byte the store appends) ran at about 1 byte per cycle, a tenth of
 * the store's CPU on a backlog of wide rows. This file defines the three
 * functions of that archive member (Extend, Crc32cCombine,
 * IsFastCrc32Supported); the store links librocksdb.a statically, and a
 * symbol already defined is not looked up in an archive, so the library's
 * member is not linked at all. The values are the same CRC32C (Castagnoli,
 * reflected 0x82F63B78, pre- and post-inverted) as RocksDB's, so WAL and
 * MANIFEST files written by either version read with the other. A CPU
 * without SSE4.2 takes the table-driven path here too (checked once).
 * Unit tests link the shared librocksdb: this definition in the executable
 * then takes precedence where the library calls through its PLT, and the
 * CRCs are equal either way. C++ only for the names and std::string of
 * RocksDB's declarations; st_crc32c_extend is the C entry (st_crc32c.h). */
#include "st_crc32c.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace
{

const uint32_t kPoly = 0x82F63B78u; /* CRC32C, reflected */

struct Table {
    uint32_t t[8][256];
    Table()
    {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = (c >> 1) ^ (kPoly & (0u - (c & 1u)));
            t[0][i] = c;
        }
        for (uint32_t i = 0; i < 256; i++)
            for (int s = 1; s < 8; s++)
                t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
    }
};

const Table &table()
{
    static const Table tb;
    return tb;
}

/* slicing-by-8 on the inverted state */
uint32_t extend_table(uint32_t l, const unsigned char *p, size_t n)
{
    const Table &tb = table();
    while (n >= 8) {
        uint64_t v;
        std::memcpy(&v, p, 8);
        uint32_t lo = (uint32_t)v ^ l, hi = (uint32_t)(v >> 32);
        l = tb.t[7][lo & 0xff] ^ tb.t[6][(lo >> 8) & 0xff] ^ tb.t[5][(lo >> 16) & 0xff] ^
            tb.t[4][lo >> 24] ^ tb.t[3][hi & 0xff] ^ tb.t[2][(hi >> 8) & 0xff] ^
            tb.t[1][(hi >> 16) & 0xff] ^ tb.t[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n-- > 0)
        l = (l >> 8) ^ tb.t[0][(l ^ *p++) & 0xff];
    return l;
}

uint32_t multmodp(uint32_t a, uint32_t b);
uint32_t x2nmodp(uint64_t n, unsigned k);

#if defined(__x86_64__)
/* Three independent crc32 chains over consecutive blocks of kStride bytes
 * (the instruction has a latency of 3 cycles and a throughput of 1: one
 * chain waits two cycles of three), then joined: raw CRCs are linear, so
 * crc(A B C) = shift(crc(A), 2 kStride) ^ shift(crc(B), kStride) ^
 * crc(C) with crc(B), crc(C) started from 0, where shift(s, n) multiplies
 * s by x^(8n) modulo P: a linear map of s, as four tables of its bytes. */
const size_t kStride = 512;

struct Shift {
    uint32_t t[4][256];
    explicit Shift(uint64_t bytes)
    {
        uint32_t m = x2nmodp(bytes, 3);
        for (int k = 0; k < 4; k++)
            for (uint32_t i = 0; i < 256; i++)
                t[k][i] = multmodp(m, i << (8 * k));
    }
    uint32_t operator()(uint32_t s) const
    {
        return t[0][s & 0xff] ^ t[1][(s >> 8) & 0xff] ^ t[2][(s >> 16) & 0xff] ^ t[3][s >> 24];
    }
};

__attribute__((target("sse4.2"))) uint32_t extend_sse42(uint32_t l, const unsigned char *p,
                                                        size_t n)
{
    uint64_t c = l;
    if (n >= 3 * kStride) {
        static const Shift one(kStride), two(2 * kStride);
        do {
            uint64_t c1 = 0, c2 = 0;
            for (size_t i = 0; i < kStride; i += 8) {
                uint64_t v0, v1, v2;
                std::memcpy(&v0, p + i, 8);
                std::memcpy(&v1, p + kStride + i, 8);
                std::memcpy(&v2, p + 2 * kStride + i, 8);
                c = _mm_crc32_u64(c, v0);
                c1 = _mm_crc32_u64(c1, v1);
                c2 = _mm_crc32_u64(c2, v2);
            }
            c = two((uint32_t)c) ^ one((uint32_t)c1) ^ (uint32_t)c2;
            p += 3 * kStride;
            n -= 3 * kStride;
        } while (n >= 3 * kStride);
    }
    while (n >= 8) {
        uint64_t v;
        std::memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t s = (uint32_t)c;
    while (n-- > 0)
        s = _mm_crc32_u8(s, *p++);
    return s;
}

bool have_sse42()
{
    static const bool yes = __builtin_cpu_supports("sse4.2");
    return yes;
}
#endif

/* zlib's crc32_combine (1.2.12 on), for this polynomial: a * b modulo P
 * (reflected), and x^(n * 2^k) modulo P from the table of x^(2^k) */
uint32_t multmodp(uint32_t a, uint32_t b)
{
    uint32_t m = 1u << 31, p = 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0)
                break;
        }
        m >>= 1;
        b = b & 1 ? (b >> 1) ^ kPoly : b >> 1;
    }
    return p;
}

struct X2n {
    uint32_t t[32];
    X2n()
    {
        uint32_t p = 1u << 30; /* x^1 */
        t[0] = p;
        for (int n = 1; n < 32; n++)
            t[n] = p = multmodp(p, p);
    }
};

uint32_t x2nmodp(uint64_t n, unsigned k)
{
    static const X2n x2n;
    uint32_t p = 1u << 31; /* x^0 */
    while (n) {
        if (n & 1)
            p = multmodp(x2n.t[k & 31], p);
        n >>= 1;
        k++;
    }
    return p;
}

} // namespace

extern "C" uint32_t st_crc32c_extend(uint32_t crc, const void *data, size_t n)
{
    const unsigned char *p = static_cast<const unsigned char *>(data);
    uint32_t l = crc ^ 0xffffffffu;
#if defined(__x86_64__)
    if (have_sse42())
        return extend_sse42(l, p, n) ^ 0xffffffffu;
#endif
    return extend_table(l, p, n) ^ 0xffffffffu;
}

extern "C" uint32_t st_crc32c_extend_portable(uint32_t crc, const void *data, size_t n)
{
    return extend_table(crc ^ 0xffffffffu, static_cast<const unsigned char *>(data), n) ^
           0xffffffffu;
}

extern "C" int st_crc32c_hardware(void)
{
#if defined(__x86_64__)
    return have_sse42() ? 1 : 0;
#else
    return 0;
#endif
}

extern "C" uint32_t st_crc32c_combine(uint32_t crc1, uint32_t crc2, size_t len2)
{
    return multmodp(x2nmodp(len2, 3), crc1) ^ crc2;
}

/* RocksDB's declarations (util/crc32c.h) */
namespace rocksdb
{
namespace crc32c
{

std::string IsFastCrc32Supported()
{
    return st_crc32c_hardware() ? "Supported on x86 (walhook-store: SSE4.2)"
                                : "Not supported on this CPU (walhook-store: table-driven)";
}

uint32_t Extend(uint32_t init_crc, const char *data, size_t n)
{
    return st_crc32c_extend(init_crc, data, n);
}

uint32_t Crc32cCombine(uint32_t crc1, uint32_t crc2, size_t crc2len)
{
    return st_crc32c_combine(crc1, crc2, crc2len);
}

} // namespace crc32c
} // namespace rocksdb
