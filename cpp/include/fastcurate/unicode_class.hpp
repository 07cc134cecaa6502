// Code-point classes that match Python's str predicates, and a strict UTF-8 decoder.
//
// DataComp's caption filter is Python (`len(text.split())`, `len(text)`), so the kernels must see
// exactly the code points Python sees: the table is generated from Python's unicodedata by
// scripts/gen_unicode_class.py (cpp/src/unicode_class.cpp records the Unicode version).
#pragma once

#include <cstdint>

namespace fastcurate {
namespace unicode {

enum : uint8_t {
  kSpace = 1,    // str.isspace(): what str.split() splits on
  kAlpha = 2,    // str.isalpha(): general categories L*
  kNumeric = 4,  // str.isalnum() and not str.isalpha()
  kMark = 8,     // general category M* (combining marks)
};

extern const char kUnicodeVersion[];
extern const uint16_t kStage1[0x110000 >> 8];
extern const uint8_t kStage2[];

// The class bits of a code point (0 for anything above U+10FFFF).
inline uint8_t cp_class(uint32_t cp) {
  if (cp >= 0x110000) return 0;
  return kStage2[static_cast<uint32_t>(kStage1[cp >> 8]) * 256u + (cp & 0xFFu)];
}

// Decodes one code point from [p, end) where *p >= 0x80, following Python's strict UTF-8 decoder:
// no overlong forms, no surrogates, nothing above U+10FFFF. Returns the number of bytes consumed
// (1..4) and the code point; on an invalid sequence returns 0 (the caller treats the byte as an
// invalid one and moves on by one byte).
inline int decode_utf8(const uint8_t* p, const uint8_t* end, uint32_t& cp) {
  const uint8_t b0 = p[0];
  const auto cont = [](uint8_t b) { return (b & 0xC0u) == 0x80u; };
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (end - p < 2 || !cont(p[1])) return 0;
    cp = (static_cast<uint32_t>(b0 & 0x1Fu) << 6) | (p[1] & 0x3Fu);
    return 2;
  }
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (end - p < 3 || !cont(p[1]) || !cont(p[2])) return 0;
    if (b0 == 0xE0 && p[1] < 0xA0) return 0;  // overlong
    if (b0 == 0xED && p[1] >= 0xA0) return 0;  // surrogate
    cp = (static_cast<uint32_t>(b0 & 0x0Fu) << 12) | (static_cast<uint32_t>(p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
    return 3;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (end - p < 4 || !cont(p[1]) || !cont(p[2]) || !cont(p[3])) return 0;
    if (b0 == 0xF0 && p[1] < 0x90) return 0;  // overlong
    if (b0 == 0xF4 && p[1] >= 0x90) return 0;  // above U+10FFFF
    cp = (static_cast<uint32_t>(b0 & 0x07u) << 18) | (static_cast<uint32_t>(p[1] & 0x3Fu) << 12) |
         (static_cast<uint32_t>(p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
    return 4;
  }
  return 0;
}

}  // namespace unicode
}  // namespace fastcurate
