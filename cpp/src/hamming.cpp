// Exact all-pairs Hamming search by multi-index hashing (see hamming.hpp for the argument).
#include "fastcurate/hamming.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <string>
#include <utility>

#include "fastcurate/parallel.hpp"

// popcount: every x86-64 CPU since 2008 has the POPCNT instruction, but it is not in the x86-64
// baseline a portable wheel is compiled for, so the hot loops are compiled twice and the POPCNT
// copy is chosen at run time. Other architectures have a native popcount in their baseline.
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define FC_POPCNT_DISPATCH 1
#define FC_TARGET_POPCNT __attribute__((target("popcnt")))
#else
#define FC_POPCNT_DISPATCH 0
#define FC_TARGET_POPCNT
#endif
#if defined(__GNUC__) || defined(__clang__)
#define FC_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define FC_ALWAYS_INLINE inline
#endif

namespace fastcurate {
namespace {

constexpr int kDenseBits = 24;  // block values up to 2^24 get a direct look-up table (64 MiB max)

bool cpu_has_popcnt() {
#if FC_POPCNT_DISPATCH
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("popcnt") != 0;
  }();
  return has;
#else
  return true;
#endif
}

double ball_size(int bits, int s) {
  double total = 0, c = 1;  // C(bits, t)
  for (int t = 0; t <= s && t <= bits; ++t) {
    total += c;
    c = c * (bits - t) / (t + 1);
  }
  return total;
}

uint64_t low_mask(int bits) { return bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1; }

// The plan for m blocks: widths as equal as possible (wider blocks first), per-block radii summing
// to r - m + 1 with the extra units on the widest blocks: a unit of radius multiplies a block's
// candidate rate ball(b, s) / 2^b by about b / s, which is smallest relative to 2^b for wide blocks.
SearchPlan split(int m, int r, int64_t n) {
  SearchPlan p;
  p.blocks = m;
  int shift = 0;
  for (int k = 0; k < m; ++k) {
    p.bits[k] = 64 / m + (k < 64 % m ? 1 : 0);
    p.shift[k] = shift;
    shift += p.bits[k];
  }
  const int total = r - m + 1;
  for (int k = 0; k < m; ++k) p.radius[k] = total / m + (k < total % m ? 1 : 0);
  const double pairs = 0.5 * static_cast<double>(n) * static_cast<double>(n > 0 ? n - 1 : 0);
  for (int k = 0; k < m; ++k) {
    const double ball = ball_size(p.bits[k], p.radius[k]);
    const double distinct = std::min(static_cast<double>(n), std::ldexp(1.0, p.bits[k]));
    p.est_candidates += pairs * ball / std::ldexp(1.0, p.bits[k]);
    // Each mask visits the occupied values (or half the value space when it is densely occupied).
    p.est_probes += std::min(distinct, std::ldexp(0.5, p.bits[k])) * (ball - 1);
    // The counting sort and look-up table of a block are 2^bits entries each.
    if (p.bits[k] <= kDenseBits) p.est_probes += std::ldexp(0.25, p.bits[k]);
  }
  return p;
}

bool plan_feasible(const SearchPlan& p) {
  for (int k = 0; k < p.blocks; ++k) {
    // Wide blocks are bucketed by sorting, without a look-up table: only exact matches there.
    if (p.bits[k] > kDenseBits && p.radius[k] > 0) return false;
    if (ball_size(p.bits[k], p.radius[k]) > 4e6) return false;  // the mask list must stay small
  }
  return true;
}

// Rows sorted by one block's value, with the runs of equal values.
struct BlockIndex {
  int shift = 0, bits = 0;
  std::vector<uint64_t> hs, hs2;  // hashes (and second hashes) in sorted order
  std::vector<uint32_t> rows;     // original row of each
  std::vector<uint64_t> keys;     // distinct block values, ascending
  std::vector<uint32_t> start;    // run d is [start[d], start[d + 1])
  std::vector<uint32_t> dense;    // block value -> run index + 1 (0: absent); only when needed
  // When most block values are occupied, the masks scan the value space instead of the runs:
  // slots[v] = (first sorted position << 32) | row count, so a probe is one sequential load.
  std::vector<uint64_t> slots;

