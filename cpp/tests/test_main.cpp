// C++ unit tests of the core, run under ASan+UBSan in CI (cmake -DFASTCURATE_SANITIZE=ON).
// Plain asserts that stay on in release builds; the process exits non-zero on the first failure.
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "fastcurate/matcher.hpp"
#include "fastcurate/simd.hpp"
#include "naive_reference.hpp"

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::exit(1);                                                              \
    }                                                                            \
  } while (0)

using namespace fastcurate;

static int g_checks = 0;

static TextColumn views_column(const std::vector<std::string_view>& v) {
  TextColumn c;
  c.views = v.data();
  c.length = static_cast<int64_t>(v.size());
  return c;
}

static std::vector<std::vector<int>> run(const Matcher& m, const std::vector<std::string>& texts, int threads) {
  std::vector<std::string_view> v(texts.begin(), texts.end());
  MatchResult r = m.match({views_column(v)}, threads);
  std::vector<std::vector<int>> out;
  for (size_t i = 0; i + 1 < r.offsets.size(); ++i) {
    out.emplace_back(r.ids.begin() + r.offsets[i], r.ids.begin() + r.offsets[i + 1]);
  }
  return out;
}

static void compare_metaclip(const std::vector<std::string>& entries, const std::vector<std::string>& texts, bool cs) {
  std::vector<std::string_view> ev(entries.begin(), entries.end());
  MatcherOptions opt;
  opt.case_sensitive = cs;
  Matcher m(ev, opt);
  for (int threads : {1, 3}) {
    auto got = run(m, texts, threads);
    for (size_t i = 0; i < texts.size(); ++i) {
      CHECK(got[i] == naive::metaclip(entries, texts[i], cs));
      ++g_checks;
    }
  }
  // Round trip through the binary format.
  std::vector<uint8_t> bytes = m.to_bytes();
  Matcher m2 = Matcher::from_bytes(bytes.data(), bytes.size());
  CHECK(run(m2, texts, 1) == run(m, texts, 1));
}

static void test_table() {
  compare_metaclip({"cat", "new york", "york", "new york city", ",", "cat , dog", "u.s.", "cat"},
                   {"a cat.", "new york city", "cats", "cat,dog", "cat, dog", "", "x,y", "(cat"}, true);
  compare_metaclip({" cat", "cat ", "a  b", "a b", "a\tb"}, {"a, cat", "cat ,", "a  b", "a\tb", "a\r\nb"}, true);
  compare_metaclip({"Cat", "NEW york"}, {"a CAT", "New York"}, false);
  compare_metaclip({"internationalization", "supercalifragilisticexpialidocious word"},
                   {"internationalization x", "a supercalifragilisticexpialidocious word", "internationalizatioN"}, true);
}

static void test_arrow_layout() {
  // A sliced Arrow array with a validity bitmap and 32-bit offsets.
  const std::string data = "PADa cat dognew york";
  const int32_t offsets[] = {0, 3, 12, 12, 20};
  const uint8_t validity[] = {0x0B};  // rows 0,1,3 valid; row 2 null
  std::vector<std::string_view> ev = {"cat", "new york", "dog"};
  Matcher m(ev, MatcherOptions{});
  TextColumn c;
  c.data = reinterpret_cast<const uint8_t*>(data.data());
  c.data_size = static_cast<int64_t>(data.size());
  c.offsets32 = offsets;
  c.validity = validity;
  c.offset = 1;
  c.length = 3;
  MatchResult r = m.match({c}, 1);
  CHECK((r.offsets == std::vector<int64_t>{0, 2, 2, 3}));
  CHECK((r.ids == std::vector<int32_t>{0, 2, 1}));
  // Corrupt offsets become an InputError, not a read out of bounds.
  const int32_t bad[] = {0, 3, 99, 12, 20};
  c.offsets32 = bad;
  bool threw = false;
  try {
    m.match({c}, 2);
  } catch (const InputError&) {
    threw = true;
  }
  CHECK(threw);
}

