// Pair mining within groups (MagicLens-style): enumerate the pairs of rows that share a group,
// keep at most `max_pairs_per_group` of them per group, chosen by a priority that is a pure
// function of the two rows' uid hashes and a seed, and score every kept pair from the rows'
// embeddings and labels.
//
// Why a kernel: a pool of a million grouped rows has ~150k groups, most of two or three rows. A
// per-group numpy loop spends its time in per-group overhead (index arrays, a sort, gathers), not
// in arithmetic; here each group costs a few hundred nanoseconds plus its dot products.
//
// Definitions (docs/pairs.md; fastcurate.kernels.pairs.mine_pairs_reference is the plain numpy
// statement of the same thing, and the tests compare the two pair for pair):
// - rows arrive sorted so that each group is contiguous: group g is rows [starts[g], starts[g+1]);
// - the candidate pairs of a group are its unordered pairs {i, j}, i < j (positions in the group);
// - priority(i, j) = pair_priority(uid_hash[i], uid_hash[j], seed), symmetric in i and j;
// - a group keeps its k = min(cap, m(m-1)/2) pairs of lowest (priority, i, j), in that order;
// - direction: lo is the row with the smaller uid hash (the earlier row on a tie); the query is
//   hi when the priority's top bit is set, else lo; the other row is the target;
// - scores: cosines of the L2-normalised rows (image-image, text-text, and with `cross` query
//   image vs target text and query text vs target image); the Jaccard index of the two rows'
//   label-id sets; NaN where a row has no usable vector (zero or non-finite norm) or either row
//   has no labels.
// Output order: by group, then by (priority, i, j); it does not depend on the thread count.
#pragma once

#include <cstdint>
#include <vector>

#include "fastcurate/common.hpp"

namespace fastcurate {

// SplitMix64's finaliser (Steele, Lea, Flood 2014): a bijection of 64-bit words.
inline uint64_t splitmix64(uint64_t x) noexcept {
  uint64_t z = x + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// The priority of the unordered pair of rows with uid hashes a and b: symmetric, a pure function
// of (a, b, seed), so the pairs a group keeps do not depend on shard layout or row order.
inline uint64_t pair_priority(uint64_t a, uint64_t b, uint64_t seed) noexcept {
  const uint64_t lo = a < b ? a : b;
  const uint64_t hi = a < b ? b : a;
  return splitmix64(splitmix64(lo ^ splitmix64(seed)) ^ hi);
}

// Row-major [n, dim] vectors: float32, or IEEE 754 half floats given as their uint16 bits.
struct EmbeddingView {
  const void* data = nullptr;  // null: absent
  int64_t dim = 0;
  bool f16 = false;
};

struct PairInput {
  int64_t n = 0;                          // rows
  const int64_t* group_starts = nullptr;  // n_groups + 1 non-decreasing offsets, 0 .. n
  int64_t n_groups = 0;
  const uint64_t* uid_hash = nullptr;  // per row
  uint64_t seed = 0;
  int64_t max_pairs_per_group = 10;  // <= 0: every pair
  EmbeddingView image;
  EmbeddingView text;
  bool cross = false;                      // image and text share one space (CLIP): score across
  const int64_t* label_offsets = nullptr;  // [n + 1] into labels; null: no labels
  const uint64_t* labels = nullptr;        // label ids, sorted ascending and unique within a row
};

struct PairOutput {
  std::vector<int64_t> query, target;  // row indices
  std::vector<int64_t> group;          // group index
  std::vector<uint64_t> priority;
  std::vector<float> image_sim, text_sim, query_image_target_text, query_text_target_image, label_overlap;
  int64_t possible = 0;  // sum over groups of m(m-1)/2: the pairs before the cap
};

// Validates `in` (InputError naming the problem) and mines the pairs. Threads: 0 = all cores.
PairOutput mine_pairs(const PairInput& in, int threads, const CancelToken* cancel = nullptr);

// IEEE 754 binary16 -> binary32 (exact, subnormals, infinities and NaN included).
float half_to_float(uint16_t h) noexcept;

}  // namespace fastcurate