  uint64_t key(uint64_t h) const { return (h >> shift) & low_mask(bits); }
};

BlockIndex build_index(const HammingQuery& q, int shift, int bits, bool need_lookup) {
  BlockIndex bi;
  bi.shift = shift;
  bi.bits = bits;
  const size_t n = static_cast<size_t>(q.n);
  bi.rows.resize(n);
  if (bits <= kDenseBits) {
    // Counting sort: stable, so rows with equal block values stay in row order.
    std::vector<uint32_t> count((size_t{1} << bits) + 1, 0);
    for (size_t i = 0; i < n; ++i) ++count[bi.key(q.hashes[i]) + 1];
    for (size_t v = 1; v < count.size(); ++v) count[v] += count[v - 1];
    for (size_t i = 0; i < n; ++i) bi.rows[count[bi.key(q.hashes[i])]++] = static_cast<uint32_t>(i);
  } else {
    std::vector<std::pair<uint64_t, uint32_t>> kv(n);
    for (size_t i = 0; i < n; ++i) kv[i] = {bi.key(q.hashes[i]), static_cast<uint32_t>(i)};
    std::sort(kv.begin(), kv.end());
    for (size_t i = 0; i < n; ++i) bi.rows[i] = kv[i].second;
  }
  bi.hs.resize(n);
  for (size_t i = 0; i < n; ++i) bi.hs[i] = q.hashes[bi.rows[i]];
  if (q.second != nullptr) {
    bi.hs2.resize(n);
    for (size_t i = 0; i < n; ++i) bi.hs2[i] = q.second[bi.rows[i]];
  }
  for (size_t i = 0; i < n; ++i) {
    const uint64_t k = bi.key(bi.hs[i]);
    if (i == 0 || k != bi.keys.back()) {
      bi.keys.push_back(k);
      bi.start.push_back(static_cast<uint32_t>(i));
    }
  }
  bi.start.push_back(static_cast<uint32_t>(n));
  if (need_lookup) {
    if (4 * bi.keys.size() >= (size_t{1} << bits)) {
      bi.slots.assign(size_t{1} << bits, 0);
      for (size_t d = 0; d < bi.keys.size(); ++d) {
        bi.slots[bi.keys[d]] = (uint64_t{bi.start[d]} << 32) | (bi.start[d + 1] - bi.start[d]);
      }
    } else {
      bi.dense.assign(size_t{1} << bits, 0);
      for (size_t d = 0; d < bi.keys.size(); ++d) bi.dense[bi.keys[d]] = static_cast<uint32_t>(d + 1);
    }
  }
  return bi;
}

// All masks of `bits` bits with 1..s bits set, ascending popcount then value.
std::vector<uint64_t> ball_masks(int bits, int s) {
  std::vector<uint64_t> out;
  std::vector<int> idx;
  for (int t = 1; t <= s && t <= bits; ++t) {
    idx.resize(static_cast<size_t>(t));
    for (int i = 0; i < t; ++i) idx[static_cast<size_t>(i)] = i;
    for (;;) {
      uint64_t m = 0;
      for (int i : idx) m |= uint64_t{1} << i;
      out.push_back(m);
      int i = t - 1;
      while (i >= 0 && idx[static_cast<size_t>(i)] == bits - t + i) --i;
      if (i < 0) break;
      ++idx[static_cast<size_t>(i)];
      for (int j = i + 1; j < t; ++j) idx[static_cast<size_t>(j)] = idx[static_cast<size_t>(j - 1)] + 1;
    }
  }
  return out;
}

struct Emit {
  uint32_t i, j;
  uint8_t d, d2;
};

// What a comparison needs: the radius, the second hash's, and the blocks searched before this
// one (a pair that qualifies in an earlier block was reported there).
[[noreturn]] void throw_too_many(int64_t max_pairs, int radius) {
  throw InputError("more than max_pairs=" + std::to_string(max_pairs) + " pairs lie within radius " +
                   std::to_string(radius) +
                   "; lower the radius, remove exact duplicates first, or raise max_pairs if the memory is there");
}

struct Rules {
  int64_t max_pairs = 0;
  int radius = 0, radius2 = 64;
  bool has2 = false;
  int n_earlier = 0;
  uint64_t earlier_mask[64] = {};
  int earlier_radius[64] = {};
};

// Inlined into the POPCNT-targeted copies below, where the builtin becomes one instruction.
template <bool kHw>
FC_ALWAYS_INLINE int pc(uint64_t x) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_popcountll(x);
#else
  int c = 0;
  for (; x != 0; x &= x - 1) ++c;
  return c;
#endif
}

