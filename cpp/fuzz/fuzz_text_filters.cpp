// Fuzz target for the text filters: arbitrary bytes as captions (the rules and counts must hold
// their invariants and agree with each other) and as corruptions of a model file (parsing must
// end in a model or a FormatError, never a crash or an out-of-bounds read under ASan).
//
// Build with clang: cmake -DFASTCURATE_BUILD_TESTS=ON -DFASTCURATE_LIBFUZZER=ON
//   -DCMAKE_CXX_COMPILER=clang++ ... && ./fuzz_text_filters -max_total_time=60
// Without clang, the standalone driver (standalone_driver.cpp) feeds it random inputs.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../tests/synthetic_fasttext.hpp"
#include "fastcurate/langid.hpp"
#include "fastcurate/text_rules.hpp"

using namespace fastcurate;

static void fail(const char* what) {
  std::fprintf(stderr, "fuzz_text_filters: %s\n", what);
  std::abort();
}

static const TextRules& rules() {
  static const TextRules r = [] {
    TextRulesConfig c;
    c.extensions = {"jpg", "png"};
    c.camera_prefixes = {"img", "dsc", "whatsapp image"};
    c.camera_fillers = {"at", "pm"};
    c.boilerplate_phrases = {"image", "stock photo", "click here", "jpg", "a b"};
    c.boilerplate_prefixes = {"image may contain"};
    c.stopwords = {"the", "a"};
    c.repeat_min_tokens = 3;
    c.repeat_min_tokens_distinct = 2;
    return TextRules(c);
  }();
  return r;
}

static const std::vector<uint8_t>& model_bytes(bool quant) {
  static const std::vector<uint8_t> d = fc_test::synthetic_fasttext(false);
  static const std::vector<uint8_t> q = fc_test::synthetic_fasttext(true);
  return quant ? q : d;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  const uint8_t* p = data + 1;
  const auto n = static_cast<int64_t>(size - 1);

  // Captions: counts agree between the two entry points and stay within their bounds.
  const RowStats r = rules().row(p, n);
  int64_t w = 0, c = 0;
  bool invalid = false;
  count_words_chars(p, n, w, c, invalid);
  if (r.words != w || r.chars != c) fail("TextRules::row and count_words_chars disagree");
  if (c > n || w > c || (n > 0 && c == 0)) fail("counts out of bounds");
  if (((r.flags & kFlagInvalidUtf8) != 0) != invalid) fail("invalid-UTF-8 flag disagrees");
  if (r.flags & ~(kAllRules | kFlagInvalidUtf8)) fail("unknown flag bits");

  // Model files: the fuzz bytes overwrite a stretch of a valid model, or cut it short.
  std::vector<uint8_t> m = model_bytes(mode & 1);
  const size_t at = (static_cast<size_t>(mode >> 1) * 7919u) % m.size();
  if (mode & 0x80) {
    m.resize(at);
  } else {
    for (int64_t i = 0; i < n && at + static_cast<size_t>(i) < m.size(); ++i) m[at + static_cast<size_t>(i)] ^= p[i];
  }
  try {
    FastTextModel model = FastTextModel::from_bytes(m.data(), m.size());
    int32_t label = -1;
    float prob = 0.0f;
    if (model.predict_one(p, n, label, prob)) {
      if (label < 0 || static_cast<size_t>(label) >= model.labels().size()) fail("label out of range");
      if (!(prob >= 0.0f && prob <= 1.0001f)) fail("probability out of range");
    }
  } catch (const FormatError&) {
  }
  return 0;
}
