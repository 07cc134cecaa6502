// Dense row-major building blocks shared by the clustering kernels (silhouette, SemDeDup):
// packing of fp16 / fp32 / fp64 rows into padded buffers, C = A * B^T on small tiles, and exact
// dot products.
//
// Why not BLAS: the core links nothing but the C++ standard library, and every caller here uses
// tiles of at most a few hundred rows that it reduces at once (segment sums, thresholds), so a
// register-blocked micro-kernel with a run-time choice of AVX-512 / AVX2+FMA / portable code is
// enough. The wheel is built without -march flags; the AVX paths are compiled with per-function
// target attributes and picked with __builtin_cpu_supports, so one binary runs on any x86-64.
//
// Internal header (not installed): the public APIs are silhouette.hpp and semdedup.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fastcurate/embeddings.hpp"

namespace fastcurate {
namespace dense {

// Packed rows are padded with zeros to a multiple of kPad elements, so the micro-kernels never
// need a tail loop and every path sums the same number of terms.
constexpr int64_t kPad = 16;
inline int64_t padded(int64_t d) { return (d + kPad - 1) / kPad * kPad; }

enum class Isa { Scalar, Avx2, Avx512 };
// The best ISA of this CPU, or Scalar when fastcurate::simd is disabled (tests compare paths).
Isa active_isa();
const char* isa_name(Isa isa);

// Converts row i of `x` to double (exact for every input type).
void row_to_double(const Rows& x, int64_t i, double* out);
// Converts IEEE binary16 bit patterns to float (exact).
void half_to_float(const uint16_t* src, float* dst, int64_t n);

// Packs rows idx[0..m) of `x` (or rows first..first+m when idx is null) as doubles into
// out[r * ld ..], zero-padded to ld >= padded(d). With `normalize`, each row is divided by its L2
// norm (computed in double; an all-zero row stays zero, as sklearn's normalize leaves it).
// norms2, when not null, receives the squared L2 norm of each packed row as stored.
void pack_double(const Rows& x, const int64_t* idx, int64_t first, int64_t m, bool normalize, double* out,
                 int64_t ld, double* norms2);

// G[i * ldg + j] <- sqrt(max(0, na[i] + nb[j] - 2 G[i * ldg + j])): Euclidean distances from a
// Gram tile and squared norms. sqrt is correctly rounded on every path, so paths agree exactly.
void dist_from_gram(double* G, int64_t m, int64_t n, int64_t ldg, const double* na, const double* nb);

// Throws InputError naming row i of x (global index: x.index_base + i) and its first NaN or
// infinite column. pack_double calls it for a row whose squared norm is not finite.
[[noreturn]] void throw_not_finite(const Rows& x, int64_t i);

// C[i * ldc + j] = sum_t A[i * lda + t] * B[j * ldb + t] for i < m, j < n, t < dp.
// dp must be a multiple of kPad; rows must be readable for dp elements.
// Thread-safe (no state). Every path is deterministic; paths differ from each other only by
// rounding (they sum the terms in different orders).
void gemm_nt(const float* A, int64_t lda, int64_t m, const float* B, int64_t ldb, int64_t n, int64_t dp, float* C,
             int64_t ldc);
void gemm_nt(const double* A, int64_t lda, int64_t m, const double* B, int64_t ldb, int64_t n, int64_t dp, double* C,
             int64_t ldc);

// Row i of x as float (out, d values) with, in double: *sumsq = the sum of its squares (summed in
// any order: exact for fp16 rows whose result is below 15, see exact_dot) and, when cen is not
// null, *cen_dot = its dot product with cen (d doubles; any order, not exact).
void row_float_stats(const Rows& x, int64_t i, float* out, double* sumsq, const double* cen, double* cen_dot);
// out[t] = float(double(in[t]) * scale) for t < d.
void scale_to_float(const float* in, int64_t d, double scale, float* out);

// Panel form of C = A * B^T for float tiles of 64 x 64, without horizontal sums: both blocks are
// packed transposed (panel[t * 64 + j] = row j's element t, zero rows beyond the block's end)
// and each output row accumulates 64 columns at once (AVX-512: 6 rows x 64 columns of
// accumulators, A's elements broadcast from its panel). Each output is one chain of dp fused
// multiply-adds. Only where panel_kernel() is true (AVX-512 and SIMD enabled); callers use
// gemm_nt otherwise.
bool panel_kernel();
// C[i * 64 + j] = sum_t A_panel[t * 64 + i] * B_panel[t * 64 + j] for i < m, j < 64.
void gemm_panel64(const float* A_panel, int64_t m, const float* B_panel, int64_t dp, float* C);

// The exact dot product of row i of `x` and row j of `y`, correctly rounded to double: every
// product of two fp16 / fp32 values is exact in double, and ExactSum adds them without error.
// About 10x slower than a plain loop; callers use it only to settle values near a threshold.
// f16_small: both rows are fp16 with squared norms below 16 (then a plain sum is already exact).
double exact_dot(const Rows& x, int64_t i, const Rows& y, int64_t j, bool f16_small = false);

// Exact (correctly rounded) sum of doubles, Shewchuk's algorithm as used by Python's math.fsum:
// results are bit-identical to math.fsum for finite inputs whose partial sums do not overflow.
class ExactSum {
 public:
  void add(double v);
  double result() const;
  void clear() { parts_.clear(); }

 private:
  std::vector<double> parts_;
};

}  // namespace dense
}  // namespace fastcurate