template <bool kHw>
FC_ALWAYS_INLINE void compare(const BlockIndex& bi, const Rules& ru, size_t a, size_t b, std::vector<Emit>& out) {
  const uint64_t x = bi.hs[a] ^ bi.hs[b];
  const int d = pc<kHw>(x);
  if (d > ru.radius) return;
  for (int k = 0; k < ru.n_earlier; ++k) {
    if (pc<kHw>(x & ru.earlier_mask[k]) <= ru.earlier_radius[k]) return;
  }
  int d2 = 0;
  if (ru.has2) {
    d2 = pc<kHw>(bi.hs2[a] ^ bi.hs2[b]);
    if (d2 > ru.radius2) return;
  }
  // A bucket pair can hold millions of pairs (thousands of identical hashes): stop early.
  if (static_cast<int64_t>(out.size()) >= ru.max_pairs) throw_too_many(ru.max_pairs, ru.radius);
  const uint32_t ra = bi.rows[a], rb = bi.rows[b];
  out.push_back(Emit{std::min(ra, rb), std::max(ra, rb), static_cast<uint8_t>(d), static_cast<uint8_t>(d2)});
}

// Pairs inside runs [d0, d1) (same block value).
template <bool kHw>
FC_ALWAYS_INLINE void within_runs_impl(const BlockIndex& bi, const Rules& ru, size_t d0, size_t d1, std::vector<Emit>& out) {
  for (size_t d = d0; d < d1; ++d) {
    const size_t s = bi.start[d], e = bi.start[d + 1];
    for (size_t a = s; a + 1 < e; ++a) {
      for (size_t b = a + 1; b < e; ++b) compare<kHw>(bi, ru, a, b, out);
    }
  }
}

// Pairs between run v and run v ^ mask (for v < v ^ mask), for each mask in [m0, m1).
template <bool kHw>
FC_ALWAYS_INLINE void across_runs_impl(const BlockIndex& bi, const Rules& ru, const uint64_t* masks, size_t m0, size_t m1,
                                       std::vector<Emit>& out) {
  if (!bi.slots.empty()) {
    // Dense value space: for the mask's highest bit t, v runs over the values with bit t clear
    // (so v < v ^ e) in order; both v and v ^ e advance almost sequentially through `slots`.
    const uint64_t* slots = bi.slots.data();
    const uint64_t size = bi.slots.size();
    constexpr uint64_t kScan = 1024;
    uint32_t hit[kScan];
    for (size_t mi = m0; mi < m1; ++mi) {
      const uint64_t e = masks[mi];
      int t = 63;
      while (((e >> t) & 1) == 0) --t;
      const uint64_t half = uint64_t{1} << t;
      for (uint64_t base = 0; base < size; base += 2 * half) {
        for (uint64_t v0 = base; v0 < base + half; v0 += kScan) {
          // Branch-free first pass: keep the values whose run and partner run are both occupied
          // (a branch here would be mispredicted about half the time).
          const uint64_t v1 = std::min(base + half, v0 + kScan);
          size_t found = 0;
          for (uint64_t v = v0; v < v1; ++v) {
            hit[found] = static_cast<uint32_t>(v - v0);
            found += ((slots[v] & 0xFFFFFFFFu) != 0) & ((slots[v ^ e] & 0xFFFFFFFFu) != 0);
          }
          for (size_t f = 0; f < found; ++f) {
            const uint64_t v = v0 + hit[f];
            const uint64_t sv = slots[v], sw = slots[v ^ e];
            const size_t as = sv >> 32, ae = as + (sv & 0xFFFFFFFFu);
            const size_t bs = sw >> 32, be = bs + (sw & 0xFFFFFFFFu);
            for (size_t a = as; a < ae; ++a) {
              for (size_t b = bs; b < be; ++b) compare<kHw>(bi, ru, a, b, out);
            }
          }
        }
      }
    }
    return;
  }
  const size_t D = bi.keys.size();
  for (size_t mi = m0; mi < m1; ++mi) {
    const uint64_t e = masks[mi];
    for (size_t d = 0; d < D; ++d) {
      const uint64_t v = bi.keys[d], w = v ^ e;
      if (w < v) continue;
      const uint32_t d2 = bi.dense[w];
      if (d2 == 0) continue;
      const size_t as = bi.start[d], ae = bi.start[d + 1];
      const size_t bs = bi.start[d2 - 1], be = bi.start[d2];
      for (size_t a = as; a < ae; ++a) {
        for (size_t b = bs; b < be; ++b) compare<kHw>(bi, ru, a, b, out);
      }
    }
  }
}

