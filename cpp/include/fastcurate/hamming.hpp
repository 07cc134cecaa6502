// All pairs of 64-bit hashes within a Hamming radius, without comparing every pair, and the
// union-find grouping that turns pairs into duplicate groups.
//
// Search: multi-index hashing with the generalised pigeonhole principle. The 64 bits are cut into
// m contiguous blocks with per-block radii s_k, sum(s_k) = r - m + 1. If popcount(a ^ b) <= r then
// some block k has popcount((a ^ b) restricted to k) <= s_k (otherwise the total would be at least
// sum(s_k + 1) = r + 1). So for every block, rows are bucketed by their block value and every
// pair of buckets whose values differ in at most s_k bits is compared in full. A pair is reported
// only by the first block in which it qualifies, so each pair appears exactly once; the result is
// exactly the set a brute-force popcount over all pairs gives (tested on 200k hashes, fuzzed).
// m and the block widths come from a cost model (plan_search); the classic MIH split (m = r + 1,
// exact block matches) is one of its choices.
//
// Work is split over masks (then over distinct block values), runs on a thread pool and never
// depends on the thread count: output pairs are sorted by (i, j).
#pragma once

#include <cstdint>
#include <vector>

#include "fastcurate/common.hpp"

namespace fastcurate {

struct HammingPairs {
  std::vector<int64_t> i, j;   // i < j, sorted by (i, j)
  std::vector<uint8_t> dist;   // popcount(h[i] ^ h[j])
  std::vector<uint8_t> dist2;  // popcount(h2[i] ^ h2[j]) when a second hash is given, else empty
};

struct HammingQuery {
  const uint64_t* hashes = nullptr;
  int64_t n = 0;
  int radius = 10;
  // Optional second hash per row (e.g. dHash): a pair is kept only if it is also within radius2.
  const uint64_t* second = nullptr;
  int radius2 = 64;
  // Refuse (InputError) to return more pairs than this: a degenerate input (thousands of
  // identical hashes) would otherwise exhaust memory. Callers that only need groups should
  // collapse identical hashes first.
  int64_t max_pairs = int64_t{1} << 31;
  // Number of blocks m in [1, radius + 1], or 0 to let plan_search choose. Any feasible m gives
  // the same pairs (tests check every one); only the speed differs.
  int blocks = 0;
};

struct SearchPlan {
  int blocks = 0;
  int bits[64] = {};
  int shift[64] = {};
  int radius[64] = {};
  double est_candidates = 0;  // expected pair comparisons for uniformly random hashes
  double est_probes = 0;      // expected bucket look-ups
};

// The block split the search will use for n hashes at radius r: the feasible m with the lowest
// modelled cost, or the split into exactly `blocks` blocks (InputError if that is infeasible).
SearchPlan plan_search(int64_t n, int radius, int blocks = 0);

// All pairs within the radius (multi-index hashing). Threads: 0 = all cores.
HammingPairs hamming_pairs(const HammingQuery& q, int threads, const CancelToken* cancel = nullptr);

// The same result by comparing every pair (the reference for tests and benchmarks).
HammingPairs hamming_pairs_brute(const HammingQuery& q, int threads, const CancelToken* cancel = nullptr);

// Connected components of the graph with n vertices and edges (a[k], b[k]): label[v] is the
// smallest vertex of v's component. Union-find with path halving.
std::vector<int64_t> connected_components(int64_t n, const int64_t* a, const int64_t* b, int64_t m);

// For rows labelled by group (labels in [0, n)), the row each one keeps: the row of its group with
// the smallest rank (ties: the smaller row index). twin[i] == i for kept rows.
std::vector<int64_t> best_of_groups(int64_t n, const int64_t* labels, const int64_t* rank);

}  // namespace fastcurate
