// C++ unit tests of the core, run under ASan+UBSan in CI (cmake -DFASTCURATE_SANITIZE=ON).
// Plain asserts that stay on in release builds; the process exits non-zero on the first failure.
#include <cstdio>
#include <algorithm>
#include <climits>
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
  CHECK((std::vector<int64_t>(r.offsets.begin(), r.offsets.end()) == std::vector<int64_t>{0, 2, 2, 3}));
  CHECK((std::vector<int32_t>(r.ids.begin(), r.ids.end()) == std::vector<int32_t>{0, 2, 1}));
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

// The batched pipeline: rows across the limits of a batch (pieces, rows), of 2048-row blocks
// taken by 1-4 workers (the first from the front, the others from the back),
// rows longer than the batch takes (matched alone), and an Arrow buffer where the 16-byte tail
// loads read past a row into the next one. Every row against the naive reference.
static void test_batches() {
  std::mt19937 rng(777);
  const std::vector<std::string> entries = {"a", "b", "a b", "a b c", "b c", ",", "c , a", "x", "a  b", "b a b a",
                                            "longword-0123456789abcdef", "longword-0123456789abcdef a"};
  const std::string words[] = {"a", "b", "c", ",", ".", " ", "  ", "x", "longword-0123456789abcdef", "\t", "yy"};
  std::vector<std::string> texts;
  for (int i = 0; i < 9000; ++i) {  // 5 blocks of 2048 rows: workers meet somewhere inside
    std::string t;
    // Mostly short rows; some of hundreds of pieces (past a batch), some past the long-row limit
    // (2048 bytes), some right at it.
    const int kind = static_cast<int>(rng() % 150);
    size_t target = kind == 0 ? 6000 : kind == 1 ? 1500 : kind == 2 ? 2048 : kind == 3 ? 2049 : rng() % 60;
    while (t.size() < target) {
      t += words[rng() % (sizeof(words) / sizeof(words[0]))];
      t += ' ';
    }
    if (kind == 2 || kind == 3) t.resize(target, 'a');
    texts.push_back(t);
  }
  std::vector<std::string_view> ev(entries.begin(), entries.end());
  for (bool cs : {true, false}) {
    MatcherOptions opt;
    opt.case_sensitive = cs;
    Matcher m(ev, opt);
    std::vector<std::vector<int>> want;
    for (const auto& t : texts) want.push_back(naive::metaclip(entries, t, cs));
    for (int threads : {1, 2, 3, 4}) {
      CHECK(run(m, texts, threads) == want);
      ++g_checks;
    }
    // The same rows as one Arrow buffer (64-bit offsets): the tail of each row is read in place.
    std::string data;
    std::vector<int64_t> offsets = {0};
    for (const auto& t : texts) {
      data += t;
      offsets.push_back(static_cast<int64_t>(data.size()));
    }
    TextColumn c;
    c.data = reinterpret_cast<const uint8_t*>(data.data());
    c.data_size = static_cast<int64_t>(data.size());
    c.offsets64 = offsets.data();
    c.length = static_cast<int64_t>(texts.size());
    MatchResult r = m.match({c}, 2);
    for (size_t i = 0; i < texts.size(); ++i) {
      CHECK((std::vector<int>(r.ids.begin() + r.offsets[i], r.ids.begin() + r.offsets[i + 1]) == want[i]));
    }
    ++g_checks;
  }
}

#include "../src/small_sort.hpp"

static void test_small_sort() {
  std::mt19937 rng(99);
  for (int round = 0; round < 4000; ++round) {
    const size_t k = rng() % 70;
    const uint32_t range = round % 3 == 0 ? 8u : round % 3 == 1 ? 1000u : 0x7ffffffeu;  // many repeats .. none
    std::vector<int32_t> a(k + 1);
    for (size_t i = 0; i < k; ++i) a[i] = static_cast<int32_t>(rng() % range);
    if (round % 7 == 0 && k > 0) a[0] = INT32_MAX - 1;  // the largest id
    std::vector<int32_t> want(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(k));
    std::sort(want.begin(), want.end());
    want.erase(std::unique(want.begin(), want.end()), want.end());
    auto check = [&](size_t (*sorter)(int32_t*, size_t), size_t max_k) {
      if (k > max_k || k < 2) return;
      std::vector<int32_t> b = a;
      const size_t n = sorter(b.data(), k);
      CHECK((std::vector<int32_t>(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(n)) == want));
      ++g_checks;
    };
    check(detail::sort_unique_ids, 1000);
    check(detail::sort_unique_sse2, 32);  // the fallback of CPUs without AVX-512
#ifdef FC_SMALL_SORT_AVX512
    if (detail::cpu_has_avx512()) {
      check(detail::sort_unique_avx512_n<1>, 16);
      check(detail::sort_unique_avx512_16, 16);
      check(detail::sort_unique_avx512_n<2>, 32);
      check(detail::sort_unique_avx512_n<4>, 64);
    }
#endif
  }
}

#include "test_balance.inc"
#include "test_text_filters.inc"
#include "test_images.inc"
#include "test_clip_bpe.inc"
#include "test_cluster.inc"
#include "test_pairs.inc"

int main() {
  for (bool vectorised : {true, false}) {  // both code paths must give the reference's answers
    fastcurate::simd::set_enabled(vectorised);
    for (int vocab_filter : {-1, 0, 1}) {  // measured, never, always: the same answers
      fastcurate::simd::force_vocab_filter(vocab_filter);
      test_table();
      test_arrow_layout();
      test_random();
      test_batches();
    }
    fastcurate::simd::force_vocab_filter(-1);
    test_small_sort();
  }
  test_substring();
  test_errors();
  test_balance();
  test_text_filters();
  test_images();
  fc_test_clip::test_clip_bpe();
  test_cluster();
  fc_test_pairs::test_pairs();
  std::printf("fc_tests: all %d checks passed\n", g_checks);
  return 0;
}