// Masks grouped by their bits above the tile: all masks of a group send a tile's values to the
// same partner tile, so the two tiles of `slots` stay in cache while the group's masks run.
constexpr int kTileBits = 13;  // 8192 values: two tiles of slots are 128 KiB
struct MaskGroups {
  std::vector<uint64_t> masks;  // sorted by (mask >> kTileBits)
  std::vector<size_t> begin;    // group g is masks[begin[g] .. begin[g + 1])
  std::vector<uint64_t> high;   // mask >> kTileBits of group g
};

MaskGroups group_masks(std::vector<uint64_t> masks) {
  MaskGroups g;
  std::stable_sort(masks.begin(), masks.end(), [](uint64_t a, uint64_t b) { return (a >> kTileBits) < (b >> kTileBits); });
  for (size_t i = 0; i < masks.size(); ++i) {
    if (i == 0 || (masks[i] >> kTileBits) != g.high.back()) {
      g.high.push_back(masks[i] >> kTileBits);
      g.begin.push_back(i);
    }
  }
  g.begin.push_back(masks.size());
  g.masks = std::move(masks);
  return g;
}

// Pairs between the values v of one tile and v ^ e, for every mask e (each unordered pair once:
// from the lower tile, or within a tile from the v whose top bit of e is clear).
template <bool kHw>
FC_ALWAYS_INLINE void across_tile_impl(const BlockIndex& bi, const Rules& ru, const MaskGroups& mg, uint64_t tile,
                                       std::vector<Emit>& out) {
  constexpr uint64_t kTile = uint64_t{1} << kTileBits;
  const uint64_t* slots = bi.slots.data();
  const uint64_t v0 = tile << kTileBits;
  std::vector<uint32_t> hit(kTile);
  for (size_t g = 0; g + 1 < mg.begin.size(); ++g) {
    if ((tile ^ mg.high[g]) < tile) continue;  // that pair of tiles is done from the other side
    const bool same_tile = mg.high[g] == 0;
    for (size_t mi = mg.begin[g]; mi < mg.begin[g + 1]; ++mi) {
      const uint64_t e = mg.masks[mi];
      int t = 63;
      while (((e >> t) & 1) == 0) --t;
      const uint64_t need_clear = same_tile ? (uint64_t{1} << t) : 0;
      // Branch-free first pass: the values whose run and partner run are both occupied (a
      // branch here would be mispredicted about half the time).
      size_t found = 0;
      for (uint64_t k = 0; k < kTile; ++k) {
        const uint64_t v = v0 + k;
        hit[found] = static_cast<uint32_t>(k);
        found += ((v & need_clear) == 0) & ((slots[v] & 0xFFFFFFFFu) != 0) & ((slots[v ^ e] & 0xFFFFFFFFu) != 0);
      }
      for (size_t f = 0; f < found; ++f) {
        const uint64_t v = v0 + hit[f];
        const uint64_t sv = slots[v], sw = slots[v ^ e];
        const size_t as = sv >> 32, ae = as + (sv & 0xFFFFFFFFu);
        const size_t bs = sw >> 32, be = bs + (sw & 0xFFFFFFFFu);
        for (size_t a = as; a < ae; ++a) {
          for (size_t b = bs; b < be; ++b) compare<kHw>(bi, ru, a, b, out);
        }
      }
    }
  }
}

void across_tile_generic(const BlockIndex& bi, const Rules& ru, const MaskGroups& mg, uint64_t tile, std::vector<Emit>& out) {
  across_tile_impl<false>(bi, ru, mg, tile, out);
}
#if FC_POPCNT_DISPATCH
FC_TARGET_POPCNT void across_tile_popcnt(const BlockIndex& bi, const Rules& ru, const MaskGroups& mg, uint64_t tile,
                                         std::vector<Emit>& out) {
  across_tile_impl<true>(bi, ru, mg, tile, out);
}
#endif
void across_tile(const BlockIndex& bi, const Rules& ru, const MaskGroups& mg, uint64_t tile, std::vector<Emit>& out) {
#if FC_POPCNT_DISPATCH
  if (cpu_has_popcnt()) return across_tile_popcnt(bi, ru, mg, tile, out);
#endif
  across_tile_generic(bi, ru, mg, tile, out);
}

