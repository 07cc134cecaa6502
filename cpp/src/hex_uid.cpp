// 32 hex digits -> two uint64, for DataComp's subset file. A table maps each byte to its nibble
// (0xFF when not a hex digit); 16 nibbles fold into a word, and one OR over all of them tells
// whether any byte was not a digit, so the loop has no data-dependent branch per character.
#include "fastcurate/hex_uid.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "fastcurate/parallel.hpp"

namespace fastcurate {
namespace {

constexpr std::array<std::uint8_t, 256> make_nibbles() {
    std::array<std::uint8_t, 256> t{};
    for (int c = 0; c < 256; ++c) {
        t[static_cast<std::size_t>(c)] = 0xFF;
        if (c >= '0' && c <= '9') t[static_cast<std::size_t>(c)] = static_cast<std::uint8_t>(c - '0');
        if (c >= 'a' && c <= 'f') t[static_cast<std::size_t>(c)] = static_cast<std::uint8_t>(c - 'a' + 10);
        if (c >= 'A' && c <= 'F') t[static_cast<std::size_t>(c)] = static_cast<std::uint8_t>(c - 'A' + 10);
    }
    return t;
}
constexpr std::array<std::uint8_t, 256> kNibble = make_nibbles();

// 16 hex digits at p, most significant first; `bad` collects the high bits of non-digits.
inline std::uint64_t parse16(const std::uint8_t* p, std::uint8_t& bad) {
    std::uint64_t v = 0;
    for (int i = 0; i < 16; ++i) {
        const std::uint8_t d = kNibble[p[i]];
        bad |= d;
        v = (v << 4) | (d & 0x0F);
    }
    return v;
}

}  // namespace

template <typename O>
std::size_t hex128_pairs(const O* offsets, const std::uint8_t* data, std::size_t n, const std::uint8_t* keep,
                         std::uint64_t* out) {
    std::size_t j = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const O b = offsets[i], e = offsets[i + 1];
        // every row, kept or not: with the ends in the buffer, this keeps every read inside it
        if (e < b) throw HexUidError("string offsets must be non-decreasing; they decrease at row " + std::to_string(i));
        if (keep != nullptr && keep[i] == 0) continue;
        if (e - b != 32) {
            throw HexUidError("uid at row " + std::to_string(i) + " is " + std::to_string(static_cast<long long>(e - b)) +
                              " bytes long, not 32 hex digits");
        }
        std::uint8_t bad = 0;
        const std::uint64_t hi = parse16(data + b, bad);
        const std::uint64_t lo = parse16(data + b + 16, bad);
        if (bad & 0xF0) throw HexUidError("uid at row " + std::to_string(i) + " holds a character that is not a hex digit");
        out[2 * j] = hi;
        out[2 * j + 1] = lo;
        ++j;
    }
    return j;
}

namespace {

inline bool pair_less(const std::uint64_t* a, const std::uint64_t* b) {
    return (a[0] < b[0]) | ((a[0] == b[0]) & (a[1] < b[1]));
}

// The first pair of run r that is not less than key (binary search).
std::size_t lower_bound_pair(const PairRun& r, const std::uint64_t* key) {
    std::size_t lo = 0, hi = r.n;
    while (lo < hi) {
        const std::size_t mid = lo + (hi - lo) / 2;
        if (pair_less(r.p + 2 * mid, key)) lo = mid + 1; else hi = mid;
    }
    return lo;
}

// Two sorted runs into out. The choice of the next pair is data that no branch predictor can
// guess, so it selects with masks (the loop's only branch is its end).
void merge2(const std::uint64_t* a, std::size_t na, const std::uint64_t* b, std::size_t nb, std::uint64_t* out) {
    std::size_t i = 0, j = 0;
    while (i < na && j < nb) {
        const std::uint64_t* x = a + 2 * i;
        const std::uint64_t* y = b + 2 * j;
        const std::uint64_t take_b = pair_less(y, x);
        const std::uint64_t m = 0 - take_b;
        out[0] = (y[0] & m) | (x[0] & ~m);
        out[1] = (y[1] & m) | (x[1] & ~m);
        out += 2;
        j += take_b;
        i += 1 - take_b;
    }
    std::memcpy(out, a + 2 * i, (na - i) * 2 * sizeof(std::uint64_t));
    out += 2 * (na - i);
    std::memcpy(out, b + 2 * j, (nb - j) * 2 * sizeof(std::uint64_t));
}

// The runs into out by a tree of pairwise merges (log2(k) passes over the pairs, each a
// predictable loop), between out and scratch, started so that the last pass writes out.
void merge_tree(std::vector<PairRun> runs, std::uint64_t* out, std::uint64_t* scratch) {
    std::size_t total = 0;
    for (const PairRun& r : runs) total += r.n;
    if (total == 0) return;
    if (runs.size() == 1) {
        std::memcpy(out, runs[0].p, total * 2 * sizeof(std::uint64_t));
        return;
    }
    int passes = 0;
    for (std::size_t k = runs.size(); k > 1; k = (k + 1) / 2) ++passes;
    std::uint64_t* dst = passes % 2 == 1 ? out : scratch;
    std::uint64_t* other = dst == out ? scratch : out;
    while (runs.size() > 1) {
        std::vector<PairRun> next;
        std::uint64_t* w = dst;
        for (std::size_t i = 0; i < runs.size(); i += 2) {
            if (i + 1 < runs.size()) {
                merge2(runs[i].p, runs[i].n, runs[i + 1].p, runs[i + 1].n, w);
                next.push_back({w, runs[i].n + runs[i + 1].n});
            } else {
                std::memcpy(w, runs[i].p, runs[i].n * 2 * sizeof(std::uint64_t));
                next.push_back({w, runs[i].n});
            }
            w += 2 * next.back().n;
        }
        runs.swap(next);
        std::swap(dst, other);
    }
}

}  // namespace

