// Exact silhouette kernels: see fastcurate/silhouette.hpp for the semantics.
#include "fastcurate/silhouette.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "dense.hpp"
#include "fastcurate/parallel.hpp"

namespace fastcurate {

namespace {

constexpr int64_t kBlock = 64;  // rows per tile: two 64 x 512 double panels fit in L2

void check_labels(const int32_t* labels, int64_t n, int32_t k, int64_t index_base) {
  if (k < 1) throw InputError("the number of clusters k must be >= 1, got " + std::to_string(k));
  for (int64_t i = 0; i < n; ++i) {
    if (labels[i] < 0 || labels[i] >= k) {
      throw InputError("label of row " + std::to_string(i + index_base) + " is " + std::to_string(labels[i]) +
                       ", outside [0, " + std::to_string(k) + "); encode labels as 0..k-1 (np.unique(..., return_inverse=True))");
    }
  }
}

// sklearn's silhouette_samples for one row, from its per-cluster distance sums.
inline void finish_row(const double* sums, int32_t own, const int64_t* counts, int32_t k, double* s, double* a,
                       double* b) {
  const int64_t n_own = counts[own];
  if (n_own < 1) throw InputError("a row's own cluster has count 0: counts must cover every row");
  double inter = std::numeric_limits<double>::infinity();
  for (int32_t c = 0; c < k; ++c) {
    if (c == own || counts[c] == 0) continue;
    const double v = std::max(0.0, sums[c]) / static_cast<double>(counts[c]);
    if (v < inter) inter = v;
  }
  if (!(inter < std::numeric_limits<double>::infinity())) {
    throw InputError("the silhouette needs at least 2 non-empty clusters");
  }
  double intra = 0.0, sil = 0.0;
  if (n_own > 1) {
    intra = std::max(0.0, sums[own]) / static_cast<double>(n_own - 1);
    const double den = std::max(intra, inter);
    sil = den > 0.0 ? (inter - intra) / den : 0.0;  // sklearn: nan_to_num(0 / 0) = 0
  }
  *s = sil;
  if (a != nullptr) *a = intra;
  if (b != nullptr) *b = inter;
}

// Squared norms from the same micro-kernel as the Gram tiles: a row's dot with itself is then
// bit-identical to its dot with an identical row, so duplicate rows are at distance exactly 0.
void kernel_norms(const double* packed, int64_t m, int64_t dp, double* out) {
  for (int64_t r = 0; r < m; ++r) dense::gemm_nt(packed + r * dp, dp, 1, packed + r * dp, dp, 1, dp, out + r, 1);
}

// Rows sorted by label (stable): a cluster is a contiguous range, so per-cluster sums of a tile
// row are sums over a few contiguous segments.
struct Sorted {
  std::vector<int64_t> perm;     // sorted position -> original row
  std::vector<int32_t> labels;   // label of each sorted position
  std::vector<double> packed;    // n x dp
  std::vector<double> norms2;    // n
  int64_t dp = 0;
};

Sorted sort_and_pack(const Rows& x, const int32_t* labels, int32_t k, int threads, const CancelToken* cancel) {
  Sorted s;
  const int64_t n = x.n;
  std::vector<int64_t> start(static_cast<size_t>(k) + 1, 0);
  for (int64_t i = 0; i < n; ++i) ++start[static_cast<size_t>(labels[i]) + 1];
  for (int32_t c = 0; c < k; ++c) start[static_cast<size_t>(c) + 1] += start[static_cast<size_t>(c)];
  s.perm.resize(static_cast<size_t>(n));
  s.labels.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t p = start[static_cast<size_t>(labels[i])]++;
    s.perm[static_cast<size_t>(p)] = i;
    s.labels[static_cast<size_t>(p)] = labels[i];
  }
  s.dp = dense::padded(x.d);
  s.packed.resize(static_cast<size_t>(n * s.dp));
  s.norms2.resize(static_cast<size_t>(n));
  const int64_t nb = (n + kBlock - 1) / kBlock;
  parallel_for_blocks(nb, threads, cancel, [&](int64_t blk) {
    const int64_t r0 = blk * kBlock, m = std::min(kBlock, n - r0);
    dense::pack_double(x, s.perm.data() + r0, 0, m, false, s.packed.data() + r0 * s.dp, s.dp, s.norms2.data() + r0);
    kernel_norms(s.packed.data() + r0 * s.dp, m, s.dp, s.norms2.data() + r0);
  });
  return s;
}

struct Segment {
  int64_t begin, end;  // positions inside the block
  int32_t label;
};

std::vector<Segment> segments_of(const int32_t* labels, int64_t count) {
  std::vector<Segment> segs;
  int64_t b = 0;
  for (int64_t i = 1; i <= count; ++i) {
    if (i == count || labels[i] != labels[b]) {
      segs.push_back({b, i, labels[b]});
      b = i;
    }
  }
  return segs;
}

// Distance tile between sorted blocks I and J (rows [i0, i0+mi) and [j0, j0+mj)).
void distance_tile(const Sorted& s, int64_t i0, int64_t mi, int64_t j0, int64_t mj, std::vector<double>& tile) {
  tile.resize(static_cast<size_t>(kBlock * kBlock));
  dense::gemm_nt(s.packed.data() + i0 * s.dp, s.dp, mi, s.packed.data() + j0 * s.dp, s.dp, mj, s.dp, tile.data(),
                 kBlock);
  dense::dist_from_gram(tile.data(), mi, mj, kBlock, s.norms2.data() + i0, s.norms2.data() + j0);
  if (i0 == j0) {
    for (int64_t t = 0; t < mi; ++t) tile[static_cast<size_t>(t * kBlock + t)] = 0.0;  // d(i, i) = 0 exactly
  }
}

// acc[(row0 + r) * k + seg.label] += sum over the segment's columns, for every tile row r.
void add_row_sums(const std::vector<double>& tile, int64_t mi, const std::vector<Segment>& col_segs, double* acc,
                  int64_t row0, int32_t k) {
  for (int64_t r = 0; r < mi; ++r) {
    const double* t = tile.data() + r * kBlock;
    double* out = acc + (row0 + r) * k;
    for (const Segment& g : col_segs) {
      double sum = 0.0;
      for (int64_t c = g.begin; c < g.end; ++c) sum += t[c];
      out[g.label] += sum;
    }
  }
}

// acc[(col0 + c) * k + seg.label] += sum over the segment's rows, for every tile column c.
void add_col_sums(const std::vector<double>& tile, int64_t mj, const std::vector<Segment>& row_segs, double* acc,
                  int64_t col0, int32_t k, std::vector<double>& tmp) {
  tmp.resize(static_cast<size_t>(kBlock));
  for (const Segment& g : row_segs) {
    std::fill(tmp.begin(), tmp.begin() + mj, 0.0);
    for (int64_t r = g.begin; r < g.end; ++r) {
      const double* t = tile.data() + r * kBlock;
      for (int64_t c = 0; c < mj; ++c) tmp[static_cast<size_t>(c)] += t[c];
    }
    for (int64_t c = 0; c < mj; ++c) acc[(col0 + c) * k + g.label] += tmp[static_cast<size_t>(c)];
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------

void cosine_cluster_sums(const Rows& x, const int32_t* labels, int32_t k, double* sums, int64_t* counts, int threads,
                         const CancelToken* cancel) {
  check_labels(labels, x.n, k, x.index_base);
  // Each task owns a range of clusters and walks every row in order: each cluster's sum is
  // added in row order whatever the number of threads.
  const int n_threads = resolve_threads(threads);
  const int64_t n_tasks = std::min<int64_t>(k, static_cast<int64_t>(n_threads) * 4);
  const int64_t d = x.d;
  const int64_t dp = dense::padded(d);
  parallel_for_blocks(n_tasks, threads, cancel, [&](int64_t task) {
    const int32_t c0 = static_cast<int32_t>(task * k / n_tasks);
    const int32_t c1 = static_cast<int32_t>((task + 1) * k / n_tasks);
    std::vector<double> row(static_cast<size_t>(dp));
    for (int64_t i = 0; i < x.n; ++i) {
      const int32_t c = labels[i];
      if (c < c0 || c >= c1) continue;
      dense::pack_double(x, nullptr, i, 1, true, row.data(), dp, nullptr);
      double* out = sums + static_cast<int64_t>(c) * d;
      for (int64_t t = 0; t < d; ++t) out[t] += row[static_cast<size_t>(t)];
      ++counts[c];
    }
  });
}

void silhouette_cosine_rows(const Rows& x, const int32_t* labels, const double* sums, const int64_t* counts, int32_t k,
                            double* s, double* a, double* b, int threads, const CancelToken* cancel) {
  check_labels(labels, x.n, k, x.index_base);
  const int64_t d = x.d, dp = dense::padded(d);
  // The cluster sums, padded like the rows.
  std::vector<double> S(static_cast<size_t>(k * dp), 0.0);
  for (int64_t c = 0; c < k; ++c) std::copy(sums + c * d, sums + (c + 1) * d, S.begin() + c * dp);
  const int64_t nb = (x.n + kBlock - 1) / kBlock;
  parallel_for_blocks(nb, threads, cancel, [&](int64_t blk) {
    const int64_t r0 = blk * kBlock, m = std::min(kBlock, x.n - r0);
    std::vector<double> rows(static_cast<size_t>(m * dp));
    std::vector<double> dots(static_cast<size_t>(m * k)), n2(static_cast<size_t>(m));
    dense::pack_double(x, nullptr, r0, m, true, rows.data(), dp, n2.data());
    dense::gemm_nt(rows.data(), dp, m, S.data(), dp, k, dp, dots.data(), k);
    for (int64_t r = 0; r < m; ++r) {
      double* t = dots.data() + r * k;
      // sum_{j in C} (1 - x . x_j) = |C| - x . S_C
      for (int32_t c = 0; c < k; ++c) t[c] = static_cast<double>(counts[c]) - t[c];
      const int64_t i = r0 + r;
      // d(i, i) = 0: remove the self term 1 - x . x, which is 1 for an all-zero row (sklearn
      // zeroes the diagonal of the distance matrix the same way) and ~0 otherwise.
      t[labels[i]] -= 1.0 - n2[static_cast<size_t>(r)];
      // |C| - x . S_C cancels when the cluster points the same way as x: a sum within rounding of
      // 0 (1e-12 per row of the cluster, far above the error, far below any real distance) is 0,
      // so that rows whose clusters all coincide get s = 0 as with exact arithmetic.
      for (int32_t c = 0; c < k; ++c) {
        if (t[c] < 1e-12 * static_cast<double>(counts[c])) t[c] = 0.0;
      }
      finish_row(t, labels[i], counts, k, s + i, a != nullptr ? a + i : nullptr, b != nullptr ? b + i : nullptr);
    }
  });
}

void silhouette_euclidean_full(const Rows& x, const int32_t* labels, int32_t k, double* s, double* a, double* b,
                               int threads, int64_t symmetric_budget_bytes, const CancelToken* cancel) {
  check_labels(labels, x.n, k, x.index_base);
  const int64_t n = x.n;
  if (n == 0) return;
  std::vector<int64_t> counts(static_cast<size_t>(k), 0);
  for (int64_t i = 0; i < n; ++i) ++counts[static_cast<size_t>(labels[i])];
  Sorted srt = sort_and_pack(x, labels, k, threads, cancel);
  const int64_t nb = (n + kBlock - 1) / kBlock;
  std::vector<std::vector<Segment>> segs(static_cast<size_t>(nb));
  for (int64_t blk = 0; blk < nb; ++blk) {
    const int64_t r0 = blk * kBlock;
    segs[static_cast<size_t>(blk)] = segments_of(srt.labels.data() + r0, std::min(kBlock, n - r0));
  }
  auto finish_sorted = [&](const double* row_sums, int64_t p) {
    const int64_t i = srt.perm[static_cast<size_t>(p)];
    finish_row(row_sums, srt.labels[static_cast<size_t>(p)], counts.data(), k, s + i, a != nullptr ? a + i : nullptr,
               b != nullptr ? b + i : nullptr);
  };

  const bool symmetric = static_cast<double>(n) * static_cast<double>(k) * 8.0 <=
                         static_cast<double>(symmetric_budget_bytes);
  if (!symmetric) {
    // Each block of rows against every block, then finished: memory one tile + kBlock x k.
    parallel_for_blocks(nb, threads, cancel, [&](int64_t bi) {
      const int64_t i0 = bi * kBlock, mi = std::min(kBlock, n - i0);
      std::vector<double> tile, acc(static_cast<size_t>(mi * k), 0.0);
      for (int64_t bj = 0; bj < nb; ++bj) {
        if (cancel != nullptr && cancel->is_cancelled()) return;
        const int64_t j0 = bj * kBlock, mj = std::min(kBlock, n - j0);
        distance_tile(srt, i0, mi, j0, mj, tile);
        add_row_sums(tile, mi, segs[static_cast<size_t>(bj)], acc.data(), 0, k);
      }
      for (int64_t r = 0; r < mi; ++r) finish_sorted(acc.data() + r * k, i0 + r);
    });
    return;
  }

  // Symmetric: every unordered pair of blocks once. Rounds of a round-robin tournament (circle
  // method) pair the blocks so that no block appears twice in a round: the tiles of a round run in
  // parallel without locks, and each row's sums are added in round order, so the result does not
  // depend on the number of threads.
  std::vector<double> acc(static_cast<size_t>(n * k), 0.0);
  parallel_for_blocks(nb, threads, cancel, [&](int64_t bi) {
    const int64_t i0 = bi * kBlock, mi = std::min(kBlock, n - i0);
    std::vector<double> tile;
    distance_tile(srt, i0, mi, i0, mi, tile);
    add_row_sums(tile, mi, segs[static_cast<size_t>(bi)], acc.data(), i0, k);
  });
  const int64_t N = nb + (nb & 1);  // a dummy block when nb is odd
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (int64_t round = 0; round + 1 < N; ++round) {
    pairs.clear();
    auto add = [&](int64_t p, int64_t q) {
      if (p < nb && q < nb) pairs.emplace_back(std::min(p, q), std::max(p, q));
    };
    add(N - 1, round);
    for (int64_t t = 1; t < N / 2; ++t) add((round + t) % (N - 1), (round - t + (N - 1)) % (N - 1));
    parallel_for_blocks(static_cast<int64_t>(pairs.size()), threads, cancel, [&](int64_t pi) {
      const auto [bi, bj] = pairs[static_cast<size_t>(pi)];
      const int64_t i0 = bi * kBlock, mi = std::min(kBlock, n - i0);
      const int64_t j0 = bj * kBlock, mj = std::min(kBlock, n - j0);
      thread_local std::vector<double> tile, tmp;
      distance_tile(srt, i0, mi, j0, mj, tile);
      add_row_sums(tile, mi, segs[static_cast<size_t>(bj)], acc.data(), i0, k);
      add_col_sums(tile, mj, segs[static_cast<size_t>(bi)], acc.data(), j0, k, tmp);
    });
  }
  for (int64_t p = 0; p < n; ++p) finish_sorted(acc.data() + p * k, p);
}

void euclidean_distance_sums_add(const Rows& q, const int64_t* q_ids, const Rows& r, int64_t r_first,
                                 const int32_t* r_labels, int32_t k, double* acc, int threads,
                                 const CancelToken* cancel) {
  check_labels(r_labels, r.n, k, r.index_base);
  if (q.d != r.d) {
    throw InputError("query rows have " + std::to_string(q.d) + " columns but reference rows have " +
                     std::to_string(r.d) + "; all embeddings must come from the same encoder");
  }
  const int64_t dp = dense::padded(q.d);
  // The reference chunk is packed once and shared (read-only) by every thread.
  std::vector<double> rp(static_cast<size_t>(r.n * dp)), rn(static_cast<size_t>(r.n));
  const int64_t nbr = (r.n + kBlock - 1) / kBlock;
  parallel_for_blocks(nbr, threads, cancel, [&](int64_t blk) {
    const int64_t r0 = blk * kBlock, m = std::min(kBlock, r.n - r0);
    dense::pack_double(r, nullptr, r0, m, false, rp.data() + r0 * dp, dp, rn.data() + r0);
    kernel_norms(rp.data() + r0 * dp, m, dp, rn.data() + r0);
  });
  const int64_t nbq = (q.n + kBlock - 1) / kBlock;
  parallel_for_blocks(nbq, threads, cancel, [&](int64_t bq) {
    const int64_t i0 = bq * kBlock, mi = std::min(kBlock, q.n - i0);
    std::vector<double> qp(static_cast<size_t>(mi * dp)), qn(static_cast<size_t>(mi));
    std::vector<double> tile(static_cast<size_t>(kBlock * kBlock));
    dense::pack_double(q, nullptr, i0, mi, false, qp.data(), dp, qn.data());
    kernel_norms(qp.data(), mi, dp, qn.data());
    for (int64_t bj = 0; bj < nbr; ++bj) {
      const int64_t j0 = bj * kBlock, mj = std::min(kBlock, r.n - j0);
      dense::gemm_nt(qp.data(), dp, mi, rp.data() + j0 * dp, dp, mj, dp, tile.data(), kBlock);
      dense::dist_from_gram(tile.data(), mi, mj, kBlock, qn.data(), rn.data() + j0);
      for (int64_t t = 0; t < mi; ++t) {
        const int64_t self = q_ids[i0 + t] - r_first - j0;  // the query itself, if in this tile
        if (self >= 0 && self < mj) tile[static_cast<size_t>(t * kBlock + self)] = 0.0;
        double* out = acc + (i0 + t) * k;
        const double* row = tile.data() + t * kBlock;
        for (int64_t c = 0; c < mj; ++c) out[r_labels[j0 + c]] += row[c];
      }
    }
  });
}

void silhouette_from_sums(const double* sums, int64_t m, const int32_t* labels, const int64_t* counts, int32_t k,
                          double* s, double* a, double* b) {
  check_labels(labels, m, k, 0);
  for (int64_t i = 0; i < m; ++i) {
    finish_row(sums + i * k, labels[i], counts, k, s + i, a != nullptr ? a + i : nullptr,
               b != nullptr ? b + i : nullptr);
  }
}

}  // namespace fastcurate