void within_runs_generic(const BlockIndex& bi, const Rules& ru, size_t d0, size_t d1, std::vector<Emit>& out) {
  within_runs_impl<false>(bi, ru, d0, d1, out);
}
void across_runs_generic(const BlockIndex& bi, const Rules& ru, const uint64_t* masks, size_t m0, size_t m1,
                         std::vector<Emit>& out) {
  across_runs_impl<false>(bi, ru, masks, m0, m1, out);
}
#if FC_POPCNT_DISPATCH
FC_TARGET_POPCNT void within_runs_popcnt(const BlockIndex& bi, const Rules& ru, size_t d0, size_t d1, std::vector<Emit>& out) {
  within_runs_impl<true>(bi, ru, d0, d1, out);
}
FC_TARGET_POPCNT void across_runs_popcnt(const BlockIndex& bi, const Rules& ru, const uint64_t* masks, size_t m0, size_t m1,
                                         std::vector<Emit>& out) {
  across_runs_impl<true>(bi, ru, masks, m0, m1, out);
}
#endif

void within_runs(const BlockIndex& bi, const Rules& ru, size_t d0, size_t d1, std::vector<Emit>& out) {
#if FC_POPCNT_DISPATCH
  if (cpu_has_popcnt()) return within_runs_popcnt(bi, ru, d0, d1, out);
#endif
  within_runs_generic(bi, ru, d0, d1, out);
}
void across_runs(const BlockIndex& bi, const Rules& ru, const uint64_t* masks, size_t m0, size_t m1, std::vector<Emit>& out) {
#if FC_POPCNT_DISPATCH
  if (cpu_has_popcnt()) return across_runs_popcnt(bi, ru, masks, m0, m1, out);
#endif
  across_runs_generic(bi, ru, masks, m0, m1, out);
}

// Every pair (i, j > i) for rows i in [i0, i1): the reference search.
template <bool kHw>
FC_ALWAYS_INLINE void brute_rows_impl(const HammingQuery& q, int64_t i0, int64_t i1, std::vector<Emit>& o) {
  const bool has2 = q.second != nullptr;
  for (int64_t i = i0; i < i1; ++i) {
    const uint64_t hi = q.hashes[i];
    for (int64_t j = i + 1; j < q.n; ++j) {
      const int d = pc<kHw>(hi ^ q.hashes[j]);
      if (d > q.radius) continue;
      int d2 = 0;
      if (has2) {
        d2 = pc<kHw>(q.second[i] ^ q.second[j]);
        if (d2 > q.radius2) continue;
      }
      if (static_cast<int64_t>(o.size()) >= q.max_pairs) throw_too_many(q.max_pairs, q.radius);
      o.push_back(Emit{static_cast<uint32_t>(i), static_cast<uint32_t>(j), static_cast<uint8_t>(d), static_cast<uint8_t>(d2)});
    }
  }
}
void brute_rows_generic(const HammingQuery& q, int64_t i0, int64_t i1, std::vector<Emit>& o) {
  brute_rows_impl<false>(q, i0, i1, o);
}
#if FC_POPCNT_DISPATCH
FC_TARGET_POPCNT void brute_rows_popcnt(const HammingQuery& q, int64_t i0, int64_t i1, std::vector<Emit>& o) {
  brute_rows_impl<true>(q, i0, i1, o);
}
#endif
void brute_rows(const HammingQuery& q, int64_t i0, int64_t i1, std::vector<Emit>& o) {
#if FC_POPCNT_DISPATCH
  if (cpu_has_popcnt()) return brute_rows_popcnt(q, i0, i1, o);
#endif
  brute_rows_generic(q, i0, i1, o);
}

void check_query(const HammingQuery& q) {
  if (q.n < 0) throw InputError("the number of hashes must be >= 0");
  if (q.n > 0 && q.hashes == nullptr) throw InputError("hashes is null");
  if (q.n >= int64_t{0xFFFFFFFF}) throw InputError("at most 2^32 - 2 hashes per search; split the input by shard");
  if (q.radius < 0 || q.radius > 64) throw InputError("radius must be in [0, 64], got " + std::to_string(q.radius));
  if (q.second != nullptr && (q.radius2 < 0 || q.radius2 > 64)) {
    throw InputError("radius2 must be in [0, 64], got " + std::to_string(q.radius2));
  }
  if (q.max_pairs < 0) throw InputError("max_pairs must be >= 0");
}

