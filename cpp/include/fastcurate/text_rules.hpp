// Caption statistics and bad-alt-text rules over a column of strings, in one pass.
//
// Per row this computes what DataComp's basic filter needs, with Python's semantics exactly
// (`len(text.split())` and `len(text)`: words split on every str.isspace() code point, lengths in
// code points), and a bitmask of the named bad-alt-text rules (url, filename, boilerplate,
// non_letters, repeated). The exact definition of every rule is written out, as plain Python, in
// python/fastcurate/kernels/text_reference.py; the tests hold this kernel equal to it.
//
// Thread safety: a TextRules is immutable after construction; run() may be called from many
// threads at once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fastcurate/common.hpp"
#include "fastcurate/text_column.hpp"

namespace fastcurate {

// Bits of TextStats::flags.
enum : uint8_t {
  kRuleUrl = 1,
  kRuleFilename = 2,
  kRuleBoilerplate = 4,
  kRuleNonLetters = 8,
  kRuleRepeated = 16,
  kAllRules = 31,
  kFlagInvalidUtf8 = 64,  // the row's bytes are not valid UTF-8 (counted as surrogateescape would)
  kFlagNull = 128,        // the row is null
};

struct TextRulesConfig {
  uint8_t rules = kAllRules;  // which rules are evaluated (the others' bits stay 0)

  // url: the caption holds a URL-like whitespace token and fewer than this many other whitespace
  // tokens with a letter.
  int64_t url_min_other_words = 2;
  // non_letters: fewer than this share of the non-space code points are letters (L*, M*).
  double min_letter_share = 1.0 / 3.0;
  // repeated: at least this many tokens, and at least this share of the n - 1 token bigrams
  // repeat an earlier bigram.
  int64_t repeat_min_tokens = 8;
  double repeat_min_dup_share = 0.4;
  // repeated, second form: at least this many tokens, and distinct tokens * 3 <= tokens.
  int64_t repeat_min_tokens_distinct = 4;

  // Word lists; every entry is tokenized like the captions (lower-cased ASCII, alphanumeric runs
  // split between letters and digits), so "Stock-Photo" and "stock photo" are the same phrase.
  std::vector<std::string> extensions;            // file extensions, without the dot
  std::vector<std::string> camera_prefixes;       // "img", "dsc", "whatsapp image", ...
  std::vector<std::string> camera_fillers;        // tokens allowed among a camera name's numbers
  std::vector<std::string> boilerplate_phrases;   // non-descriptive words and phrases
  std::vector<std::string> boilerplate_prefixes;  // templates that make a whole caption boilerplate
  std::vector<std::string> stopwords;             // words that never count as content
};

struct TextStats {
  std::vector<int32_t> words;  // len(text.split()), saturating at INT32_MAX
  std::vector<int32_t> chars;  // len(text) in code points, saturating at INT32_MAX
  std::vector<uint8_t> flags;  // rule bits | kFlagInvalidUtf8 | kFlagNull
};

struct RowStats {
  int64_t words = 0;
  int64_t chars = 0;
  uint8_t flags = 0;
};

class TextRules {
 public:
  // Throws InputError for an empty phrase or an out-of-range threshold.
  explicit TextRules(TextRulesConfig config);
  ~TextRules();
  TextRules(TextRules&&) noexcept;
  TextRules& operator=(TextRules&&) noexcept;
  TextRules(const TextRules&) = delete;
  TextRules& operator=(const TextRules&) = delete;

  // Every row of every chunk, in order. `want_counts` = false skips nothing (the counts come from
  // the same pass) but leaves words/chars empty, to save their memory.
  TextStats run(const std::vector<TextColumn>& cols, bool want_counts, int threads,
                const CancelToken* cancel = nullptr) const;

  // One row (for tests and the fuzz target).
  RowStats row(const uint8_t* p, int64_t n) const;

  const TextRulesConfig& config() const;

  struct Impl;

 private:
  Impl* impl_;
};

// Python's len(s.split()) and len(s) of UTF-8 bytes (invalid bytes count as one code point each,
// as bytes.decode("utf-8", "surrogateescape") would give). Sets `invalid` when a byte is invalid.
void count_words_chars(const uint8_t* p, int64_t n, int64_t& words, int64_t& chars, bool& invalid);

}  // namespace fastcurate
