// Pair mining within groups: see fastcurate/pairs.hpp for the definitions.
#include "fastcurate/pairs.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "fastcurate/parallel.hpp"
#include "fastcurate/simd.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

namespace fastcurate {

float half_to_float(uint16_t h) noexcept {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      mant &= 0x3FFu;
      bits = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | (mant << 13);
    }
  } else if (exp == 0x1Fu) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else {
    bits = sign | ((exp + (127 - 15)) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

const float* half_table() {
  // 256 KB, built once (thread-safe static initialisation): conversion is a load per value.
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t i = 0; i < 65536; ++i) t[i] = half_to_float(static_cast<uint16_t>(i));
    return t;
  }();
  return table.data();
}

// Dot products with eight independent partial sums, lane l taking the elements k = l (mod 8), then
// one fixed reduction order. The AVX2 path below does exactly these float multiplies and adds
// (no fused multiply-add) lane by lane, so both paths give bit-identical results; the order does
// not depend on the thread count either.
float dot_scalar(const float* a, const float* b, int64_t d) noexcept {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t k = 0;
  for (; k + 8 <= d; k += 8) {
    for (int l = 0; l < 8; ++l) acc[l] += a[k + l] * b[k + l];
  }
  for (; k < d; ++k) acc[k & 7] += a[k] * b[k];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

void halves_scalar(const uint16_t* src, float* dst, int64_t d) noexcept {
  const float* t = half_table();
  for (int64_t k = 0; k < d; ++k) dst[k] = t[src[k]];
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FC_PAIRS_AVX2 1
__attribute__((target("avx2"))) float dot_avx2(const float* a, const float* b, int64_t d) noexcept {
  __m256 acc = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= d; k += 8) acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k)));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  for (; k < d; ++k) lanes[k & 7] += a[k] * b[k];
  return ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
}

__attribute__((target("avx2,f16c"))) void halves_f16c(const uint16_t* src, float* dst, int64_t d) noexcept {
  int64_t k = 0;
  for (; k + 8 <= d; k += 8) {
    _mm256_storeu_ps(dst + k, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k))));
  }
  const float* t = half_table();
  for (; k < d; ++k) dst[k] = t[src[k]];
}

bool cpu_has_avx2_f16c() {
  static const bool ok = __builtin_cpu_supports("avx2") != 0 && __builtin_cpu_supports("f16c") != 0;
  return ok;
}
#endif

struct Kernels {
  float (*dot)(const float*, const float*, int64_t) noexcept = dot_scalar;
  void (*halves)(const uint16_t*, float*, int64_t) noexcept = halves_scalar;
};

Kernels pick_kernels() {
  Kernels k;
#ifdef FC_PAIRS_AVX2
  if (simd::enabled() && cpu_has_avx2_f16c()) {
    k.dot = dot_avx2;
    k.halves = halves_f16c;
  }
#endif
  return k;
}

// One modality's rows of a group, made ready on first use (most rows of a large capped group are
// in no chosen pair): float32 (converted from float16 when stored so, else read in place) and the
// squared norm. A row whose squared norm is zero or not finite has no usable vector (NaN scores).
struct GroupVectors {
  const EmbeddingView* e = nullptr;
  const Kernels* kern = nullptr;
  int64_t start = 0;
  std::vector<float> buf;     // converted float16 rows (row r at r * dim)
  std::vector<float> norm2;   // NaN: not yet computed
  std::vector<uint8_t> ready;

  void reset(const EmbeddingView& view, const Kernels& k, int64_t s, int64_t m) {
    e = &view;
    kern = &k;
    start = s;
    ready.assign(static_cast<size_t>(m), 0);
    norm2.resize(static_cast<size_t>(m));
    if (view.f16) buf.resize(static_cast<size_t>(m * view.dim));
  }
  const float* row(int64_t r) {
    const int64_t d = e->dim;
    const float* v;
    if (e->f16) {
      v = buf.data() + r * d;
      if (!ready[static_cast<size_t>(r)]) {
        kern->halves(static_cast<const uint16_t*>(e->data) + (start + r) * d, buf.data() + r * d, d);
      }
    } else {
      v = static_cast<const float*>(e->data) + (start + r) * d;
    }
    if (!ready[static_cast<size_t>(r)]) {
      norm2[static_cast<size_t>(r)] = kern->dot(v, v, d);
      ready[static_cast<size_t>(r)] = 1;
    }
    return v;
  }
  bool ok(int64_t r) {
    row(r);
    const float n = norm2[static_cast<size_t>(r)];
    return n > 0 && std::isfinite(n);
  }
};