// Collects the per-item outputs into sorted pairs; enforces max_pairs.
HammingPairs gather(std::vector<std::vector<Emit>>& parts, bool has2) {
  size_t total = 0;
  for (const auto& p : parts) total += p.size();
  std::vector<Emit> all;
  all.reserve(total);
  for (auto& p : parts) {
    all.insert(all.end(), p.begin(), p.end());
    std::vector<Emit>().swap(p);
  }
  std::sort(all.begin(), all.end(), [](const Emit& a, const Emit& b) { return a.i != b.i ? a.i < b.i : a.j < b.j; });
  HammingPairs r;
  r.i.resize(total);
  r.j.resize(total);
  r.dist.resize(total);
  if (has2) r.dist2.resize(total);
  for (size_t k = 0; k < total; ++k) {
    r.i[k] = all[k].i;
    r.j[k] = all[k].j;
    r.dist[k] = all[k].d;
    if (has2) r.dist2[k] = all[k].d2;
  }
  return r;
}

void check_pair_budget(std::atomic<int64_t>& emitted, size_t added, int64_t max_pairs, int radius) {
  if (emitted.fetch_add(static_cast<int64_t>(added)) + static_cast<int64_t>(added) > max_pairs) {
    throw_too_many(max_pairs, radius);
  }
}

}  // namespace

SearchPlan plan_search(int64_t n, int radius, int blocks) {
  if (radius < 0 || radius > 64) throw InputError("radius must be in [0, 64], got " + std::to_string(radius));
  if (blocks != 0) {
    if (blocks < 1 || blocks > std::min(radius + 1, 64)) {
      throw InputError("blocks must be in [1, radius + 1] = [1, " + std::to_string(std::min(radius + 1, 64)) +
                       "], got " + std::to_string(blocks));
    }
    const SearchPlan p = split(blocks, radius, n);
    if (!plan_feasible(p)) {
      throw InputError(std::to_string(blocks) + " blocks at radius " + std::to_string(radius) +
                       " need a neighbour search inside blocks wider than 24 bits; use more blocks");
    }
    return p;
  }
  SearchPlan best;
  double best_cost = -1;
  for (int m = 1; m <= std::min(radius + 1, 64); ++m) {
    const SearchPlan p = split(m, radius, n);
    if (!plan_feasible(p)) continue;
    // A probe (one value of one mask) costs about 5 comparisons: measured on x86-64 at 2M hashes,
    // radius 10, where 3 blocks make 2.6e9 comparisons and 5.5e9 probes in 2.5x the time that
    // 4 blocks take for 1.3e10 comparisons and 1.4e7 probes (docs/dedup.md).
    const double cost = p.est_candidates + 6.0 * p.est_probes + static_cast<double>(n) * m;
    if (best_cost < 0 || cost < best_cost) {
      best = p;
      best_cost = cost;
    }
  }
  return best;  // m = radius + 1 (all radii 0) is always feasible, so best is set
}

HammingPairs hamming_pairs(const HammingQuery& q, int threads, const CancelToken* cancel) {
  check_query(q);
  const SearchPlan plan = plan_search(q.n, q.radius, q.blocks);
  const bool has2 = q.second != nullptr;
  std::atomic<int64_t> emitted{0};
  std::vector<std::vector<Emit>> parts;
  Rules ru;
  ru.max_pairs = q.max_pairs;
  ru.radius = q.radius;
  ru.radius2 = q.radius2;
  ru.has2 = has2;
  for (int k = 0; k < plan.blocks; ++k) {
    if (q.n < 2) break;
    const int s = plan.radius[k];
    const BlockIndex bi = build_index(q, plan.shift[k], plan.bits[k], s > 0);
    const std::vector<uint64_t> masks = ball_masks(plan.bits[k], s);
    // Work items: chunks of runs for the same-value pairs, then chunks of masks; a fixed split,
    // so the set of pairs each item finds does not depend on the thread count.
    const size_t D = bi.keys.size();
    const size_t run_chunk = std::max<size_t>(1, D / 256 + 1);
    const size_t n_run_items = (D + run_chunk - 1) / run_chunk;
    // Dense value spaces wider than a tile are scanned tile by tile (all masks per tile, for cache
    // reuse); otherwise the masks are the work items.
    const bool tiled = !bi.slots.empty() && plan.bits[k] > kTileBits;
    const MaskGroups groups = tiled ? group_masks(masks) : MaskGroups{};
    const size_t mask_chunk = std::max<size_t>(1, (masks.size() + 4095) / 4096);
    const size_t n_mask_items = tiled ? (bi.slots.size() >> kTileBits) : (masks.size() + mask_chunk - 1) / mask_chunk;
    std::vector<std::vector<Emit>> out(n_run_items + n_mask_items);
    parallel_for_blocks(static_cast<int64_t>(out.size()), threads, cancel, [&](int64_t item) {
      const size_t it = static_cast<size_t>(item);
      std::vector<Emit>& o = out[it];
      if (it < n_run_items) {
        within_runs(bi, ru, it * run_chunk, std::min(D, (it + 1) * run_chunk), o);
      } else if (tiled) {
        across_tile(bi, ru, groups, it - n_run_items, o);
      } else {
        const size_t mi = it - n_run_items;
        across_runs(bi, ru, masks.data(), mi * mask_chunk, std::min(masks.size(), (mi + 1) * mask_chunk), o);
      }
      check_pair_budget(emitted, o.size(), q.max_pairs, q.radius);
    });
    for (auto& o : out) parts.push_back(std::move(o));
    ru.earlier_mask[ru.n_earlier] = low_mask(plan.bits[k]) << plan.shift[k];
    ru.earlier_radius[ru.n_earlier] = s;
    ++ru.n_earlier;
  }
  return gather(parts, has2);
}

