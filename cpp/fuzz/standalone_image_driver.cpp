// Drives fuzz_image without libFuzzer (no clang needed), so the target runs under ASan+UBSan in
// every CI run. Random bytes almost never look like an image header, so the inputs are mutations
// (byte flips, 0xFF bursts, cuts, length-field edits, splices) of valid headers of every format,
// plus plain random bytes. Usage: fuzz_image [--iterations=N]
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "../tests/image_samples.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  long iterations = 20000;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--iterations=", 13) == 0) iterations = std::atol(argv[i] + 13);
  }
  const std::vector<samples::Bytes> seeds = {
      samples::jpeg(640, 480),        samples::jpeg(3, 2, 0xC2, 1), samples::png(100, 50),
      samples::gif(8, 8, 4, 4, 9, 9), samples::webp_lossy(30, 20),  samples::webp_lossless(7, 9),
      samples::webp_extended(500, 3), samples::bmp(4, -4),          samples::bmp(2, 3, 12),
  };
  std::mt19937_64 rng(20261202);
  std::vector<uint8_t> buf;
  for (long it = 0; it < iterations; ++it) {
    const size_t pick = rng() % (seeds.size() + 1);
    if (pick == seeds.size()) {
      buf.assign(rng() % 80, 0);
      for (auto& b : buf) b = static_cast<uint8_t>(rng());
    } else {
      buf = seeds[pick];
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits && !buf.empty(); ++e) {
        const size_t at = rng() % buf.size();
        switch (rng() % 6) {
          case 0: buf[at] = static_cast<uint8_t>(rng()); break;                 // random byte
          case 1: buf[at] ^= static_cast<uint8_t>(1u << (rng() % 8)); break;    // bit flip
          case 2: buf.insert(buf.begin() + static_cast<long>(at), 1 + rng() % 4, 0xFF); break;  // fill bytes
          case 3: buf.resize(at); break;                                         // cut
          case 4: buf[at] = static_cast<uint8_t>(rng() % 3 == 0 ? 0 : (rng() % 2 ? 0xFF : 1)); break;  // extreme values
          default: {                                                             // splice another seed
            const samples::Bytes& o = seeds[rng() % seeds.size()];
            buf.insert(buf.begin() + static_cast<long>(at), o.begin(), o.begin() + static_cast<long>(rng() % o.size()));
          }
        }
      }
    }
    LLVMFuzzerTestOneInput(buf.data(), buf.size());
  }
  std::printf("fuzz_image: %ld inputs, no invariant broken\n", iterations);
  return 0;
}
