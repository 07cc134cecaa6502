// MetaCLIP counting and balanced sampling over a CSR match result.
//
// A match result is CSR: the entry ids of text i are ids[offsets[i] .. offsets[i+1]).
// These kernels hold no state and take no locks; every function is safe to call from many
// threads at once on shared read-only inputs. No Python headers here (see docs/runner.md, "C++ kernels").
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace fastcurate {

// A view over a CSR match result (not owned).
struct CsrView {
    const std::int64_t* offsets = nullptr;  // n_texts + 1 values, non-decreasing, offsets[0] >= 0
    const std::int32_t* ids = nullptr;      // offsets[n_texts] values
    std::size_t n_texts = 0;
};

// Thrown for inputs that violate a documented precondition (maps to InputError in Python).
class BalanceError : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

// Checks offsets (non-decreasing, within ids_len) and ids (0 <= id < n_entries). Throws BalanceError.
void validate_csr(const CsrView& csr, std::size_t ids_len, std::size_t n_entries);

// counts[e] += number of texts whose id list contains e (ids of a text must be sorted and unique). `counts` has n_entries slots and is added
// to (not zeroed), so counts merge across shards. Ids of one text must be unique (the matcher
// guarantees it) for this to count texts rather than occurrences. Throws on an out-of-range id.
// With `keep` (one byte per text), only the texts whose byte is non-zero are counted (the entry
// counts of a curated subset), still checking every text.
void count_entries(const CsrView& csr, std::uint64_t* counts, std::size_t n_entries,
                   const std::uint8_t* keep = nullptr);

// MetaCLIP's t_to_p: sum(c[c < t]) / sum(c). Throws when sum(c) == 0.
double t_to_p(const std::uint64_t* counts, std::size_t n, double t);

// MetaCLIP's p_to_t: sort counts ascending, cumulative share = cumsum / sum, return the count at the
// first index where |share - p| is smallest. Throws when n == 0 or sum(c) == 0.
std::uint64_t p_to_t(const std::uint64_t* counts, std::size_t n, double p);

// p_e = 1 where count < t, else t / count (MetaCLIP's count_to_prob). Requires t > 0.
void entry_probs(const std::uint64_t* counts, std::size_t n, double t, double* out);

// Probability that text i is kept: 1 - prod_{e in ids(i)} (1 - probs[e]); 0 for a text with no ids.
// The product runs over the ids in stored order (sorted), so the value is bit-reproducible.
inline double keep_probability(const CsrView& csr, const double* probs, std::size_t i) {
    const std::int64_t b = csr.offsets[i], e = csr.offsets[i + 1];
    if (b == e) return 0.0;
    double q = 1.0;
    for (std::int64_t k = b; k < e; ++k) q *= 1.0 - probs[csr.ids[k]];
    return 1.0 - q;
}

// 64-bit keys of samples. Strings hash their UTF-8 bytes; integers hash their value. Both are
// fixed, platform-independent functions (little-endian reads, no seeds from the process), so a
// key gives the same draw on every machine and in every run.
std::uint64_t hash_bytes(const std::uint8_t* data, std::size_t len);
std::uint64_t hash_int64(std::int64_t v);

// Hash n Arrow-layout strings (offsets of width O = int32 or int64, relative to data).
template <typename O>
void hash_strings(const O* offsets, const std::uint8_t* data, std::size_t n, std::uint64_t* out);

// The uniform draw in [0, 1) of a sample: a pure function of (seed, key hash), 53 random bits.
double uniform_draw(std::uint64_t seed, std::uint64_t key_hash);

// keep[i] = uniform_draw(seed, key_hashes[i]) < keep_probability(i); texts with no ids are never
// kept. Runs on `threads` threads (0 = hardware concurrency); the result does not depend on it.
// Worker exceptions are rethrown in the caller. Returns the number of texts kept.
std::size_t balance(const CsrView& csr, const double* probs, std::size_t n_entries,
                    const std::uint64_t* key_hashes, std::uint64_t seed, std::uint8_t* keep,
                    unsigned threads);

// Sum over texts of keep_probability (the expected kept count), on `threads` threads. The sum is
// taken per fixed-size block and blocks are added in order, so it does not depend on `threads`.
double expected_size(const CsrView& csr, const double* probs, std::size_t n_entries, unsigned threads);

// Same as expected_size with probs = entry_probs(counts, t) (a table of n_entries doubles built per
// call): used by the reduce and by the search for "t for a target size".
double expected_size_for_t(const CsrView& csr, const std::uint64_t* counts, std::size_t n_entries,
                           double t, unsigned threads);

}  // namespace fastcurate