std::size_t merge_pair_runs(const PairRun* runs, std::size_t k, std::uint64_t* out, std::uint64_t* scratch,
                            int threads) {
    std::size_t total = 0, longest = 0;
    for (std::size_t r = 0; r < k; ++r) {
        total += runs[r].n;
        if (runs[r].n > runs[longest].n) longest = r;
    }
    if (total == 0) return 0;
    // Key ranges: cut at evenly spaced pairs of the longest run (for runs of random uids this
    // splits every run evenly); each range of every run goes to one part, in order. cut[c][r] is
    // where part c starts in run r, so part c starts at the sum of cut[c] in the output.
    const std::size_t parts = std::min<std::size_t>(static_cast<std::size_t>(resolve_threads(threads)),
                                                    std::max<std::size_t>(1, total / 65536));
    std::vector<std::vector<std::size_t>> cut(parts + 1, std::vector<std::size_t>(k, 0));
    std::vector<std::size_t> start(parts + 1, 0);
    for (std::size_t c = 1; c <= parts; ++c) {
        const std::uint64_t* key = c < parts ? runs[longest].p + 2 * (runs[longest].n * c / parts) : nullptr;
        for (std::size_t r = 0; r < k; ++r) {
            cut[c][r] = c == parts ? runs[r].n : std::max(cut[c - 1][r], lower_bound_pair(runs[r], key));
            start[c] += cut[c][r];
        }
    }
    parallel_for_blocks_indexed(static_cast<int64_t>(parts), static_cast<int>(parts), nullptr, [&](int64_t ci, int) {
        const std::size_t c = static_cast<std::size_t>(ci);
        std::vector<PairRun> sub;
        for (std::size_t r = 0; r < k; ++r) {
            if (cut[c + 1][r] > cut[c][r]) sub.push_back({runs[r].p + 2 * cut[c][r], cut[c + 1][r] - cut[c][r]});
        }
        merge_tree(std::move(sub), out + 2 * start[c], scratch + 2 * start[c]);
    });
    // A merge keeps each run's own order, so a run out of order leaves a decrease in the output.
    for (std::size_t i = 1; i < total; ++i) {
        if (pair_less(out + 2 * i, out + 2 * (i - 1))) {
            throw UnsortedRunError("merge_pair_runs: a run is not sorted by (hi, lo) (pair " + std::to_string(i) +
                                   " of the merge is smaller than the one before it)");
        }
    }
    return total;
}

template std::size_t hex128_pairs<std::int32_t>(const std::int32_t*, const std::uint8_t*, std::size_t,
                                                const std::uint8_t*, std::uint64_t*);
template std::size_t hex128_pairs<std::int64_t>(const std::int64_t*, const std::uint8_t*, std::size_t,
                                                const std::uint8_t*, std::uint64_t*);

}  // namespace fastcurate