static void test_substring() {
  std::vector<std::string> entries = {"he", "she", "his", "hers", "a", "aa"};
  std::vector<std::string_view> ev(entries.begin(), entries.end());
  MatcherOptions opt;
  opt.mode = MatchMode::Substring;
  Matcher m(ev, opt);
  const std::vector<std::string> texts = {"ushers", "aaa", "", "hishe"};
  std::vector<std::string_view> tv(texts.begin(), texts.end());
  SpanResult r = m.find_all({views_column(tv)}, 2);
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<std::tuple<int, long, long>> got;
    for (int64_t k = r.offsets[i]; k < r.offsets[i + 1]; ++k) got.emplace_back(r.ids[k], r.starts[k], r.ends[k]);
    std::sort(got.begin(), got.end());
    CHECK(got == naive::substring(entries, texts[i], true));
    ++g_checks;
  }
}

static void test_errors() {
  bool threw = false;
  try {
    Matcher m(std::vector<std::string_view>{}, MatcherOptions{});
  } catch (const InputError&) {
    threw = true;
  }
  CHECK(threw);
  threw = false;
  try {
    Matcher m(std::vector<std::string_view>{"a", ""}, MatcherOptions{});
  } catch (const InputError&) {
    threw = true;
  }
  CHECK(threw);
  // Every truncation and many single-byte corruptions of a file are rejected cleanly.
  for (MatchMode mode : {MatchMode::MetaClip, MatchMode::Substring}) {
    MatcherOptions opt;
    opt.mode = mode;
    Matcher m(std::vector<std::string_view>{"cat", "new york", "york"}, opt);
    std::vector<uint8_t> b = m.to_bytes();
    for (size_t cut = 0; cut < b.size(); ++cut) {
      threw = false;
      try {
        Matcher::from_bytes(b.data(), cut);
      } catch (const FormatError&) {
        threw = true;
      }
      CHECK(threw);
    }
    for (size_t pos = 0; pos < b.size(); ++pos) {
      std::vector<uint8_t> c = b;
      c[pos] ^= 0x41;
      try {
        Matcher::from_bytes(c.data(), c.size());
        CHECK(pos >= 12 && pos < 16);  // only the unused flags field may change harmlessly
      } catch (const FormatError&) {
      }
    }
  }
}

static void test_random() {
  std::mt19937 rng(12345);
  const std::string alphabet[] = {"a", "b", "A", " ", " ", ",", ".", "!", "`", "\t", "\n", "\r", "\xc3\xa9", "x"};
  auto rand_str = [&](int maxlen, int minlen) {
    std::string s;
    const int n = minlen + static_cast<int>(rng() % static_cast<unsigned>(maxlen - minlen + 1));
    for (int i = 0; i < n; ++i) s += alphabet[rng() % (sizeof(alphabet) / sizeof(alphabet[0]))];
    return s;
  };
  for (int round = 0; round < 300; ++round) {
    std::vector<std::string> entries, texts;
    const int ne = 1 + static_cast<int>(rng() % 10);
    for (int i = 0; i < ne; ++i) entries.push_back(rand_str(5, 1));
    for (int i = 0; i < 20; ++i) texts.push_back(rand_str(60, 0));
    compare_metaclip(entries, texts, round % 2 == 0);
  }
}

#include "test_balance.inc"
#include "test_text_filters.inc"
#include "test_images.inc"
#include "test_clip_bpe.inc"
#include "test_cluster.inc"

int main() {
  for (bool vectorised : {true, false}) {  // both code paths must give the reference's answers
    fastcurate::simd::set_enabled(vectorised);
    test_table();
    test_arrow_layout();
    test_random();
  }
  test_substring();
  test_errors();
  test_balance();
  test_text_filters();
  test_images();
  fc_test_clip::test_clip_bpe();
  test_cluster();
  std::printf("fc_tests: all %d checks passed\n", g_checks);
  return 0;
}
