// SemDeDup (Abbas et al. 2023) inside k-means clusters, exactly.
//
// Input: the rows of some clusters, each cluster contiguous and already in *keep order* (the
// paper's default "hard": decreasing cosine distance to the centroid, so the row furthest from
// the centroid comes first and is always kept). For row i of a cluster and an earlier row j:
//
//   cos(i, j) = min(1, dot(x_i, x_j) / sqrt(|x_i|^2 * |x_j|^2))
//
// where dot and |x|^2 are the exact sums of the (exact) double products, each rounded once to
// double, and the other operations are IEEE double. The value does not depend on the order of
// summation, SIMD path or thread count, so a naive numpy implementation gives the same bits
// (for fp16 rows of norm <= 1 a float64 matmul is already exact).
//
//  * compare_to = All (the paper's reference loop, facebookresearch/SemDeDup semdedup.py: the
//    maximum of the upper-triangular similarity matrix per column): row i is a duplicate when
//    max_{j < i} cos(i, j) > threshold, whether or not j itself is kept.
//  * compare_to = Kept (greedy): row i is a duplicate when max over the KEPT rows j < i exceeds
//    the threshold; the twin is then always a kept row.
//
// threshold = 1 - eps. For each duplicate the result holds the twin (the earlier row with the
// largest cosine; ties go to the earliest row, as torch.max) and that cosine.
//
// How: rows are normalised and rounded to float, tiles of cosines are computed with the float
// micro-kernel, and only pairs whose float cosine is within a rigorous error bound of the
// threshold (or of a row's running maximum) are recomputed exactly. With centroids, a tile is
// skipped when the angles of its rows to the centroid differ by more than arccos(threshold): on
// the sphere angle(x, y) >= |angle(x, c) - angle(y, c)|, so no pair in it can be a duplicate.
//
// Thread safety: stateless; safe to call from many threads on shared read-only inputs.
#pragma once

#include <cstdint>
#include <vector>

#include "fastcurate/common.hpp"
#include "fastcurate/embeddings.hpp"

namespace fastcurate {

enum class CompareTo { All, Kept };

struct SemDedupOptions {
  double threshold = 0.99;  // a pair is a duplicate when its cosine is > threshold (1 - eps)
  CompareTo compare_to = CompareTo::All;
  int threads = 0;  // 0 = all cores
};

struct SemDedupResult {
  // Per row of the input (keep order): the cosine to its twin, NaN when the row is kept.
  std::vector<double> max_sim;
  // Per row: index (into the input rows) of the twin, -1 when the row is kept.
  std::vector<int64_t> twin;
  int64_t tiles_total = 0;    // row-block pairs that could hold earlier rows
  int64_t tiles_skipped = 0;  // ... skipped by the centroid-angle bound
  int64_t exact_pairs = 0;    // pairs whose cosine was recomputed exactly
};

// rows: all clusters' rows, cluster c = rows [offsets[c], offsets[c + 1]), each in keep order.
// centroids: n_clusters rows of the same width (any dtype), or null (no pruning; any order).
// Throws InputError for a zero or non-finite row, a bad offset, or a width mismatch.
SemDedupResult semdedup(const Rows& rows, const int64_t* offsets, int64_t n_clusters, const Rows* centroids,
                        const SemDedupOptions& options, const CancelToken* cancel = nullptr);

}  // namespace fastcurate