HammingPairs hamming_pairs_brute(const HammingQuery& q, int threads, const CancelToken* cancel) {
  check_query(q);
  const bool has2 = q.second != nullptr;
  constexpr int64_t kBlock = 256;
  const int64_t n_blocks = (q.n + kBlock - 1) / kBlock;
  std::vector<std::vector<Emit>> out(static_cast<size_t>(n_blocks));
  std::atomic<int64_t> emitted{0};
  parallel_for_blocks(n_blocks, threads, cancel, [&](int64_t b) {
    std::vector<Emit>& o = out[static_cast<size_t>(b)];
    brute_rows(q, b * kBlock, std::min(q.n, (b + 1) * kBlock), o);
    check_pair_budget(emitted, o.size(), q.max_pairs, q.radius);
  });
  return gather(out, has2);
}

std::vector<int64_t> connected_components(int64_t n, const int64_t* a, const int64_t* b, int64_t m) {
  if (n < 0 || m < 0) throw InputError("sizes must be >= 0");
  std::vector<int64_t> parent(static_cast<size_t>(n));
  for (int64_t v = 0; v < n; ++v) parent[static_cast<size_t>(v)] = v;
  auto find = [&](int64_t v) {
    while (parent[static_cast<size_t>(v)] != v) {
      parent[static_cast<size_t>(v)] = parent[static_cast<size_t>(parent[static_cast<size_t>(v)])];  // path halving
      v = parent[static_cast<size_t>(v)];
    }
    return v;
  };
  for (int64_t k = 0; k < m; ++k) {
    if (a[k] < 0 || a[k] >= n || b[k] < 0 || b[k] >= n) {
      throw InputError("pair " + std::to_string(k) + " = (" + std::to_string(a[k]) + ", " + std::to_string(b[k]) +
                       ") names a row outside [0, " + std::to_string(n) + ")");
    }
    int64_t x = find(a[k]), y = find(b[k]);
    if (x == y) continue;
    if (y < x) std::swap(x, y);
    parent[static_cast<size_t>(y)] = x;  // the smaller vertex is the root: the label is the minimum
  }
  for (int64_t v = 0; v < n; ++v) parent[static_cast<size_t>(v)] = find(v);
  return parent;
}

std::vector<int64_t> best_of_groups(int64_t n, const int64_t* labels, const int64_t* rank) {
  if (n < 0) throw InputError("n must be >= 0");
  std::vector<int64_t> best(static_cast<size_t>(n), -1);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t g = labels[i];
    if (g < 0 || g >= n) {
      throw InputError("label " + std::to_string(g) + " of row " + std::to_string(i) + " is outside [0, " +
                       std::to_string(n) + "); labels must be row indices (e.g. connected_components output)");
    }
    int64_t& b = best[static_cast<size_t>(g)];
    if (b < 0 || rank[i] < rank[b]) b = i;  // rows visited in order: ties keep the smaller row
  }
  std::vector<int64_t> twin(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) twin[static_cast<size_t>(i)] = best[static_cast<size_t>(labels[i])];
  return twin;
}

}  // namespace fastcurate
