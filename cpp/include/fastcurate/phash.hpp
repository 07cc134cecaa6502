// 64-bit perceptual hashes (pHash, dHash) of 8-bit grayscale images, in exact integer arithmetic.
//
// The definitions (docs/dedup.md has the derivation and the Python reference in tests/ computes
// the same bits with numpy):
//
//   box sums   S = A_rows(H) . img . A_cols(W)^T, where A_n(L)[k][i] is the length of the overlap
//              of output cell k, [k*L/n, (k+1)*L/n), with input pixel i, [i, i+1), measured in
//              units of 1/n pixel: max(0, min((k+1)*L, (i+1)*n) - max(k*L, i*n)). Each output
//              cell is the exact area average of the image times H*W (box filter with fractional
//              coverage; works for any size >= 1x1, up- or down-scaling).
//   pHash      S on a 32x32 grid; P = floor((256*S + floor(H*W/2)) / (H*W)) (the area-mean pixel
//              in 1/256 units, rounded half up); C = Q . P . Q^T with the 8x32 integer DCT-II
//              table Q[u][x] = round(4096 * cos(pi*u*(2x+1)/64)); bit k = 8u+v is set when
//              2*C[u][v] > c(31) + c(32), c sorted ascending (C[u][v] above the median of the 64
//              low-frequency coefficients, DC included, as imagehash.phash does).
//   dHash      S on an 8-row x 9-column grid; bit k = 8r+c is set when S[r][c+1] > S[r][c]
//              (brightness increases to the right, as imagehash.dhash does).
//
// Bit k is stored at position 63-k of the uint64, so the hash printed as 16 hex digits reads in
// the same order as imagehash's hex strings. Everything is integer: identical on every platform.
#pragma once

#include <cstdint>
#include <vector>

#include "fastcurate/common.hpp"

namespace fastcurate {

// A row-major 8-bit grayscale image; `stride` is the distance in bytes between rows (>= width).
struct GrayImage {
  const uint8_t* data = nullptr;
  int64_t height = 0;
  int64_t width = 0;
  int64_t stride = 0;
};

// Largest accepted image: keeps every intermediate sum inside int64 (255 * 256 * H * W < 2^63).
constexpr int64_t kMaxHashPixels = int64_t{1} << 40;

// The integer DCT-II table used by phash (exposed so the tests can check it against cos()).
extern const int32_t kPhashDct[8][32];

// Exact box sums of `img` on a rows x cols grid, row-major (rows*cols values). Throws InputError
// for an empty or oversized image.
std::vector<int64_t> box_sums(const GrayImage& img, int rows, int cols);

uint64_t phash(const GrayImage& img);
uint64_t dhash(const GrayImage& img);

// Both hashes of every image, in parallel (0 threads = all cores).
void perceptual_hashes(const GrayImage* imgs, int64_t n, uint64_t* phash_out, uint64_t* dhash_out, int threads,
                       const CancelToken* cancel = nullptr);

}  // namespace fastcurate
