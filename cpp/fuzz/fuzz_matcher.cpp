// Fuzz target: the input bytes are cut into entries and texts; the matcher (both modes, both
// case options, and after a save/load round trip) must equal the naive reference exactly.
//
// Build with clang: cmake -DFASTCURATE_BUILD_TESTS=ON -DFASTCURATE_LIBFUZZER=ON
//   -DCMAKE_CXX_COMPILER=clang++ ... && ./fuzz_matcher -max_total_time=60
// Without clang, the standalone driver (standalone_driver.cpp) feeds it random inputs.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "../tests/naive_reference.hpp"
#include "fastcurate/matcher.hpp"
#include "fastcurate/simd.hpp"

using namespace fastcurate;

static void fail(const char* what) {
  std::fprintf(stderr, "fuzz_matcher: mismatch: %s\n", what);
  std::abort();
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t flags = data[0];
  // Records are separated by 0x00; the first (flags & 7) + 1 records are entries, the rest texts.
  std::vector<std::string> records;
  std::string cur;
  for (size_t i = 1; i < size; ++i) {
    if (data[i] == 0) {
      records.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(static_cast<char>(data[i]));
    }
  }
  records.push_back(cur);
  const size_t n_entries = std::min<size_t>(records.size(), (flags & 7u) + 1);
  std::vector<std::string> entries(records.begin(), records.begin() + static_cast<std::ptrdiff_t>(n_entries));
  std::vector<std::string> texts(records.begin() + static_cast<std::ptrdiff_t>(n_entries), records.end());
  for (const auto& e : entries) {
    if (e.empty()) return 0;  // rejected by design (tested elsewhere)
  }
  std::vector<std::string_view> ev(entries.begin(), entries.end());
  std::vector<std::string_view> tv(texts.begin(), texts.end());
  TextColumn col;
  col.views = tv.data();
  col.length = static_cast<int64_t>(tv.size());
  const bool cs = (flags & 8u) == 0;
  const int threads = (flags & 16u) ? 2 : 1;
  fastcurate::simd::set_enabled((flags & 32u) == 0);
  fastcurate::simd::force_vocab_filter(static_cast<int>((flags >> 6) % 3) - 1);  // measured, never, always

  MatcherOptions opt;
  opt.case_sensitive = cs;
  Matcher m(ev, opt);
  std::vector<uint8_t> bytes = m.to_bytes();
  Matcher loaded = Matcher::from_bytes(bytes.data(), bytes.size());
  for (const Matcher* mm : {&m, &loaded}) {
    MatchResult r = mm->match({col}, threads);
    for (size_t i = 0; i < texts.size(); ++i) {
      std::vector<int> got(r.ids.begin() + r.offsets[i], r.ids.begin() + r.offsets[i + 1]);
      if (got != naive::metaclip(entries, texts[i], cs)) fail("metaclip");
    }
  }

  opt.mode = MatchMode::Substring;
  Matcher sm(ev, opt);
  SpanResult s = sm.find_all({col}, threads);
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<std::tuple<int, long, long>> got;
    for (int64_t k = s.offsets[i]; k < s.offsets[i + 1]; ++k) got.emplace_back(s.ids[k], s.starts[k], s.ends[k]);
    std::sort(got.begin(), got.end());
    if (got != naive::substring(entries, texts[i], cs)) fail("substring");
  }
  // Arbitrary bytes as a matcher file must be rejected cleanly, never crash.
  try {
    Matcher::from_bytes(data, size);
  } catch (const FormatError&) {
  }
  return 0;
}
