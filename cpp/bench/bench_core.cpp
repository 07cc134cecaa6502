// Micro-benchmark of the core matcher without Python, for A/B comparisons of kernel changes
// (build two trees, run them alternately). Input files from benchmarks/dump_core_input.py:
// <prefix>.entries (uint64 n, int64 offsets[n+1], bytes) and <prefix>.texts (same layout).
// Usage: bench_core PREFIX [repeats] [threads]
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "fastcurate/matcher.hpp"

struct Column {
  std::vector<int64_t> offsets;
  std::vector<uint8_t> data;
};

static Column read_column(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    std::fprintf(stderr, "cannot open %s\n", path.c_str());
    std::exit(2);
  }
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  Column c;
  c.offsets.resize(n + 1);
  f.read(reinterpret_cast<char*>(c.offsets.data()), static_cast<std::streamsize>((n + 1) * 8));
  c.data.resize(static_cast<size_t>(c.offsets[n]));
  f.read(reinterpret_cast<char*>(c.data.data()), static_cast<std::streamsize>(c.data.size()));
  return c;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_core PREFIX [repeats] [threads]\n");
    return 2;
  }
  const std::string prefix = argv[1];
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 3;
  const int threads = argc > 3 ? std::atoi(argv[3]) : 1;
  Column e = read_column(prefix + ".entries");
  Column t = read_column(prefix + ".texts");
  std::vector<std::string_view> entries;
  for (size_t i = 0; i + 1 < e.offsets.size(); ++i) {
    entries.emplace_back(reinterpret_cast<const char*>(e.data.data()) + e.offsets[i],
                         static_cast<size_t>(e.offsets[i + 1] - e.offsets[i]));
  }
  auto t0 = std::chrono::steady_clock::now();
  fastcurate::Matcher m(entries, fastcurate::MatcherOptions{});
  auto t1 = std::chrono::steady_clock::now();
  std::printf("build %.3f s, %.1f MB\n", std::chrono::duration<double>(t1 - t0).count(), m.memory_bytes() / 1e6);
  fastcurate::TextColumn col;
  col.data = t.data.data();
  col.data_size = static_cast<int64_t>(t.data.size());
  col.offsets64 = t.offsets.data();
  col.length = static_cast<int64_t>(t.offsets.size() - 1);
  for (int r = 0; r < repeats; ++r) {
    // CPU time as well as wall time: on a shared machine the wall clock also counts waiting.
    const std::clock_t ca = std::clock();
    auto a = std::chrono::steady_clock::now();
    fastcurate::MatchResult res = m.match({col}, threads);
    auto b = std::chrono::steady_clock::now();
    const double cpu = static_cast<double>(std::clock() - ca) / CLOCKS_PER_SEC;
    const double s = std::chrono::duration<double>(b - a).count();
    std::printf("match %.0f captions/s %.1f MB/s (%zu ids) cpu %.0f captions/cpu-s\n", col.length / s,
                t.data.size() / s / 1e6, res.ids.size(), col.length / cpu);
  }
  return 0;
}
