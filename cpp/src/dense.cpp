// Dense kernels: see dense.hpp for the contract.
#include "dense.hpp"

#include <cmath>
#include <cstring>
#include <string>

#include "fastcurate/common.hpp"
#include "fastcurate/simd.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FC_DENSE_X86 1
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
// GCC 12's AVX-512 intrinsics build their "undefined" operands by self-initialisation, which its
// own -Wuninitialized then reports inside the system header (GCC bug 105593, fixed in 13).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#else
#define FC_DENSE_X86 0
#endif

namespace fastcurate {
namespace dense {

// ---------------------------------------------------------------------------------------------
// ISA choice.

namespace {

Isa detect_isa() {
#if FC_DENSE_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) return Isa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
    return Isa::Avx2;
  }
#endif
  return Isa::Scalar;
}

}  // namespace

Isa active_isa() {
  static const Isa best = detect_isa();
  return simd::enabled() ? best : Isa::Scalar;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512:
      return "avx512";
    case Isa::Avx2:
      return "avx2";
    default:
      return "scalar";
  }
}

// ---------------------------------------------------------------------------------------------
// fp16 conversion.

namespace {

float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t man = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: value = man * 2^-24, exact in float
      const float v = static_cast<float>(man) * 5.9604644775390625e-08f;
      std::memcpy(&bits, &v, 4);
      bits |= sign;
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | (man << 13);
  } else {
    bits = sign | ((exp + 112u) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

#if FC_DENSE_X86
__attribute__((target("avx,f16c"))) void half_to_float_f16c(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) dst[i] = half_bits_to_float(src[i]);
}
#endif

}  // namespace

void half_to_float(const uint16_t* src, float* dst, int64_t n) {
#if FC_DENSE_X86
  if (active_isa() != Isa::Scalar) {
    half_to_float_f16c(src, dst, n);
    return;
  }
#endif
  for (int64_t i = 0; i < n; ++i) dst[i] = half_bits_to_float(src[i]);
}

void row_to_double(const Rows& x, int64_t i, double* out) {
  const int64_t off = i * x.stride;
  switch (x.dtype) {
    case DType::F16: {
      const auto* p = static_cast<const uint16_t*>(x.data) + off;
      for (int64_t t = 0; t < x.d; ++t) out[t] = static_cast<double>(half_bits_to_float(p[t]));
      break;
    }
    case DType::F32: {
      const auto* p = static_cast<const float*>(x.data) + off;
      for (int64_t t = 0; t < x.d; ++t) out[t] = static_cast<double>(p[t]);
      break;
    }
    case DType::F64: {
      const auto* p = static_cast<const double*>(x.data) + off;
      for (int64_t t = 0; t < x.d; ++t) out[t] = p[t];
      break;
    }
  }
}

void throw_not_finite(const Rows& x, int64_t i) {
  std::vector<double> buf(static_cast<size_t>(x.d));
  row_to_double(x, i, buf.data());
  int64_t col = 0;
  const char* what = "too large (its squared norm overflows)";
  for (int64_t t = 0; t < x.d; ++t) {
    const double v = buf[static_cast<size_t>(t)];
    if (!std::isfinite(v)) {
      col = t;
      what = std::isnan(v) ? "NaN" : "infinite";
      break;
    }
  }
  throw InputError("embedding row " + std::to_string(i + x.index_base) + " column " + std::to_string(col) + " is " +
                   what + "; drop or re-embed that row (np.isfinite(x).all(axis=1) finds every such row)");
}

void pack_double(const Rows& x, const int64_t* idx, int64_t first, int64_t m, bool normalize, double* out,
                 int64_t ld, double* norms2) {
  for (int64_t r = 0; r < m; ++r) {
    const int64_t i = idx != nullptr ? idx[r] : first + r;
    double* o = out + r * ld;
    row_to_double(x, i, o);
    for (int64_t t = x.d; t < ld; ++t) o[t] = 0.0;
    double s = 0.0;
    for (int64_t t = 0; t < x.d; ++t) s += o[t] * o[t];
    if (!std::isfinite(s)) throw_not_finite(x, i);
    if (normalize && s > 0.0) {
      const double nrm = std::sqrt(s);
      s = 0.0;
      for (int64_t t = 0; t < x.d; ++t) {
        o[t] /= nrm;
        s += o[t] * o[t];
      }
    }
    if (norms2 != nullptr) norms2[r] = s;
  }
}

