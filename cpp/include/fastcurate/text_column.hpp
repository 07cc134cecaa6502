// A zero-copy, read-only view of a column of strings.
//
// Two layouts are accepted, so that neither Arrow arrays nor Python lists need a copy of their
// bytes: an Arrow string / large_string array (validity bitmap + 32- or 64-bit offsets + data,
// with the array's own slice offset), or an array of string views pointing at bytes that the
// caller keeps alive (the bindings point them at the UTF-8 buffers of Python str objects).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "fastcurate/common.hpp"

namespace fastcurate {

struct TextColumn {
  // Arrow layout.
  const uint8_t* data = nullptr;
  int64_t data_size = 0;
  const int32_t* offsets32 = nullptr;
  const int64_t* offsets64 = nullptr;
  const uint8_t* validity = nullptr;  // LSB-first bitmap; nullptr means every row is valid
  int64_t offset = 0;                 // the Arrow array's slice offset, applied to offsets and validity

  // View layout (used when views != nullptr).
  const std::string_view* views = nullptr;
  const uint8_t* view_valid = nullptr;  // one byte per row, 0 = null; nullptr means all valid

  int64_t length = 0;

  // Fetches row i. Returns false for a null row. Throws InputError (naming the row) when the
  // offsets are corrupt, so that a bad buffer never turns into an out-of-bounds read.
  bool get(int64_t i, const uint8_t*& ptr, int64_t& len) const {
    if (views != nullptr) {
      if (view_valid != nullptr && view_valid[i] == 0) return false;
      ptr = reinterpret_cast<const uint8_t*>(views[i].data());
      len = static_cast<int64_t>(views[i].size());
      return true;
    }
    const int64_t j = offset + i;
    if (validity != nullptr && ((validity[j >> 3] >> (j & 7)) & 1) == 0) return false;
    int64_t b, e;
    if (offsets64 != nullptr) {
      b = offsets64[j];
      e = offsets64[j + 1];
    } else {
      b = offsets32[j];
      e = offsets32[j + 1];
    }
    if (b < 0 || e < b || e > data_size) bad_offsets(i, b, e);
    ptr = data + b;
    len = e - b;
    return true;
  }

  // Kept out of line so that get() stays small enough to inline into the kernels' loops.
#if defined(__GNUC__) || defined(__clang__)
  __attribute__((noinline, cold))
#endif
  [[noreturn]] void bad_offsets(int64_t i, int64_t b, int64_t e) const {
    throw InputError("corrupt string offsets at row " + std::to_string(i) + ": [" + std::to_string(b) + ", " +
                     std::to_string(e) + ") with a data buffer of " + std::to_string(data_size) +
                     " bytes; the Arrow array is malformed (call .validate(full=True) on it)");
  }

  // End of the readable memory that holds row i's bytes: lets kernels use 8-byte loads that run
  // past the end of a short string but stay inside the buffer.
  const uint8_t* readable_end(const uint8_t* ptr, int64_t len) const {
    return views != nullptr ? ptr + len : data + data_size;
  }
};

}  // namespace fastcurate