// The cosine of rows qa (of a) and tb (of b): their dot over the product of the norms.
float cosine(GroupVectors& a, int64_t qa, GroupVectors& b, int64_t tb) {
  if (!a.ok(qa) || !b.ok(tb)) return kNaN;
  const float ab = a.kern->dot(a.row(qa), b.row(tb), a.e->dim);
  return static_cast<float>(static_cast<double>(ab) /
                            std::sqrt(static_cast<double>(a.norm2[static_cast<size_t>(qa)]) *
                                      static_cast<double>(b.norm2[static_cast<size_t>(tb)])));
}

struct Cand {
  uint64_t prio;
  int32_t i, j;
};

inline bool cand_less(const Cand& a, const Cand& b) noexcept {
  if (a.prio != b.prio) return a.prio < b.prio;
  if (a.i != b.i) return a.i < b.i;
  return a.j < b.j;
}

float jaccard(const uint64_t* a, int64_t na, const uint64_t* b, int64_t nb) noexcept {
  if (na == 0 || nb == 0) return kNaN;
  int64_t x = 0, y = 0, both = 0;
  while (x < na && y < nb) {
    if (a[x] == b[y]) {
      ++both;
      ++x;
      ++y;
    } else if (a[x] < b[y]) {
      ++x;
    } else {
      ++y;
    }
  }
  return static_cast<float>(static_cast<double>(both) / static_cast<double>(na + nb - both));
}

void check_input(const PairInput& in) {
  if (in.n < 0 || in.n_groups < 0) throw InputError("n and n_groups must be >= 0");
  if (in.group_starts == nullptr) throw InputError("group_starts is required");
  if (in.n > 0 && in.uid_hash == nullptr) throw InputError("uid_hash is required");
  if (in.group_starts[0] != 0 || in.group_starts[in.n_groups] != in.n) {
    throw InputError("group_starts must start at 0 and end at the number of rows (" + std::to_string(in.n) +
                     "), got " + std::to_string(in.group_starts[0]) + " .. " + std::to_string(in.group_starts[in.n_groups]));
  }
  for (int64_t g = 0; g < in.n_groups; ++g) {
    const int64_t m = in.group_starts[g + 1] - in.group_starts[g];
    if (m < 0) {
      throw InputError("group_starts must be non-decreasing; group_starts[" + std::to_string(g + 1) + "] < group_starts[" +
                       std::to_string(g) + "]");
    }
    if (m > (int64_t{1} << 31) - 1) throw InputError("a group of " + std::to_string(m) + " rows is too large (max 2^31-1)");
  }
  for (const EmbeddingView* e : {&in.image, &in.text}) {
    if (e->data != nullptr && e->dim < 1) throw InputError("an embedding must have at least one dimension");
  }
  if (in.cross) {
    if (in.image.data == nullptr || in.text.data == nullptr) throw InputError("cross scores need image and text embeddings");
    if (in.image.dim != in.text.dim) {
      throw InputError("cross scores need image and text embeddings of one size (one CLIP space), got " +
                       std::to_string(in.image.dim) + " and " + std::to_string(in.text.dim));
    }
  }
  if (in.label_offsets != nullptr) {
    if (in.label_offsets[0] != 0) throw InputError("label_offsets must start at 0");
    for (int64_t r = 0; r < in.n; ++r) {
      const int64_t a = in.label_offsets[r], b = in.label_offsets[r + 1];
      if (b < a) throw InputError("label_offsets must be non-decreasing (row " + std::to_string(r) + ")");
      for (int64_t k = a + 1; k < b; ++k) {
        if (!(in.labels[k - 1] < in.labels[k])) {
          throw InputError("the label ids of row " + std::to_string(r) +
                           " are not sorted and unique; pass np.unique of each row's ids");
        }
      }
    }
  }
}

}  // namespace

