// Fuzz target of the image kernels, which read untrusted bytes:
//  * image_size() on the raw input must stay inside the buffer (ASan) and keep its invariants;
//  * the input read as a small grayscale image must hash without error, and pixel replication
//    must not change either hash;
//  * the input read as 64-bit hashes: the multi-index search must equal the brute force.
//
// Build with clang: cmake -DFASTCURATE_BUILD_TESTS=ON -DFASTCURATE_LIBFUZZER=ON
//   -DCMAKE_CXX_COMPILER=clang++ ... && ./fuzz_image -max_total_time=60
// Without clang, standalone_image_driver.cpp feeds it mutated image headers.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <tuple>
#include <vector>

#include "fastcurate/hamming.hpp"
#include "fastcurate/image_size.hpp"
#include "fastcurate/phash.hpp"

using namespace fastcurate;

static void fail(const char* what) {
  std::fprintf(stderr, "fuzz_image: invariant broken: %s\n", what);
  std::abort();
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // 1. Header sizes: copy to an exact-size heap buffer so ASan sees any over-read.
  std::vector<uint8_t> exact(data, data + size);
  const ImageSize s = image_size(exact.empty() ? nullptr : exact.data(), exact.size());
  if (s.status == SizeStatus::Ok) {
    if (s.width < 1 || s.height < 1 || s.format == ImageFormat::Unknown) fail("ok size out of range");
  } else if (s.width != 0 || s.height != 0) {
    fail("size reported with a failure status");
  }
  if (static_cast<int>(s.status) >= kSizeStatusCount || static_cast<int>(s.format) >= kImageFormatCount) fail("code");

  if (size < 3) return 0;
  // 2. A small grayscale image from the bytes.
  const int64_t h = 1 + data[0] % 37, w = 1 + data[1] % 37;
  std::vector<uint8_t> px(static_cast<size_t>(h * w));
  for (size_t i = 0; i < px.size(); ++i) px[i] = data[2 + i % (size - 2)];
  GrayImage g{px.data(), h, w, w};
  const uint64_t ph = phash(g), dh = dhash(g);
  std::vector<uint8_t> big(static_cast<size_t>(4 * h * w));
  for (int64_t y = 0; y < 2 * h; ++y) {
    for (int64_t x = 0; x < 2 * w; ++x) big[static_cast<size_t>(y * 2 * w + x)] = px[static_cast<size_t>((y / 2) * w + x / 2)];
  }
  GrayImage g2{big.data(), 2 * h, 2 * w, 2 * w};
  if (phash(g2) != ph || dhash(g2) != dh) fail("pixel replication changed a hash");

  // 3. The bytes as hashes (8 per hash), a radius and a second-hash radius from the first bytes.
  const size_t n = (size - 2) / 8;
  std::vector<uint64_t> hs(n), h2(n);
  for (size_t i = 0; i < n; ++i) {
    std::memcpy(&hs[i], data + 2 + 8 * i, 8);
    h2[i] = (hs[i] << 7) | (hs[i] >> 57);
  }
  HammingQuery q;
  q.hashes = hs.data();
  q.n = static_cast<int64_t>(n);
  q.radius = data[0] % 65;
  if (data[1] & 1) {
    q.second = h2.data();
    q.radius2 = data[1] % 65;
  }
  // Two threads now and then only: a thread start is costly under ASan.
  const HammingPairs a = hamming_pairs(q, (data[2] & 7) == 0 ? 2 : 1), b = hamming_pairs_brute(q, 1);
  if (a.i != b.i || a.j != b.j || a.dist != b.dist || a.dist2 != b.dist2) fail("multi-index search != brute force");
  return 0;
}
