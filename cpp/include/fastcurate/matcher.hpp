// The multi-pattern matcher: which metadata entries does each caption contain?
//
// Two engines behind one class:
//
// * Mode::MetaClip equals MetaCLIP's reference `substr_matching` exactly: the caption is spaced
//   (" " + text + " ", the seven characters , . ; : ? ! ` wrapped in spaces, \t \n \r turned into
//   spaces) and an entry matches when " " + entry + " " is a substring of it. Because every key
//   begins and ends with a space, a match always covers whole space-separated pieces of the spaced
//   text. So instead of a byte automaton with millions of states (every byte a dependent random
//   load in a structure far larger than the cache), the engine cuts the caption into those pieces
//   on the fly, looks each piece up in a hash table of the pieces that occur in entries (a few
//   hundred thousand, of which the hot ones stay in cache), and runs Aho-Corasick over piece ids.
//   See docs/DESIGN-matcher.md for the proof of equivalence.
//
// * Mode::Substring is a classic byte-level Aho-Corasick: every overlapping occurrence of every
//   pattern, with byte spans.
//
// Thread safety: a built Matcher is immutable; match() and find_all() may be called from any
// number of threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fastcurate/common.hpp"
#include "fastcurate/huge_alloc.hpp"
#include "fastcurate/text_column.hpp"

namespace fastcurate {

enum class MatchMode : uint8_t { MetaClip = 0, Substring = 1 };

struct MatcherOptions {
  MatchMode mode = MatchMode::MetaClip;
  bool case_sensitive = true;  // false: ASCII letters compare case-insensitively
};

// CSR of matched entry ids: the ids of text i are ids[offsets[i] .. offsets[i+1]), sorted, unique.
// (Vectors that match() fills in parallel without zeroing them first.)
struct MatchResult {
  result_vector<int64_t> offsets;
  result_vector<int32_t> ids;
};

// Every occurrence: for text i, occurrences offsets[i] .. offsets[i+1] in order of end position,
// then pattern id; starts/ends are byte offsets into the text.
struct SpanResult {
  std::vector<int64_t> offsets;
  std::vector<int32_t> ids;
  std::vector<int64_t> starts;
  std::vector<int64_t> ends;
};

// What the build found about the entries, for warnings.
struct BuildReport {
  int64_t never_match = 0;        // entries that can never match in metaclip mode
  int64_t first_never_match = -1; // index of the first such entry
  int64_t shadowed = 0;           // entries whose key repeats a later entry (the later id wins)
  int64_t first_shadowed = -1;
};

class Matcher {
 public:
  // Builds from the entries. Throws InputError for an empty list or an empty entry.
  Matcher(const std::vector<std::string_view>& entries, MatcherOptions options);
  ~Matcher();
  Matcher(Matcher&&) noexcept;
  Matcher& operator=(Matcher&&) noexcept;
  Matcher(const Matcher&) = delete;
  Matcher& operator=(const Matcher&) = delete;

  // Sets of matched entry ids per text, over several chunks (e.g. the chunks of an Arrow
  // ChunkedArray) as one logical column. Identical for every thread count.
  MatchResult match(const std::vector<TextColumn>& chunks, int threads = 0,
                    const CancelToken* cancel = nullptr) const;

  // Every occurrence with byte spans (Mode::Substring only).
  SpanResult find_all(const std::vector<TextColumn>& chunks, int threads = 0,
                      const CancelToken* cancel = nullptr) const;

  // Versioned binary image (magic, version, checksum). from_bytes validates everything and throws
  // FormatError for anything truncated, corrupted or foreign.
  std::vector<uint8_t> to_bytes() const;
  static Matcher from_bytes(const uint8_t* data, size_t size);

  int64_t size() const;                   // number of entries
  std::string_view entry(int64_t i) const;
  MatcherOptions options() const;
  const BuildReport& report() const;
  size_t memory_bytes() const;            // heap bytes held by the automaton and entries

  struct Impl;

 private:
  explicit Matcher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fastcurate
