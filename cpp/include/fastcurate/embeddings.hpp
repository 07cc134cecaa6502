// A view over a row-major matrix of embeddings, shared by the clustering kernels
// (silhouette.hpp, semdedup.hpp). No Python headers (see DESIGN.md).
#pragma once

#include <cstdint>

namespace fastcurate {

// Element type of an embedding matrix. F16 is IEEE binary16 given as its 16-bit pattern.
enum class DType { F16, F32, F64 };

// A row-major matrix (not owned): row i starts at element i * stride of `data`.
struct Rows {
  const void* data = nullptr;
  DType dtype = DType::F32;
  int64_t n = 0;       // rows
  int64_t d = 0;       // columns
  int64_t stride = 0;  // elements between rows (>= d)
  int64_t index_base = 0;  // global index of row 0, for error messages (chunks of a larger matrix)
};

// The vector instruction set the dense kernels use on this CPU ("avx512", "avx2" or "scalar";
// "scalar" also when fastcurate::simd is disabled).
const char* dense_isa_name();

}  // namespace fastcurate
