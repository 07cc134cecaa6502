// Drives a fuzz target with random inputs when libFuzzer (clang) is not available, so that the
// target is exercised under ASan+UBSan in every CI run. Usage: fuzz_<target> [--iterations=N]
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  long iterations = 10000;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--iterations=", 13) == 0) iterations = std::atol(argv[i] + 13);
  }
  // Bytes dense in the traps of the matching semantics.
  const uint8_t alphabet[] = {'a', 'b', 'A', 'B', ' ', ' ', ' ', ',', '.', ';', ':', '?', '!', '`',
                              '\t', '\n', '\r', 0xC3, 0xA9, 'x', 0, 0, 0xFF};
  std::mt19937_64 rng(20261125);
  std::vector<uint8_t> buf;
  for (long it = 0; it < iterations; ++it) {
    buf.clear();
    buf.push_back(static_cast<uint8_t>(rng()));
    const size_t n = rng() % 96;
    for (size_t i = 0; i < n; ++i) buf.push_back(alphabet[rng() % sizeof(alphabet)]);
    LLVMFuzzerTestOneInput(buf.data(), buf.size());
  }
  std::printf("%s: %ld random inputs, no mismatch\n", argv[0], iterations);
  return 0;
}
