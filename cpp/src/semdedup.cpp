// SemDeDup kernel: see fastcurate/semdedup.hpp for the semantics.
#include "fastcurate/semdedup.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "dense.hpp"
#include "fastcurate/parallel.hpp"

namespace fastcurate {

namespace {

constexpr int64_t kBlock = 64;  // rows per tile
// Angle slack for the centroid bound: covers the rounding of both angles (acos of a double
// cosine is off by at most ~5e-7 rad near 0) with a wide margin; it only costs a few tiles.
constexpr double kAngleSlack = 1e-5;

// An uninitialised float buffer: the packed rows of a batch span up to gigabytes, written once
// (zero-filling them first costs seconds). Not on transparent huge pages: measured here, the
// first THP allocation of a process can stall for seconds in compaction.
struct FloatBuf {
  std::unique_ptr<float[]> p;
  void reset(size_t count) { p.reset(count > 0 ? new float[count] : nullptr); }
  float* get() const { return p.get(); }
};

struct Candidate {
  int64_t j;      // earlier row (position in the cluster)
  float approx;   // float cosine
};

// What the packing pass computes for every row of the batch.
struct Packed {
  // Unit rows (the row divided by its norm, rounded to float), row-major for clusters of fewer than
  // 128 rows (dot-product kernel), as transposed 64-row panels for larger ones (panel kernel);
  // only the part in use is ever touched.
  FloatBuf unit;    // n x dp
  FloatBuf panels;  // per large cluster, ceil(m / 64) panels of dp x 64
  std::vector<int64_t> panel_at;  // per cluster: offset of its first panel in `panels`, -1 if none
  std::vector<double> norm2;  // exact squared norm, rounded once to double
  std::vector<double> theta;  // angle to the cluster's centroid (empty without centroids)
  int64_t dp = 0;
};

// Rigorous bound on |float cosine - exact cosine| for rows normalised and rounded to float and
// summed on any path (at most dp + 1 roundings in a chain, each <= 2^-24 relative, on terms whose
// absolute values sum to <= 1 + tiny by Cauchy-Schwarz), plus the rounding of the normalisation
// and of the exact cosine's own formula. About 3.1e-5 for dp = 512.
double float_error_bound(int64_t dp) {
  const double u = std::ldexp(1.0, -24);
  const double chain = static_cast<double>(dp + 1) * u;
  const double gamma = chain / (1.0 - chain);
  return (gamma * (1.0 + 3.0 * u) + 2.0 * u + u * u) * 1.01 + 1e-12;
}

}  // namespace

SemDedupResult semdedup(const Rows& rows, const int64_t* offsets, int64_t n_clusters, const Rows* centroids,
                        const SemDedupOptions& opt, const CancelToken* cancel) {
  const int64_t n = rows.n;
  if (n_clusters < 0) throw InputError("n_clusters must be >= 0");
  if (offsets[0] != 0 || offsets[n_clusters] != n) {
    throw InputError("cluster offsets must start at 0 and end at the number of rows (" + std::to_string(n) + ")");
  }
  for (int64_t c = 0; c < n_clusters; ++c) {
    if (offsets[c + 1] < offsets[c]) {
      throw InputError("cluster offsets must be non-decreasing (cluster " + std::to_string(c) + ")");
    }
  }
  if (centroids != nullptr && (centroids->n != n_clusters || centroids->d != rows.d)) {
    throw InputError("centroids must be " + std::to_string(n_clusters) + " x " + std::to_string(rows.d) + ", got " +
                     std::to_string(centroids->n) + " x " + std::to_string(centroids->d));
  }
  if (!(opt.threshold == opt.threshold)) throw InputError("threshold is NaN");
  if (rows.dtype == DType::F64) {
    throw InputError("SemDeDup takes float16 or float32 embeddings (as stored); convert float64 with .astype(np.float32)");
  }

  SemDedupResult res;
  res.max_sim.assign(static_cast<size_t>(n), std::numeric_limits<double>::quiet_NaN());
  res.twin.assign(static_cast<size_t>(n), -1);
  if (n == 0) return res;

  const double thr = opt.threshold;
  const int64_t dp = dense::padded(rows.d);
  const double delta = float_error_bound(dp);
  const bool use_angles = centroids != nullptr && thr > -1.0;
  const double window = use_angles ? std::acos(std::min(1.0, thr)) + kAngleSlack : 0.0;

  // ---- Pack: exact norms, unit rows in float, angles to the centroid (parallel over clusters).
  Packed P;
  P.dp = dp;
  P.unit.reset(static_cast<size_t>(n * dp));
  P.norm2.resize(static_cast<size_t>(n));
  if (use_angles) P.theta.resize(static_cast<size_t>(n));
  // Clusters of >= 128 rows also get their blocks packed as transposed panels for the AVX-512
  // panel kernel (smaller ones would mostly pad); others use the dot-product kernel.
  const bool panels = dense::panel_kernel();
  P.panel_at.assign(static_cast<size_t>(n_clusters), -1);
  if (panels) {
    int64_t total = 0;
    for (int64_t c = 0; c < n_clusters; ++c) {
      const int64_t m = offsets[c + 1] - offsets[c];
      if (m < 128) continue;
      P.panel_at[static_cast<size_t>(c)] = total;
      total += (m + kBlock - 1) / kBlock * dp * 64;
    }
    P.panels.reset(static_cast<size_t>(total));
  }
  parallel_for_blocks(n_clusters, opt.threads, cancel, [&](int64_t c) {
    std::vector<double> cen;
    if (use_angles) {
      cen.resize(static_cast<size_t>(rows.d));
      dense::row_to_double(*centroids, c, cen.data());
      double s = 0.0;
      for (double v : cen) s += v * v;
      if (!(s > 0.0) || !std::isfinite(s)) {
        throw InputError("centroid " + std::to_string(c) + " is zero or not finite; recompute the centroids");
      }
      const double inv = 1.0 / std::sqrt(s);
      for (double& v : cen) v *= inv;
    }
    std::vector<float> rowf(static_cast<size_t>(rows.d)), unit_row(static_cast<size_t>(rows.d));
    const int64_t at = P.panel_at[static_cast<size_t>(c)];
    for (int64_t i = offsets[c]; i < offsets[c + 1]; ++i) {
      double s = 0.0, cdot = 0.0;
      dense::row_float_stats(rows, i, rowf.data(), &s, use_angles ? cen.data() : nullptr, &cdot);
      // fp16: the sum of squares is exact in any order when below 15 (see dense::exact_dot);
      // otherwise, and for fp32, the exact sum.
      if (!(rows.dtype == DType::F16 && s < 15.0)) s = dense::exact_dot(rows, i, rows, i);
      if (!std::isfinite(s)) dense::throw_not_finite(rows, i);
      if (!(s > 0.0)) {
        throw InputError("embedding row " + std::to_string(i + rows.index_base) +
                         " is all zeros: its cosine to other rows is undefined; drop it before SemDeDup");
      }
      P.norm2[static_cast<size_t>(i)] = s;
      const double inv = 1.0 / std::sqrt(s);
      // x * (1 / |x|) rounded to float: within the float error bound (see float_error_bound).
      if (at >= 0) {
        dense::scale_to_float(rowf.data(), rows.d, inv, unit_row.data());
        const int64_t r = i - offsets[c];
        float* panel = P.panels.get() + at + (r / kBlock) * dp * 64 + r % kBlock;
        for (int64_t t = 0; t < rows.d; ++t) panel[t * 64] = unit_row[static_cast<size_t>(t)];
        for (int64_t t = rows.d; t < dp; ++t) panel[t * 64] = 0.0f;
      } else {
        float* u = P.unit.get() + i * dp;
        dense::scale_to_float(rowf.data(), rows.d, inv, u);
        for (int64_t t = rows.d; t < dp; ++t) u[t] = 0.0f;
      }
      if (use_angles) P.theta[static_cast<size_t>(i)] = std::acos(std::max(-1.0, std::min(1.0, cdot * inv)));
    }
    if (at >= 0) {  // zero the panel columns past the cluster's last row
      const int64_t m = offsets[c + 1] - offsets[c];
      const int64_t last = (m + kBlock - 1) / kBlock - 1;
      for (int64_t r = m; r < (last + 1) * kBlock; ++r) {
        float* panel = P.panels.get() + at + last * dp * 64 + r % kBlock;
        for (int64_t t = 0; t < dp; ++t) panel[t * 64] = 0.0f;
      }
    }
  });

  // The exact cosine of rows i and j (global positions).
  const bool f16 = rows.dtype == DType::F16;
  auto exact_cos = [&](int64_t i, int64_t j) {
    const bool small = f16 && P.norm2[static_cast<size_t>(i)] < 15.0 && P.norm2[static_cast<size_t>(j)] < 15.0;
    const double dot = dense::exact_dot(rows, i, rows, j, small);
    const double c = dot / std::sqrt(P.norm2[static_cast<size_t>(i)] * P.norm2[static_cast<size_t>(j)]);
    return std::min(1.0, c);
  };

  // Per cluster, the angle range of each block.
  struct Range {
    double lo, hi;
  };
  auto block_range = [&](int64_t g0, int64_t m) {
    Range r{std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity()};
    for (int64_t t = 0; t < m; ++t) {
      r.lo = std::min(r.lo, P.theta[static_cast<size_t>(g0 + t)]);
      r.hi = std::max(r.hi, P.theta[static_cast<size_t>(g0 + t)]);
    }
    return r;
  };

  std::atomic<int64_t> tiles_total{0}, tiles_skipped{0}, exact_pairs{0};
  const bool kept_only = opt.compare_to == CompareTo::Kept;

  // Float cosines of block I against every earlier block J (and itself), candidates per row.
  // Rows are global positions; base = the cluster's first row.
  static_assert(kBlock == 64, "the panel kernel computes 64 columns");
  auto gather = [&](int64_t cluster, int64_t base, int64_t m, int64_t bi, const std::vector<Range>& ranges,
                    std::vector<std::vector<Candidate>>& cands, std::vector<float>& tile) {
    const int64_t at = P.panel_at[static_cast<size_t>(cluster)];
    const int64_t i0 = bi * kBlock, mi = std::min(kBlock, m - i0);
    for (int64_t r = 0; r < mi; ++r) cands[static_cast<size_t>(r)].clear();
    int64_t total = 0, skipped = 0;
    for (int64_t bj = 0; bj <= bi; ++bj) {
      const int64_t j0 = bj * kBlock, mj = std::min(kBlock, m - j0);
      ++total;
      if (use_angles) {
        const Range& a = ranges[static_cast<size_t>(bi)];
        const Range& b = ranges[static_cast<size_t>(bj)];
        if (b.lo > a.hi + window || b.hi < a.lo - window) {
          ++skipped;
          continue;
        }
      }
      if (at >= 0) {
        dense::gemm_panel64(P.panels.get() + at + bi * dp * 64, mi, P.panels.get() + at + bj * dp * 64, dp,
                            tile.data());
      } else {
        dense::gemm_nt(P.unit.get() + (base + i0) * dp, dp, mi, P.unit.get() + (base + j0) * dp, dp, mj, dp,
                       tile.data(), kBlock);
      }
      for (int64_t r = 0; r < mi; ++r) {
        const float* t = tile.data() + r * kBlock;
        const int64_t jmax = bj == bi ? r : mj;  // only earlier rows
        for (int64_t c = 0; c < jmax; ++c) {
          if (static_cast<double>(t[c]) > thr - delta) {
            cands[static_cast<size_t>(r)].push_back({j0 + c, t[c]});
          }
        }
      }
    }
    tiles_total += total;
    tiles_skipped += skipped;
  };

  // Settles row (base + i) from its candidates: the exact maximum over contenders whose float
  // cosine is within 2 * delta of the float maximum (any other is strictly below the exact max).
  auto settle = [&](int64_t base, int64_t i, std::vector<Candidate>& cs, const std::vector<uint8_t>* kept) {
    float best = -std::numeric_limits<float>::infinity();
    bool any = false;
    for (const Candidate& c : cs) {
      if (kept != nullptr && !(*kept)[static_cast<size_t>(c.j)]) continue;
      if (c.approx > best) best = c.approx;
      any = true;
    }
    if (!any) return;
    double best_exact = -std::numeric_limits<double>::infinity();
    int64_t best_j = -1;
    int64_t n_exact = 0;
    for (const Candidate& c : cs) {
      if (kept != nullptr && !(*kept)[static_cast<size_t>(c.j)]) continue;
      if (static_cast<double>(c.approx) < static_cast<double>(best) - 2.0 * delta) continue;
      const double e = exact_cos(base + i, base + c.j);
      ++n_exact;
      if (e > best_exact || (e == best_exact && c.j < best_j)) {
        best_exact = e;
        best_j = c.j;
      }
    }
    exact_pairs += n_exact;
    if (best_exact > thr) {
      res.max_sim[static_cast<size_t>(base + i)] = best_exact;
      res.twin[static_cast<size_t>(base + i)] = base + best_j;
    }
  };

  auto ranges_of = [&](int64_t base, int64_t m) {
    std::vector<Range> ranges;
    if (!use_angles) return ranges;
    const int64_t nb = (m + kBlock - 1) / kBlock;
    ranges.resize(static_cast<size_t>(nb));
    for (int64_t b = 0; b < nb; ++b) ranges[static_cast<size_t>(b)] = block_range(base + b * kBlock, std::min(kBlock, m - b * kBlock));
    return ranges;
  };

  if (!kept_only) {
    // Every (cluster, block) is independent: the decision of a row does not depend on others.
    struct Task {
      int64_t cluster, block;
    };
    std::vector<Task> tasks;
    std::vector<std::vector<Range>> cranges(static_cast<size_t>(n_clusters));
    for (int64_t c = 0; c < n_clusters; ++c) {
      const int64_t m = offsets[c + 1] - offsets[c];
      if (m < 2) continue;
      cranges[static_cast<size_t>(c)] = ranges_of(offsets[c], m);
      for (int64_t b = 0; b * kBlock < m; ++b) tasks.push_back({c, b});
    }
    // Later blocks cost more (they see more earlier rows): start them first.
    std::stable_sort(tasks.begin(), tasks.end(), [](const Task& x, const Task& y) { return x.block > y.block; });
    parallel_for_blocks(static_cast<int64_t>(tasks.size()), opt.threads, cancel, [&](int64_t ti) {
      const Task& t = tasks[static_cast<size_t>(ti)];
      const int64_t base = offsets[t.cluster], m = offsets[t.cluster + 1] - base;
      thread_local std::vector<std::vector<Candidate>> cands;
      thread_local std::vector<float> tile;
      cands.resize(static_cast<size_t>(kBlock));
      tile.resize(static_cast<size_t>(kBlock * kBlock));
      gather(t.cluster, base, m, t.block, cranges[static_cast<size_t>(t.cluster)], cands, tile);
      const int64_t i0 = t.block * kBlock, mi = std::min(kBlock, m - i0);
      for (int64_t r = 0; r < mi; ++r) settle(base, i0 + r, cands[static_cast<size_t>(r)], nullptr);
    });
  } else {
    // Greedy: a row's decision depends on which earlier rows are kept, so a cluster is walked in
    // order by one thread; clusters run in parallel, largest first.
    std::vector<int64_t> order;
    for (int64_t c = 0; c < n_clusters; ++c) {
      if (offsets[c + 1] - offsets[c] >= 2) order.push_back(c);
    }
    std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) {
      return offsets[x + 1] - offsets[x] > offsets[y + 1] - offsets[y];
    });
    parallel_for_blocks(static_cast<int64_t>(order.size()), opt.threads, cancel, [&](int64_t oi) {
      const int64_t c = order[static_cast<size_t>(oi)];
      const int64_t base = offsets[c], m = offsets[c + 1] - base;
      const std::vector<Range> ranges = ranges_of(base, m);
      std::vector<uint8_t> kept(static_cast<size_t>(m), 1);
      std::vector<std::vector<Candidate>> cands(static_cast<size_t>(kBlock));
      std::vector<float> tile(static_cast<size_t>(kBlock * kBlock));
      for (int64_t bi = 0; bi * kBlock < m; ++bi) {
        if (cancel != nullptr && cancel->is_cancelled()) return;
        gather(c, base, m, bi, ranges, cands, tile);
        const int64_t i0 = bi * kBlock, mi = std::min(kBlock, m - i0);
        for (int64_t r = 0; r < mi; ++r) {  // in order: earlier rows of the block are settled
          settle(base, i0 + r, cands[static_cast<size_t>(r)], &kept);
          if (res.twin[static_cast<size_t>(base + i0 + r)] >= 0) kept[static_cast<size_t>(i0 + r)] = 0;
        }
      }
    });
  }
  res.tiles_total = tiles_total.load();
  res.tiles_skipped = tiles_skipped.load();
  res.exact_pairs = exact_pairs.load();
  return res;
}

}  // namespace fastcurate
