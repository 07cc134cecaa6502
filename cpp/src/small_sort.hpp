// Sorting the few ids that one caption matches, without data-dependent branches.
//
// Why: a caption matches about 10-20 entries, and their ids arrive in no useful order. An
// insertion sort plus std::unique mispredicts a branch about once per id (the simulator counts
// 13-14 mispredictions per caption, about a fifth of the matcher's time). Here each id's rank is
// counted by comparing it with all the ids at once (the rank of a[i] is the number of ids smaller
// than it plus the number of equal ids before it, so the ranks are a permutation and the sort is
// stable), the ids are stored at their ranks, and repeats are dropped without branching:
//   - AVX-512 (chosen at run time where the CPU has it): up to 64 ids, 16 per vector, compares
//     into masks, a scatter, and a compressing store for the repeats;
//   - SSE2 (every x86-64): up to 16 ids in 4 vectors; up to 32 as two halves and a merge;
//   - otherwise, and for more ids, std::sort.
// simd::set_enabled(false) forces std::sort, so the tests can compare the paths.
#pragma once

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "fastcurate/simd.hpp"

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define FC_SMALL_SORT_SSE2 1
#endif
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#endif

namespace fastcurate {
namespace detail {

#ifdef FC_SMALL_SORT_SSE2
// kAfter[j] has all bits set in lanes i > j (of 16 lanes in 4 vectors).
struct AfterMasks {
  int32_t m[16][16];
  constexpr AfterMasks() : m() {
    for (int j = 0; j < 16; ++j) {
      for (int i = 0; i < 16; ++i) m[j][i] = i > j ? -1 : 0;
    }
  }
};
alignas(16) inline constexpr AfterMasks kAfter{};

// Sorts in[0, k), k <= 4 * NV <= 16, into out[0, k); out[k] = INT32_MAX (a sentinel for
// merge_runs). NV vectors of 4 lanes hold the ids, so the work grows with k.
template <int NV>
inline void rank_sort(const int32_t* in, size_t k, int32_t* out) {
  // The ids were just stored one by one (the automaton writes them): the vectors are assembled
  // from scalar loads, each forwarded from its store, rather than loaded whole, which would wait
  // for those stores to reach the cache (a store cannot be forwarded to a wider load).
  alignas(16) int32_t v[4 * NV];
  for (size_t i = 0; i < 4 * NV; ++i) v[i] = i < k ? in[i] : INT32_MAX;  // padding: never ranked
  __m128i vv[NV], c[NV];
  for (int m = 0; m < NV; ++m) {
    vv[m] = _mm_setr_epi32(v[4 * m], v[4 * m + 1], v[4 * m + 2], v[4 * m + 3]);
    c[m] = _mm_setzero_si128();
  }
  for (size_t j = 0; j < k; ++j) {
    const __m128i x = _mm_set1_epi32(v[j]);
    const __m128i* after = reinterpret_cast<const __m128i*>(kAfter.m[j]);
    // Lane i counts a[j] if a[j] < a[i], or a[j] == a[i] and j < i (compares give -1: subtract).
    for (int m = 0; m < NV; ++m) {
      c[m] = _mm_sub_epi32(c[m], _mm_or_si128(_mm_cmpgt_epi32(vv[m], x), _mm_and_si128(_mm_cmpeq_epi32(vv[m], x), after[m])));
    }
  }
  alignas(16) int32_t rank[4 * NV];
  for (int m = 0; m < NV; ++m) _mm_store_si128(reinterpret_cast<__m128i*>(rank + 4 * m), c[m]);
  for (size_t i = 0; i < k; ++i) out[rank[i]] = v[i];
  out[k] = INT32_MAX;
}

inline void rank_sort16(const int32_t* in, size_t k, int32_t* out) {
  switch ((k + 3) / 4) {
    case 0:
    case 1:
      rank_sort<1>(in, k, out);
      break;
    case 2:
      rank_sort<2>(in, k, out);
      break;
    case 3:
      rank_sort<3>(in, k, out);
      break;
    default:
      rank_sort<4>(in, k, out);
      break;
  }
}
#endif

// Merges sorted a[0, na) and b[0, nb), each followed by an INT32_MAX sentinel and holding only
// smaller values, into out[0, na + nb).
inline void merge_runs(const int32_t* a, size_t na, const int32_t* b, size_t nb, int32_t* out) {
  size_t i = 0, j = 0;
  for (size_t o = 0; o < na + nb; ++o) {
    const int32_t x = a[i], y = b[j];
    const bool take_a = x <= y;
    out[o] = take_a ? x : y;
    i += take_a;
    j += !take_a;
  }
}

// Copies sorted s[0, k) to out without repeats; returns the count.
inline size_t copy_unique(const int32_t* s, size_t k, int32_t* out) {
  out[0] = s[0];
  size_t w = 1;
  for (size_t i = 1; i < k; ++i) {
    out[w] = s[i];
    w += s[i] != s[i - 1];
  }
  return w;
}

#ifdef FC_SMALL_SORT_SSE2
// 2 <= k <= 32: ranks by SSE2 compares (two halves and a merge above 16).
inline size_t sort_unique_sse2(int32_t* a, size_t k) {
  alignas(16) int32_t t[34];
  if (k <= 16) {
    rank_sort16(a, k, t);
    return copy_unique(t, k, a);
  }
  alignas(16) int32_t m[32];
  rank_sort16(a, 16, t);                // t[0, 16), sentinel t[16]
  rank_sort16(a + 16, k - 16, t + 17);  // t[17, k + 1), sentinel after
  merge_runs(t, 16, t + 17, k - 16, m);
  return copy_unique(m, k, a);
}
#endif

// The same with AVX-512 (chosen at run time where the CPU has it): 16 ids per vector, up to 64,
// compares into masks, and repeats dropped by a compressing store.
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FC_SMALL_SORT_AVX512 1
template <int NV>
__attribute__((target("avx512f"))) inline size_t sort_unique_avx512_n(int32_t* a, size_t k) {
  const __m512i pad = _mm512_set1_epi32(INT32_MAX);
  const __m512i one = _mm512_set1_epi32(1);
  __m512i v[NV], c[NV];
  for (int m = 0; m < NV; ++m) {
    const size_t lo = 16 * static_cast<size_t>(m);
    const size_t n = k > lo ? std::min<size_t>(16, k - lo) : 0;
    v[m] = _mm512_mask_loadu_epi32(pad, static_cast<__mmask16>((uint32_t{1} << n) - 1), a + lo);
    c[m] = _mm512_setzero_si512();
  }
  for (size_t j = 0; j < k; ++j) {
    const __m512i x = _mm512_set1_epi32(a[j]);
    for (int m = 0; m < NV; ++m) {
      // Lanes i > j of vector m: all lanes when j < 16m, none when j >= 16m + 15.
      const int64_t sh = static_cast<int64_t>(j) + 1 - 16 * m;
      const __mmask16 after = static_cast<__mmask16>(sh <= 0 ? 0xffffu : sh >= 16 ? 0u : (0xffffu << sh) & 0xffffu);
      const __mmask16 inc = _mm512_cmpgt_epi32_mask(v[m], x) | _mm512_mask_cmpeq_epi32_mask(after, v[m], x);
      c[m] = _mm512_mask_add_epi32(c[m], inc, c[m], one);
    }
  }
  alignas(64) int32_t t[16 * NV + 1];
  t[0] = -1;  // ids are >= 0: t[1 + i] differs from the one before it when i == 0
  for (int m = 0; m < NV; ++m) {
    const size_t lo = 16 * static_cast<size_t>(m);
    const size_t n = k > lo ? std::min<size_t>(16, k - lo) : 0;
    _mm512_mask_i32scatter_epi32(t + 1, static_cast<__mmask16>((uint32_t{1} << n) - 1), c[m], v[m], 4);
  }
  size_t w = 0;
  for (int m = 0; m < NV; ++m) {
    const size_t lo = 16 * static_cast<size_t>(m);
    const size_t n = k > lo ? std::min<size_t>(16, k - lo) : 0;
    const __mmask16 live = static_cast<__mmask16>((uint32_t{1} << n) - 1);
    const __m512i cur = _mm512_loadu_si512(t + 1 + lo);
    const __m512i prev = _mm512_loadu_si512(t + lo);
    const __mmask16 keep = _mm512_mask_cmpneq_epi32_mask(live, cur, prev);
    _mm512_mask_compressstoreu_epi32(a + w, keep, cur);
    w += static_cast<size_t>(__builtin_popcount(keep));
  }
  return w;
}

// Up to 16 ids in one vector, without the scatter and the store-to-load round trip through
// memory that sort_unique_avx512_n takes (a scatter followed by a full-width load of what it
// wrote cannot be forwarded and stalls). With ranks counted as "ids strictly smaller", repeats
// share a rank, so id j goes to lane rank_j by a masked move (writing a repeat again to the same
// lane changes nothing), and the lanes written, in order, are the sorted ids without repeats: one
// compressing store. Ids are < INT32_MAX, so the padding lanes are never counted as smaller.
__attribute__((target("avx512f"))) inline size_t sort_unique_avx512_16(int32_t* a, size_t k) {
  // The ids were just stored one by one (the automaton writes them); a vector load of them would
  // wait for those stores to reach the cache (a store cannot be forwarded to a wider load), so
  // the vector is assembled from one-lane loads, each forwarded from its store.
  __m512i v = _mm512_set1_epi32(INT32_MAX);
  for (size_t j = 0; j < k; ++j) v = _mm512_mask_set1_epi32(v, static_cast<__mmask16>(uint32_t{1} << j), a[j]);
  __m512i out = v;  // every lane that matters is overwritten
  uint32_t written = 0;
  for (size_t j = 0; j < k; ++j) {
    const __m512i x = _mm512_set1_epi32(a[j]);
    const uint32_t rank = static_cast<uint32_t>(__builtin_popcount(static_cast<uint32_t>(_mm512_cmplt_epi32_mask(v, x))));
    const uint32_t lane = uint32_t{1} << rank;
    written |= lane;
    out = _mm512_mask_mov_epi32(out, static_cast<__mmask16>(lane), x);
  }
  _mm512_mask_compressstoreu_epi32(a, static_cast<__mmask16>(written), out);
  return static_cast<size_t>(__builtin_popcount(written));
}

inline bool cpu_has_avx512() {
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}
#endif

// Sorts a[0, k) ascending and drops repeats; returns the new length. Values must be in
// [0, INT32_MAX) (entry ids are).
inline size_t sort_unique_ids(int32_t* a, size_t k) {
  if (k <= 1) return k;
  if (simd::enabled()) {
#ifdef FC_SMALL_SORT_AVX512
    if (k <= 64 && cpu_has_avx512()) {
      if (k <= 16) return sort_unique_avx512_16(a, k);
      if (k <= 32) return sort_unique_avx512_n<2>(a, k);
      return sort_unique_avx512_n<4>(a, k);
    }
#endif
#ifdef FC_SMALL_SORT_SSE2
    if (k <= 32) return sort_unique_sse2(a, k);
#endif
  }
  std::sort(a, a + k);
  return static_cast<size_t>(std::unique(a, a + k) - a);
}

}  // namespace detail
}  // namespace fastcurate
