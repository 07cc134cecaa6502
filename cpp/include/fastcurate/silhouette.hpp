// Exact silhouette values (sklearn.metrics.silhouette_samples semantics) without an n x n matrix.
//
// For a row i of cluster A:  a_i = sum_{j in A} d(i, j) / (|A| - 1),
//                            b_i = min_{C != A} sum_{j in C} d(i, j) / |C|,
//                            s_i = (b_i - a_i) / max(a_i, b_i),  0 when |A| == 1 or a_i == b_i == 0.
// d(i, i) = 0 is part of the sums, as in sklearn.
//
// Cosine distance is linear in each argument once rows are L2-normalised:
//   sum_{j in C} (1 - x_i . x_j) = |C| - x_i . S_C,   S_C = sum_{j in C} x_j,
// so every per-cluster distance sum of every row is one dot product with a cluster sum: O(n k d)
// for the exact value, in two streaming passes (sums, then rows). An all-zero row stays zero after
// normalisation (sklearn's convention), so its distance to every other row is 1; its distance to
// itself is 0, like every row's (the self term is subtracted; sklearn zeroes the diagonal).
//
// Euclidean distance has no such structure (the square root), so the exact value needs every
// pair: the full version visits each unordered pair once (tiles of a symmetric matrix, in a
// fixed round-robin order so that the result does not depend on the thread count) and keeps only
// the per-(row, cluster) sums; the streaming version adds the distances from query rows to a chunk
// of reference rows, for sampled estimates over data that does not fit in memory.
//
// Everything is computed in double precision from the exact double value of each input element.
// Thread safety: stateless; safe to call from many threads on shared read-only inputs.
#pragma once

#include <cstdint>

#include "fastcurate/common.hpp"
#include "fastcurate/embeddings.hpp"

namespace fastcurate {

// Adds the L2-normalised rows of `x` into sums[label * d ..] (k x d doubles) and their count
// into counts[label]. Labels must be in [0, k). Each cluster is summed in row order by one
// thread, so the result does not depend on `threads`. Throws InputError on NaN / infinity.
void cosine_cluster_sums(const Rows& x, const int32_t* labels, int32_t k, double* sums, int64_t* counts,
                         int threads, const CancelToken* cancel = nullptr);

// Silhouette of every row of `x` for the cosine distance, given the sums and counts of ALL rows
// (from cosine_cluster_sums): s, a, b receive x.n values each (a and b may be null).
// Memory: one (rows of a block) x k tile per thread.
void silhouette_cosine_rows(const Rows& x, const int32_t* labels, const double* sums, const int64_t* counts, int32_t k, double* s, double* a, double* b, int threads,
                            const CancelToken* cancel = nullptr);

// Exact Euclidean silhouette of every row over all rows of `x`. When n * k * 8 bytes fit in
// `symmetric_budget_bytes`, each unordered pair is visited once (half the work) and per-(row,
// cluster) sums are kept for all rows; otherwise each block of rows is finished against all rows
// before the next (twice the work, one block x k tile per thread). Both are deterministic.
void silhouette_euclidean_full(const Rows& x, const int32_t* labels, int32_t k, double* s, double* a, double* b,
                               int threads, int64_t symmetric_budget_bytes, const CancelToken* cancel = nullptr);

// Streaming Euclidean: acc[q * k + r_labels[j]] += ||q_i - r_j|| for every query row i of `q`
// and reference row j of `r`. q_ids[i] and r_first + j are the rows' global indices: a query's
// distance to itself is exactly 0 (sklearn zeroes the diagonal). Each query row is owned by one
// thread and its references are added in order, so the result does not depend on `threads`.
void euclidean_distance_sums_add(const Rows& q, const int64_t* q_ids, const Rows& r, int64_t r_first,
                                 const int32_t* r_labels, int32_t k, double* acc, int threads,
                                 const CancelToken* cancel = nullptr);

// From per-cluster distance sums (m rows x k) to a_i, b_i and s_i with sklearn's conventions.
// counts are the cluster sizes over ALL rows; a negative sum from rounding is clamped to 0.
void silhouette_from_sums(const double* sums, int64_t m, const int32_t* labels, const int64_t* counts, int32_t k,
                          double* s, double* a, double* b);

}  // namespace fastcurate
