// Perceptual hashes in exact integer arithmetic (definitions in phash.hpp and docs/dedup.md).
#include "fastcurate/phash.hpp"

#include <algorithm>
#include <array>
#include <string>

#include "fastcurate/parallel.hpp"

namespace fastcurate {

// round(4096 * cos(pi * u * (2x + 1) / 64)); no entry lies within 1e-6 of a rounding tie, so the
// table is the same whichever libm computes it (tests/test_image_hash.py recomputes it).
const int32_t kPhashDct[8][32] = {
    {4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096},
    {4091, 4052, 3973, 3857, 3703, 3513, 3290, 3035, 2751, 2440, 2106, 1751, 1380, 995, 601, 201, -201, -601, -995, -1380, -1751, -2106, -2440, -2751, -3035, -3290, -3513, -3703, -3857, -3973, -4052, -4091},
    {4076, 3920, 3612, 3166, 2598, 1931, 1189, 401, -401, -1189, -1931, -2598, -3166, -3612, -3920, -4076, -4076, -3920, -3612, -3166, -2598, -1931, -1189, -401, 401, 1189, 1931, 2598, 3166, 3612, 3920, 4076},
    {4052, 3703, 3035, 2106, 995, -201, -1380, -2440, -3290, -3857, -4091, -3973, -3513, -2751, -1751, -601, 601, 1751, 2751, 3513, 3973, 4091, 3857, 3290, 2440, 1380, 201, -995, -2106, -3035, -3703, -4052},
    {4017, 3406, 2276, 799, -799, -2276, -3406, -4017, -4017, -3406, -2276, -799, 799, 2276, 3406, 4017, 4017, 3406, 2276, 799, -799, -2276, -3406, -4017, -4017, -3406, -2276, -799, 799, 2276, 3406, 4017},
    {3973, 3035, 1380, -601, -2440, -3703, -4091, -3513, -2106, -201, 1751, 3290, 4052, 3857, 2751, 995, -995, -2751, -3857, -4052, -3290, -1751, 201, 2106, 3513, 4091, 3703, 2440, 601, -1380, -3035, -3973},
    {3920, 2598, 401, -1931, -3612, -4076, -3166, -1189, 1189, 3166, 4076, 3612, 1931, -401, -2598, -3920, -3920, -2598, -401, 1931, 3612, 4076, 3166, 1189, -1189, -3166, -4076, -3612, -1931, 401, 2598, 3920},
    {3857, 2106, -601, -3035, -4091, -3290, -995, 1751, 3703, 3973, 2440, -201, -2751, -4052, -3513, -1380, 1380, 3513, 4052, 2751, 201, -2440, -3973, -3703, -1751, 995, 3290, 4091, 3035, 601, -2106, -3857},
};

namespace {

// Overlap weights of one axis: input index i covers output cells first[i] .. first[i]+count[i]-1
// with weights w[offset[i] + t] (in units of 1/n pixel).
struct AxisWeights {
  std::vector<int32_t> first, count;
  std::vector<int64_t> offset, w;
};

AxisWeights axis_weights(int64_t L, int n) {
  AxisWeights a;
  a.first.resize(static_cast<size_t>(L));
  a.count.resize(static_cast<size_t>(L));
  a.offset.resize(static_cast<size_t>(L));
  for (int64_t i = 0; i < L; ++i) {
    const int64_t lo = i * n, hi = (i + 1) * n;  // pixel i in 1/n units
    const int64_t k0 = lo / L, k1 = (hi - 1) / L;
    a.first[static_cast<size_t>(i)] = static_cast<int32_t>(k0);
    a.count[static_cast<size_t>(i)] = static_cast<int32_t>(k1 - k0 + 1);
    a.offset[static_cast<size_t>(i)] = static_cast<int64_t>(a.w.size());
    for (int64_t k = k0; k <= k1; ++k) a.w.push_back(std::min((k + 1) * L, hi) - std::max(k * L, lo));
  }
  return a;
}

void check_image(const GrayImage& img) {
  if (img.height < 1 || img.width < 1) {
    throw InputError("cannot hash an empty image (" + std::to_string(img.height) + "x" + std::to_string(img.width) +
                     "); drop rows whose image failed to decode before hashing");
  }
  if (img.stride < img.width) throw InputError("image stride is smaller than its width");
  if (img.height > kMaxHashPixels / img.width) {
    throw InputError("image of " + std::to_string(img.height) + "x" + std::to_string(img.width) +
                     " pixels is too large to hash (limit 2^40 pixels)");
  }
}

}  // namespace

std::vector<int64_t> box_sums(const GrayImage& img, int rows, int cols) {
  check_image(img);
  const AxisWeights wy = axis_weights(img.height, rows);
  const AxisWeights wx = axis_weights(img.width, cols);
  std::vector<int64_t> S(static_cast<size_t>(rows) * static_cast<size_t>(cols), 0);
  std::vector<int64_t> R(static_cast<size_t>(cols));
  for (int64_t y = 0; y < img.height; ++y) {
    const uint8_t* row = img.data + y * img.stride;
    std::fill(R.begin(), R.end(), 0);
    for (int64_t x = 0; x < img.width; ++x) {
      const size_t xs = static_cast<size_t>(x);
      const int64_t p = row[x];
      const int64_t* w = &wx.w[static_cast<size_t>(wx.offset[xs])];
      int64_t* r = &R[static_cast<size_t>(wx.first[xs])];
      for (int32_t t = 0; t < wx.count[xs]; ++t) r[t] += w[t] * p;
    }
    const size_t ys = static_cast<size_t>(y);
    for (int32_t t = 0; t < wy.count[ys]; ++t) {
      const int64_t w = wy.w[static_cast<size_t>(wy.offset[ys] + t)];
      int64_t* s = &S[static_cast<size_t>(wy.first[ys] + t) * static_cast<size_t>(cols)];
      for (int c = 0; c < cols; ++c) s[c] += w * R[static_cast<size_t>(c)];
    }
  }
  return S;
}

uint64_t phash(const GrayImage& img) {
  const std::vector<int64_t> S = box_sums(img, 32, 32);
  const int64_t area = img.height * img.width;
  std::array<int64_t, 32 * 32> P;
  for (size_t i = 0; i < P.size(); ++i) P[i] = (256 * S[i] + area / 2) / area;
  std::array<int64_t, 32 * 8> T{};  // T[y][v] = sum_x Q[v][x] * P[y][x]
  for (int y = 0; y < 32; ++y) {
    for (int v = 0; v < 8; ++v) {
      int64_t acc = 0;
      for (int x = 0; x < 32; ++x) acc += int64_t{kPhashDct[v][x]} * P[static_cast<size_t>(y * 32 + x)];
      T[static_cast<size_t>(y * 8 + v)] = acc;
    }
  }
  std::array<int64_t, 64> C{};  // C[u][v] = sum_y Q[u][y] * T[y][v]
  for (int u = 0; u < 8; ++u) {
    for (int v = 0; v < 8; ++v) {
      int64_t acc = 0;
      for (int y = 0; y < 32; ++y) acc += int64_t{kPhashDct[u][y]} * T[static_cast<size_t>(y * 8 + v)];
      C[static_cast<size_t>(u * 8 + v)] = acc;
    }
  }
  std::array<int64_t, 64> s = C;
  std::nth_element(s.begin(), s.begin() + 32, s.end());
  const int64_t upper = s[32];
  const int64_t lower = *std::max_element(s.begin(), s.begin() + 32);  // c(31)
  const int64_t twice_median = lower + upper;
  uint64_t h = 0;
  for (int k = 0; k < 64; ++k) {
    if (2 * C[static_cast<size_t>(k)] > twice_median) h |= uint64_t{1} << (63 - k);
  }
  return h;
}

uint64_t dhash(const GrayImage& img) {
  const std::vector<int64_t> S = box_sums(img, 8, 9);
  uint64_t h = 0;
  for (int r = 0; r < 8; ++r) {
    for (int c = 0; c < 8; ++c) {
      const size_t i = static_cast<size_t>(r * 9 + c);
      if (S[i + 1] > S[i]) h |= uint64_t{1} << (63 - (r * 8 + c));
    }
  }
  return h;
}

void perceptual_hashes(const GrayImage* imgs, int64_t n, uint64_t* phash_out, uint64_t* dhash_out, int threads,
                       const CancelToken* cancel) {
  constexpr int64_t kBlock = 16;
  parallel_for_blocks((n + kBlock - 1) / kBlock, threads, cancel, [&](int64_t b) {
    const int64_t end = std::min(n, (b + 1) * kBlock);
    for (int64_t i = b * kBlock; i < end; ++i) {
      try {
        if (phash_out != nullptr) phash_out[i] = phash(imgs[i]);
        if (dhash_out != nullptr) dhash_out[i] = dhash(imgs[i]);
      } catch (const InputError& e) {
        throw InputError("image " + std::to_string(i) + ": " + e.what());
      }
    }
  });
}

}  // namespace fastcurate
