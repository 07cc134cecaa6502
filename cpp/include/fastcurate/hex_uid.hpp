// DataComp's subset file from 128-bit hex uids (docs/curate.md, "--output index").
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>

namespace fastcurate {

// Thrown when a uid is not 32 hexadecimal digits (maps to InputError in Python).
class HexUidError : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

// For each of the n Arrow-layout strings (offsets of width O, relative to data) whose keep byte is
// non-zero (every string when keep is null), in order: its 32 hex digits (either case) as two
// uint64, DataComp's (int(uid[:16], 16), int(uid[16:], 16)), written to out[2j], out[2j + 1].
// Returns the number of pairs written; out must have room for 2 * (kept strings). Throws
// HexUidError naming the first kept string that is not 32 hex digits, or the first row whose
// offsets decrease (the caller checks that offsets[0] and offsets[n] lie in the data).
template <typename O>
std::size_t hex128_pairs(const O* offsets, const std::uint8_t* data, std::size_t n, const std::uint8_t* keep,
                         std::uint64_t* out);

}  // namespace fastcurate