PairOutput mine_pairs(const PairInput& in, int threads, const CancelToken* cancel) {
  check_input(in);
  const int64_t cap = in.max_pairs_per_group;
  // Pass 1: how many pairs each group keeps, hence where each group writes.
  std::vector<int64_t> out_start(static_cast<size_t>(in.n_groups) + 1, 0);
  int64_t possible = 0;
  for (int64_t g = 0; g < in.n_groups; ++g) {
    const int64_t m = in.group_starts[g + 1] - in.group_starts[g];
    const int64_t all = m * (m - 1) / 2;
    possible += all;
    out_start[static_cast<size_t>(g) + 1] = out_start[static_cast<size_t>(g)] + (cap > 0 ? std::min(cap, all) : all);
  }
  const int64_t total = out_start[static_cast<size_t>(in.n_groups)];
  PairOutput out;
  out.possible = possible;
  out.query.resize(static_cast<size_t>(total));
  out.target.resize(static_cast<size_t>(total));
  out.group.resize(static_cast<size_t>(total));
  out.priority.resize(static_cast<size_t>(total));
  const bool has_img = in.image.data != nullptr, has_txt = in.text.data != nullptr;
  const bool has_lab = in.label_offsets != nullptr;
  out.image_sim.assign(static_cast<size_t>(total), kNaN);
  out.text_sim.assign(static_cast<size_t>(total), kNaN);
  out.query_image_target_text.assign(static_cast<size_t>(total), kNaN);
  out.query_text_target_image.assign(static_cast<size_t>(total), kNaN);
  out.label_overlap.assign(static_cast<size_t>(total), kNaN);
  half_table();  // built before the workers start
  const Kernels kern = pick_kernels();

  // Pass 2, in blocks of groups holding about kBlockRows rows each (a large group is a block).
  constexpr int64_t kBlockRows = 2048;
  std::vector<int64_t> blocks{0};
  for (int64_t g = 0, rows = 0; g < in.n_groups; ++g) {
    rows += in.group_starts[g + 1] - in.group_starts[g];
    if (rows >= kBlockRows) {
      blocks.push_back(g + 1);
      rows = 0;
    }
  }
  if (blocks.back() != in.n_groups) blocks.push_back(in.n_groups);
  const int64_t n_blocks = static_cast<int64_t>(blocks.size()) - 1;

  parallel_for_blocks(n_blocks, threads, cancel, [&](int64_t b) {
    GroupVectors img, txt;
    std::vector<Cand> cands;
    for (int64_t g = blocks[static_cast<size_t>(b)]; g < blocks[static_cast<size_t>(b) + 1]; ++g) {
      const int64_t s = in.group_starts[g];
      const int64_t m = in.group_starts[g + 1] - s;
      const int64_t o = out_start[static_cast<size_t>(g)];
      const int64_t k = out_start[static_cast<size_t>(g) + 1] - o;
      if (k == 0) continue;
      const int64_t all = m * (m - 1) / 2;
      const uint64_t* uh = in.uid_hash + s;
      cands.clear();
      if (k == all) {
        cands.reserve(static_cast<size_t>(all));
        for (int32_t i = 0; i < m; ++i) {
          for (int32_t j = i + 1; j < m; ++j) cands.push_back({pair_priority(uh[i], uh[j], in.seed), i, j});
        }
        std::sort(cands.begin(), cands.end(), cand_less);
      } else {
        // The k smallest of the m(m-1)/2 candidates with a bounded max-heap: O(P log k) time, O(k) memory.
        cands.reserve(static_cast<size_t>(k));
        for (int32_t i = 0; i < m; ++i) {
          for (int32_t j = i + 1; j < m; ++j) {
            const Cand c{pair_priority(uh[i], uh[j], in.seed), i, j};
            if (static_cast<int64_t>(cands.size()) < k) {
              cands.push_back(c);
              std::push_heap(cands.begin(), cands.end(), cand_less);
            } else if (cand_less(c, cands.front())) {
              std::pop_heap(cands.begin(), cands.end(), cand_less);
              cands.back() = c;
              std::push_heap(cands.begin(), cands.end(), cand_less);
            }
          }
        }
        std::sort_heap(cands.begin(), cands.end(), cand_less);
      }
      if (has_img) img.reset(in.image, kern, s, m);
      if (has_txt) txt.reset(in.text, kern, s, m);
      for (int64_t p = 0; p < k; ++p) {
        const Cand& c = cands[static_cast<size_t>(p)];
        // lo: the smaller uid hash (the earlier row on a tie); the priority's top bit picks the query
        const bool i_lo = uh[c.i] <= uh[c.j];
        const int32_t lo = i_lo ? c.i : c.j, hi = i_lo ? c.j : c.i;
        const int32_t q = (c.prio >> 63) ? hi : lo;
        const int32_t t = q == lo ? hi : lo;
        const size_t at = static_cast<size_t>(o + p);
        out.query[at] = s + q;
        out.target[at] = s + t;
        out.group[at] = g;
        out.priority[at] = c.prio;
        if (has_img) out.image_sim[at] = cosine(img, q, img, t);
        if (has_txt) out.text_sim[at] = cosine(txt, q, txt, t);
        if (in.cross) {
          out.query_image_target_text[at] = cosine(img, q, txt, t);
          out.query_text_target_image[at] = cosine(txt, q, img, t);
        }
        if (has_lab) {
          const int64_t qa = in.label_offsets[s + q], qb = in.label_offsets[s + q + 1];
          const int64_t ta = in.label_offsets[s + t], tb = in.label_offsets[s + t + 1];
          out.label_overlap[at] = jaccard(in.labels + qa, qb - qa, in.labels + ta, tb - ta);
        }
      }
    }
  });
  return out;
}

}  // namespace fastcurate