namespace {
#if FC_DENSE_X86
__attribute__((target("avx512f,avx512dq,fma"))) void dist512(double* G, int64_t m, int64_t n, int64_t ldg,
                                                              const double* na, const double* nb) {
  const __m512d zero = _mm512_setzero_pd();
  const __m512d two = _mm512_set1_pd(2.0);
  for (int64_t i = 0; i < m; ++i) {
    double* g = G + i * ldg;
    const __m512d a = _mm512_set1_pd(na[i]);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
      // (a + b) - 2g in the same order as the scalar path: no FMA contraction here.
      const __m512d s = _mm512_add_pd(a, _mm512_loadu_pd(nb + j));
      const __m512d v = _mm512_sub_pd(s, _mm512_mul_pd(two, _mm512_loadu_pd(g + j)));
      _mm512_storeu_pd(g + j, _mm512_sqrt_pd(_mm512_max_pd(v, zero)));
    }
    for (; j < n; ++j) {
      const double v = (na[i] + nb[j]) - 2.0 * g[j];
      g[j] = std::sqrt(v > 0.0 ? v : 0.0);
    }
  }
}
#endif
}  // namespace

void dist_from_gram(double* G, int64_t m, int64_t n, int64_t ldg, const double* na, const double* nb) {
#if FC_DENSE_X86
  if (active_isa() == Isa::Avx512) {
    dist512(G, m, n, ldg, na, nb);
    return;
  }
#endif
  for (int64_t i = 0; i < m; ++i) {
    double* g = G + i * ldg;
    for (int64_t j = 0; j < n; ++j) {
      const double v = (na[i] + nb[j]) - 2.0 * g[j];
      g[j] = std::sqrt(v > 0.0 ? v : 0.0);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// C = A * B^T micro-kernels. Each computes an MR x NR tile with one vector accumulator per
// output, vectorised along the (padded) inner dimension, then reduces each accumulator.

namespace {

template <class T>
void micro_scalar(const T* A, int64_t lda, int mr, const T* B, int64_t ldb, int nr, int64_t dp, T* C, int64_t ldc) {
  for (int r = 0; r < mr; ++r) {
    for (int c = 0; c < nr; ++c) {
      const T* a = A + r * lda;
      const T* b = B + c * ldb;
      T s = 0;
      for (int64_t t = 0; t < dp; ++t) s += a[t] * b[t];
      C[r * ldc + c] = s;
    }
  }
}

#if FC_DENSE_X86

// Horizontal sums written out (GCC 12's _mm512_reduce_add_* trips -Wuninitialized).
__attribute__((target("avx512f,avx512dq,fma"))) inline float hsum512(__m512 v) {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
  return _mm_cvtss_f32(s);
}

__attribute__((target("avx512f,avx512dq,fma"))) inline double hsum512d(__m512d v) {
  const __m256d h = _mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1));
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
  s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
  return _mm_cvtsd_f64(s);
}

template <int MR, int NR>
__attribute__((target("avx512f,avx512dq,fma"))) inline void micro512_f(const float* A, int64_t lda, const float* B,
                                                                        int64_t ldb, int64_t dp, float* C,
                                                                        int64_t ldc) {
  __m512 acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t t = 0; t < dp; t += 16) {
    __m512 a[MR];
    for (int r = 0; r < MR; ++r) a[r] = _mm512_loadu_ps(A + r * lda + t);
    for (int c = 0; c < NR; ++c) {
      const __m512 b = _mm512_loadu_ps(B + c * ldb + t);
      for (int r = 0; r < MR; ++r) acc[r][c] = _mm512_fmadd_ps(a[r], b, acc[r][c]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) C[r * ldc + c] = hsum512(acc[r][c]);
}

template <int MR, int NR>
__attribute__((target("avx512f,avx512dq,fma"))) inline void micro512_d(const double* A, int64_t lda, const double* B,
                                                                        int64_t ldb, int64_t dp, double* C,
                                                                        int64_t ldc) {
  __m512d acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) acc[r][c] = _mm512_setzero_pd();
  for (int64_t t = 0; t < dp; t += 8) {
    __m512d a[MR];
    for (int r = 0; r < MR; ++r) a[r] = _mm512_loadu_pd(A + r * lda + t);
    for (int c = 0; c < NR; ++c) {
      const __m512d b = _mm512_loadu_pd(B + c * ldb + t);
      for (int r = 0; r < MR; ++r) acc[r][c] = _mm512_fmadd_pd(a[r], b, acc[r][c]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) C[r * ldc + c] = hsum512d(acc[r][c]);
}

__attribute__((target("avx2,fma"))) inline float hsum256(__m256 v) {
  const __m128 lo = _mm256_castps256_ps128(v);
  const __m128 hi = _mm256_extractf128_ps(v, 1);
  __m128 s = _mm_add_ps(lo, hi);
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
  return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) inline double hsum256d(__m256d v) {
  const __m128d lo = _mm256_castpd256_pd128(v);
  const __m128d hi = _mm256_extractf128_pd(v, 1);
  __m128d s = _mm_add_pd(lo, hi);
  s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
  return _mm_cvtsd_f64(s);
}

template <int MR, int NR>
__attribute__((target("avx2,fma"))) inline void micro256_f(const float* A, int64_t lda, const float* B, int64_t ldb,
                                                            int64_t dp, float* C, int64_t ldc) {
  __m256 acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) acc[r][c] = _mm256_setzero_ps();
  for (int64_t t = 0; t < dp; t += 8) {
    __m256 a[MR];
    for (int r = 0; r < MR; ++r) a[r] = _mm256_loadu_ps(A + r * lda + t);
    for (int c = 0; c < NR; ++c) {
      const __m256 b = _mm256_loadu_ps(B + c * ldb + t);
      for (int r = 0; r < MR; ++r) acc[r][c] = _mm256_fmadd_ps(a[r], b, acc[r][c]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) C[r * ldc + c] = hsum256(acc[r][c]);
}

template <int MR, int NR>
__attribute__((target("avx2,fma"))) inline void micro256_d(const double* A, int64_t lda, const double* B,
                                                            int64_t ldb, int64_t dp, double* C, int64_t ldc) {
  __m256d acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) acc[r][c] = _mm256_setzero_pd();
  for (int64_t t = 0; t < dp; t += 4) {
    __m256d a[MR];
    for (int r = 0; r < MR; ++r) a[r] = _mm256_loadu_pd(A + r * lda + t);
    for (int c = 0; c < NR; ++c) {
      const __m256d b = _mm256_loadu_pd(B + c * ldb + t);
      for (int r = 0; r < MR; ++r) acc[r][c] = _mm256_fmadd_pd(a[r], b, acc[r][c]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) C[r * ldc + c] = hsum256d(acc[r][c]);
}

// Tile drivers: full MR x NR tiles, then the edges with smaller instantiations.
#define FC_EDGE_CASES(KERNEL)                                    \
  switch (mr * 8 + nr) {                                         \
    case 1 * 8 + 1: KERNEL<1, 1>(a, lda, b, ldb, dp, c, ldc); break; \
    case 1 * 8 + 2: KERNEL<1, 2>(a, lda, b, ldb, dp, c, ldc); break; \
    case 1 * 8 + 3: KERNEL<1, 3>(a, lda, b, ldb, dp, c, ldc); break; \
    case 1 * 8 + 4: KERNEL<1, 4>(a, lda, b, ldb, dp, c, ldc); break; \
    case 2 * 8 + 1: KERNEL<2, 1>(a, lda, b, ldb, dp, c, ldc); break; \
    case 2 * 8 + 2: KERNEL<2, 2>(a, lda, b, ldb, dp, c, ldc); break; \
    case 2 * 8 + 3: KERNEL<2, 3>(a, lda, b, ldb, dp, c, ldc); break; \
    case 2 * 8 + 4: KERNEL<2, 4>(a, lda, b, ldb, dp, c, ldc); break; \
    case 3 * 8 + 1: KERNEL<3, 1>(a, lda, b, ldb, dp, c, ldc); break; \
    case 3 * 8 + 2: KERNEL<3, 2>(a, lda, b, ldb, dp, c, ldc); break; \
    case 3 * 8 + 3: KERNEL<3, 3>(a, lda, b, ldb, dp, c, ldc); break; \
    case 3 * 8 + 4: KERNEL<3, 4>(a, lda, b, ldb, dp, c, ldc); break; \
    case 4 * 8 + 1: KERNEL<4, 1>(a, lda, b, ldb, dp, c, ldc); break; \
    case 4 * 8 + 2: KERNEL<4, 2>(a, lda, b, ldb, dp, c, ldc); break; \
    case 4 * 8 + 3: KERNEL<4, 3>(a, lda, b, ldb, dp, c, ldc); break; \
    default: KERNEL<4, 4>(a, lda, b, ldb, dp, c, ldc); break;       \
  }

__attribute__((target("avx512f,avx512dq,fma"))) void gemm512_f(const float* A, int64_t lda, int64_t m, const float* B,
                                                                int64_t ldb, int64_t n, int64_t dp, float* C,
                                                                int64_t ldc) {
  for (int64_t i = 0; i < m; i += 4) {
    const int mr = static_cast<int>(m - i < 4 ? m - i : 4);
    for (int64_t j = 0; j < n; j += 4) {
      const int nr = static_cast<int>(n - j < 4 ? n - j : 4);
      const float* a = A + i * lda;
      const float* b = B + j * ldb;
      float* c = C + i * ldc + j;
      FC_EDGE_CASES(micro512_f)
    }
  }
}

__attribute__((target("avx512f,avx512dq,fma"))) void gemm512_d(const double* A, int64_t lda, int64_t m,
                                                                const double* B, int64_t ldb, int64_t n, int64_t dp,
                                                                double* C, int64_t ldc) {
  for (int64_t i = 0; i < m; i += 4) {
    const int mr = static_cast<int>(m - i < 4 ? m - i : 4);
    for (int64_t j = 0; j < n; j += 4) {
      const int nr = static_cast<int>(n - j < 4 ? n - j : 4);
      const double* a = A + i * lda;
      const double* b = B + j * ldb;
      double* c = C + i * ldc + j;
      FC_EDGE_CASES(micro512_d)
    }
  }
}

// AVX2 has 16 vector registers: 2 x 4 tiles keep the 8 accumulators, 2 rows and a column in them.
#define FC_EDGE_CASES_2x4(KERNEL)                                   \
  switch (mr * 8 + nr) {                                            \
    case 1 * 8 + 1: KERNEL<1, 1>(a, lda, b, ldb, dp, c, ldc); break; \
    case 1 * 8 + 2: KERNEL<1, 2>(a, lda, b, ldb, dp, c, ldc); break; \
    case 1 * 8 + 3: KERNEL<1, 3>(a, lda, b, ldb, dp, c, ldc); break; \
    case 1 * 8 + 4: KERNEL<1, 4>(a, lda, b, ldb, dp, c, ldc); break; \
    case 2 * 8 + 1: KERNEL<2, 1>(a, lda, b, ldb, dp, c, ldc); break; \
    case 2 * 8 + 2: KERNEL<2, 2>(a, lda, b, ldb, dp, c, ldc); break; \
    case 2 * 8 + 3: KERNEL<2, 3>(a, lda, b, ldb, dp, c, ldc); break; \
    default: KERNEL<2, 4>(a, lda, b, ldb, dp, c, ldc); break;       \
  }

__attribute__((target("avx2,fma"))) void gemm256_f(const float* A, int64_t lda, int64_t m, const float* B,
                                                    int64_t ldb, int64_t n, int64_t dp, float* C, int64_t ldc) {
  for (int64_t i = 0; i < m; i += 2) {
    const int mr = static_cast<int>(m - i < 2 ? m - i : 2);
    for (int64_t j = 0; j < n; j += 4) {
      const int nr = static_cast<int>(n - j < 4 ? n - j : 4);
      const float* a = A + i * lda;
      const float* b = B + j * ldb;
      float* c = C + i * ldc + j;
      FC_EDGE_CASES_2x4(micro256_f)
    }
  }
}

__attribute__((target("avx2,fma"))) void gemm256_d(const double* A, int64_t lda, int64_t m, const double* B,
                                                    int64_t ldb, int64_t n, int64_t dp, double* C, int64_t ldc) {
  for (int64_t i = 0; i < m; i += 2) {
    const int mr = static_cast<int>(m - i < 2 ? m - i : 2);
    for (int64_t j = 0; j < n; j += 4) {
      const int nr = static_cast<int>(n - j < 4 ? n - j : 4);
      const double* a = A + i * lda;
      const double* b = B + j * ldb;
      double* c = C + i * ldc + j;
      FC_EDGE_CASES_2x4(micro256_d)
    }
  }
}

#undef FC_EDGE_CASES
#undef FC_EDGE_CASES_2x4
#endif  // FC_DENSE_X86

template <class T>
void gemm_scalar(const T* A, int64_t lda, int64_t m, const T* B, int64_t ldb, int64_t n, int64_t dp, T* C,
                 int64_t ldc) {
  for (int64_t i = 0; i < m; i += 4) {
    const int mr = static_cast<int>(m - i < 4 ? m - i : 4);
    for (int64_t j = 0; j < n; j += 4) {
      const int nr = static_cast<int>(n - j < 4 ? n - j : 4);
      micro_scalar<T>(A + i * lda, lda, mr, B + j * ldb, ldb, nr, dp, C + i * ldc + j, ldc);
    }
  }
}

}  // namespace

void gemm_nt(const float* A, int64_t lda, int64_t m, const float* B, int64_t ldb, int64_t n, int64_t dp, float* C,
             int64_t ldc) {
#if FC_DENSE_X86
  switch (active_isa()) {
    case Isa::Avx512:
      gemm512_f(A, lda, m, B, ldb, n, dp, C, ldc);
      return;
    case Isa::Avx2:
      gemm256_f(A, lda, m, B, ldb, n, dp, C, ldc);
      return;
    default:
      break;
  }
#endif
  gemm_scalar<float>(A, lda, m, B, ldb, n, dp, C, ldc);
}

void gemm_nt(const double* A, int64_t lda, int64_t m, const double* B, int64_t ldb, int64_t n, int64_t dp, double* C,
             int64_t ldc) {
#if FC_DENSE_X86
  switch (active_isa()) {
    case Isa::Avx512:
      gemm512_d(A, lda, m, B, ldb, n, dp, C, ldc);
      return;
    case Isa::Avx2:
      gemm256_d(A, lda, m, B, ldb, n, dp, C, ldc);
      return;
    default:
      break;
  }
#endif
  gemm_scalar<double>(A, lda, m, B, ldb, n, dp, C, ldc);
}

// ---------------------------------------------------------------------------------------------
// Row statistics for the SemDeDup packing pass.

namespace {
#if FC_DENSE_X86
__attribute__((target("avx512f,avx512dq,fma,f16c"))) void row_stats512(const Rows& x, int64_t i, float* out,
                                                                        double* sumsq, const double* cen,
                                                                        double* cen_dot) {
  const int64_t d = x.d;
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd(), c0 = _mm512_setzero_pd(), c1 = _mm512_setzero_pd();
  int64_t t = 0;
  for (; t + 16 <= d; t += 16) {
    __m512 v;
    if (x.dtype == DType::F16) {
      v = _mm512_cvtph_ps(_mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(x.data) + i * x.stride + t)));
    } else {
      v = _mm512_loadu_ps(static_cast<const float*>(x.data) + i * x.stride + t);
    }
    _mm512_storeu_ps(out + t, v);
    const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    s0 = _mm512_fmadd_pd(lo, lo, s0);
    s1 = _mm512_fmadd_pd(hi, hi, s1);
    if (cen != nullptr) {
      c0 = _mm512_fmadd_pd(lo, _mm512_loadu_pd(cen + t), c0);
      c1 = _mm512_fmadd_pd(hi, _mm512_loadu_pd(cen + t + 8), c1);
    }
  }
  double s = hsum512d(_mm512_add_pd(s0, s1));
  double c = hsum512d(_mm512_add_pd(c0, c1));
  for (; t < d; ++t) {
    const float f = x.dtype == DType::F16 ? half_bits_to_float(static_cast<const uint16_t*>(x.data)[i * x.stride + t])
                                          : static_cast<const float*>(x.data)[i * x.stride + t];
    out[t] = f;
    s += static_cast<double>(f) * static_cast<double>(f);
    if (cen != nullptr) c += static_cast<double>(f) * cen[t];
  }
  *sumsq = s;
  if (cen_dot != nullptr) *cen_dot = c;
}

__attribute__((target("avx512f,avx512dq,fma"))) void scale512(const float* in, int64_t d, double scale, float* out) {
  const __m512d k = _mm512_set1_pd(scale);
  int64_t t = 0;
  for (; t + 8 <= d; t += 8) {
    const __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(in + t));
    _mm256_storeu_ps(out + t, _mm512_cvtpd_ps(_mm512_mul_pd(v, k)));
  }
  for (; t < d; ++t) out[t] = static_cast<float>(static_cast<double>(in[t]) * scale);
}
#endif
}  // namespace

void row_float_stats(const Rows& x, int64_t i, float* out, double* sumsq, const double* cen, double* cen_dot) {
#if FC_DENSE_X86
  if (active_isa() == Isa::Avx512 && x.dtype != DType::F64) {
    row_stats512(x, i, out, sumsq, cen, cen_dot);
    return;
  }
#endif
  thread_local std::vector<double> row;
  row.resize(static_cast<size_t>(x.d));
  row_to_double(x, i, row.data());
  double s0 = 0.0, s1 = 0.0, c = 0.0;
  int64_t t = 0;
  for (; t + 2 <= x.d; t += 2) {
    s0 += row[static_cast<size_t>(t)] * row[static_cast<size_t>(t)];
    s1 += row[static_cast<size_t>(t + 1)] * row[static_cast<size_t>(t + 1)];
  }
  if (t < x.d) s0 += row[static_cast<size_t>(t)] * row[static_cast<size_t>(t)];
  for (t = 0; t < x.d; ++t) {
    out[t] = static_cast<float>(row[static_cast<size_t>(t)]);
    if (cen != nullptr) c += row[static_cast<size_t>(t)] * cen[t];
  }
  *sumsq = s0 + s1;
  if (cen_dot != nullptr) *cen_dot = c;
}

void scale_to_float(const float* in, int64_t d, double scale, float* out) {
#if FC_DENSE_X86
  if (active_isa() == Isa::Avx512) {
    scale512(in, d, scale, out);
    return;
  }
#endif
  for (int64_t t = 0; t < d; ++t) out[t] = static_cast<float>(static_cast<double>(in[t]) * scale);
}

// ---------------------------------------------------------------------------------------------
// Panel kernel.

bool panel_kernel() { return active_isa() == Isa::Avx512; }

namespace {
#if FC_DENSE_X86
template <int MR>
__attribute__((target("avx512f,avx512dq,fma"))) inline void panel_micro(const float* A, const float* Bt, int64_t dp,
                                                                         float* C) {
  __m512 acc[MR][4];
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < 4; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t t = 0; t < dp; ++t) {
    const float* b = Bt + t * 64;
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16), b2 = _mm512_loadu_ps(b + 32),
                 b3 = _mm512_loadu_ps(b + 48);
    const float* a = A + t * 64;
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(a[r]);
      acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(av, b2, acc[r][2]);
      acc[r][3] = _mm512_fmadd_ps(av, b3, acc[r][3]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < 4; ++c) _mm512_storeu_ps(C + r * 64 + c * 16, acc[r][c]);
}

__attribute__((target("avx512f,avx512dq,fma"))) void panel512(const float* A, int64_t m, const float* Bt, int64_t dp,
                                                               float* C) {
  int64_t i = 0;
  for (; i + 6 <= m; i += 6) panel_micro<6>(A + i, Bt, dp, C + i * 64);
  switch (m - i) {
    case 5: panel_micro<5>(A + i, Bt, dp, C + i * 64); break;
    case 4: panel_micro<4>(A + i, Bt, dp, C + i * 64); break;
    case 3: panel_micro<3>(A + i, Bt, dp, C + i * 64); break;
    case 2: panel_micro<2>(A + i, Bt, dp, C + i * 64); break;
    case 1: panel_micro<1>(A + i, Bt, dp, C + i * 64); break;
    default: break;
  }
}
#endif
}  // namespace

void gemm_panel64(const float* A, int64_t m, const float* Bt, int64_t dp, float* C) {
#if FC_DENSE_X86
  if (panel_kernel()) {
    panel512(A, m, Bt, dp, C);
    return;
  }
#endif
  for (int64_t i = 0; i < m; ++i) {  // portable fallback (callers normally use gemm_nt instead)
    for (int64_t j = 0; j < 64; ++j) {
      float acc = 0.0f;
      for (int64_t t = 0; t < dp; ++t) acc += A[t * 64 + i] * Bt[t * 64 + j];
      C[i * 64 + j] = acc;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Exact sums and dot products.

void ExactSum::add(double x) {
  // Shewchuk's grow-expansion: parts_ stays a list of non-overlapping doubles, smallest first,
  // whose exact sum is the exact sum of everything added so far.
  size_t i = 0;
  for (size_t k = 0; k < parts_.size(); ++k) {
    double y = parts_[k];
    if (std::fabs(x) < std::fabs(y)) std::swap(x, y);
    const double hi = x + y;
    const double lo = y - (hi - x);
    if (lo != 0.0) parts_[i++] = lo;
    x = hi;
  }
  parts_.resize(i);
  parts_.push_back(x);
}

double ExactSum::result() const {
  // Round the expansion to the nearest double, ties to even across partials (as math.fsum).
  size_t n = parts_.size();
  if (n == 0) return 0.0;
  double hi = parts_[--n];
  double lo = 0.0;
  while (n > 0) {
    const double x = hi;
    const double y = parts_[--n];
    hi = x + y;
    const double yr = hi - x;
    lo = y - yr;
    if (lo != 0.0) break;
  }
  if (n > 0 && ((lo < 0.0 && parts_[n - 1] < 0.0) || (lo > 0.0 && parts_[n - 1] > 0.0))) {
    const double y = lo * 2.0;
    const double x = hi + y;
    const double yr = x - hi;
    if (y == yr) hi = x;
  }
  return hi;
}

double exact_dot(const Rows& x, int64_t i, const Rows& y, int64_t j, bool f16_small) {
  thread_local std::vector<double> a, b;
  a.resize(static_cast<size_t>(x.d));
  b.resize(static_cast<size_t>(y.d));
  row_to_double(x, i, a.data());
  row_to_double(y, j, b.data());
  const size_t d = static_cast<size_t>(x.d);
  if (f16_small) {
    // fp16 values are multiples of 2^-24, their products of 2^-48; with both squared norms below
    // 16 every partial sum is below 16 in magnitude (Cauchy-Schwarz), so it fits in 53 bits and
    // no addition rounds, in any order.
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    size_t t = 0;
    for (; t + 4 <= d; t += 4) {
      s0 += a[t] * b[t];
      s1 += a[t + 1] * b[t + 1];
      s2 += a[t + 2] * b[t + 2];
      s3 += a[t + 3] * b[t + 3];
    }
    for (; t < d; ++t) s0 += a[t] * b[t];
    return (s0 + s1) + (s2 + s3);
  }
  const bool wide = x.dtype == DType::F64 || y.dtype == DType::F64;
  if (!wide) {
    // Every product of fp16 / fp32 values is exact in double. Accumulate them in double-double
    // (TwoSum into hi, the error into lo): if lo never rounds, hi + lo is the exact sum and one
    // IEEE addition rounds it correctly. Fails only for sums spanning more than ~100 bits.
    double hi = 0.0, lo = 0.0;
    bool exact = true;
    for (size_t t = 0; t < d && exact; ++t) {
      const double p = a[t] * b[t];
      const double s = hi + p;
      const double bb = s - hi;
      const double e = (hi - (s - bb)) + (p - bb);
      hi = s;
      const double l2 = lo + e;
      const double cc = l2 - lo;
      exact = ((lo - (l2 - cc)) + (e - cc)) == 0.0;
      lo = l2;
    }
    if (exact) return hi + lo;
  }
  ExactSum s;
  for (size_t t = 0; t < d; ++t) {
    const double p = a[t] * b[t];
    s.add(p);
    // A product of two doubles is not exact in double: add its rounding error too (FMA trick).
    if (wide) s.add(std::fma(a[t], b[t], -p));
  }
  return s.result();
}

}  // namespace dense

const char* dense_isa_name() { return dense::isa_name(dense::active_isa()); }

}  // namespace fastcurate
