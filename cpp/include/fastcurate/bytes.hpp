// Byte-level helpers: unaligned loads, ASCII case folding (scalar and SWAR), mixing hashes and a
// fast checksum for the serialized files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#if (defined(__GNUC__) || defined(__clang__)) && !defined(FASTCURATE_NO_PREFETCH)
#define FC_PREFETCH(addr) __builtin_prefetch(addr)
#else
#define FC_PREFETCH(addr) ((void)(addr))
#endif

namespace fastcurate {
namespace bytes {

inline uint64_t load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// Loads n <= 8 bytes into the low bytes of a little-endian word, zero-padding the rest. When 8
// bytes are readable from p (`end` bounds the buffer) one unaligned load and a mask do it.
inline uint64_t load_upto8(const uint8_t* p, size_t n, const uint8_t* end) {
  if (n == 0) return 0;
  if (end - p >= 8) {
    uint64_t v = load64(p);
    return n >= 8 ? v : (v & ((uint64_t{1} << (8 * n)) - 1));
  }
  uint64_t v = 0;
  std::memcpy(&v, p, n);
  return v;
}

inline uint8_t fold_ascii(uint8_t c) { return (c >= 'A' && c <= 'Z') ? static_cast<uint8_t>(c + 32) : c; }

// Lower-cases the ASCII letters of 8 packed bytes at once; bytes >= 0x80 are left alone, so UTF-8
// sequences are never changed.
inline uint64_t fold_ascii8(uint64_t x) {
  const uint64_t ones = 0x0101010101010101ULL;
  const uint64_t high = 0x8080808080808080ULL;
  const uint64_t low7 = x & ~high;
  const uint64_t ge_A = low7 + (0x80 - 'A') * ones;      // high bit set where byte >= 'A'
  const uint64_t gt_Z = low7 + (0x80 - 'Z' - 1) * ones;  // high bit set where byte > 'Z'
  const uint64_t upper = ge_A & ~gt_Z & ~x & high;       // ASCII and in ['A', 'Z']
  return x | (upper >> 2);                               // 0x80 >> 2 == 0x20
}

// The splitmix64 finalizer: a bijective avalanche mix of 64 bits. The balancing draw is defined
// with it (fastcurate's subsets depend on it), so it must never change.
inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  x ^= x >> 31;
  return x;
}

// A 64-bit checksum over a buffer: 8 bytes per step, so that verifying a file of hundreds of MB on
// load costs milliseconds rather than seconds.
inline uint64_t checksum64(const uint8_t* p, size_t n, uint64_t seed = 0x6a09e667f3bcc909ULL) {
  uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ULL);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    h ^= load64(p + i) * 0x9e3779b97f4a7c15ULL;
    h = (h << 31) | (h >> 33);
    h *= 0xbf58476d1ce4e5b9ULL;
  }
  uint64_t tail = 0;
  if (i < n) std::memcpy(&tail, p + i, n - i);
  h ^= tail;
  return mix64(h);
}

}  // namespace bytes
}  // namespace fastcurate
