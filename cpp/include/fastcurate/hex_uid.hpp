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

// A sorted run of (hi, lo) pairs: n pairs at p[2i], p[2i + 1], in (hi, lo) order.
struct PairRun {
    const std::uint64_t* p;
    std::size_t n;
};

// Thrown when a run given to merge_pair_runs is not sorted (maps to FastcurateError in Python).
class UnsortedRunError : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

// Merges the sorted runs into out (room for every pair of every run; it must not overlap them),
// in (hi, lo) order, on `threads` threads (0: all cores), each merging a range of keys cut at
// keys of the longest run. `scratch` has room for as many pairs as out (the pairwise merge tree
// goes back and forth between the two). Throws UnsortedRunError if the result is not sorted,
// which happens only if a run was not. Returns the number of pairs written.
std::size_t merge_pair_runs(const PairRun* runs, std::size_t k, std::uint64_t* out, std::uint64_t* scratch,
                            int threads);

}  // namespace fastcurate
