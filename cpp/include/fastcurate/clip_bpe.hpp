// CLIP's byte-level BPE tokeniser (open_clip's SimpleTokenizer), exact, for the texts it can do
// exactly without Python.
//
// open_clip tokenises a caption as: ftfy.fix_text, html.unescape twice, whitespace collapse
// (Python's str.split), lower case, split with a Unicode regex, byte-level BPE of each piece,
// then [SOT] + ids + [EOT] truncated to the context (the last kept id becomes EOT) and zero padded.
//
// This kernel does all of that for the rows where every step is provably simple:
//   * raw mode: the row is printable ASCII (0x20-0x7E) plus tab and newline, and every '&' is
//     followed by a space, tab, newline or the end of the row. ftfy and html.unescape leave such
//     text unchanged (ftfy's fixes and NFC only touch control or non-ASCII characters, and an HTML
//     entity needs a character other than whitespace after the '&'); Python's whitespace set and
//     lower case are ASCII's there; and the regex's letter / number / space classes are a-z, 0-9
//     and the blank.
//   * precleaned mode: the caller already cleaned the row exactly (ftfy, unescape, collapse,
//     lower). Any ASCII row without other whitespace than the blank is exact here.
// Every other row is reported (RowStatus::kNeedsPython) and left untouched, for the caller to
// clean with ftfy and split with the `regex` module; encode_words() then gives the BPE ids of its
// pieces, from the same cache.
//
// The BPE merges, in rank order, are applied exactly as open_clip does: repeatedly take the
// adjacent pair of lowest rank and merge all its non-overlapping occurrences left to right. Long
// words (more than kNaiveMaxSymbols symbols) use an equivalent O(n log n) heap, which is exact
// when every merge's parts are made by lower-ranked merges (checked at construction; otherwise
// the quadratic algorithm is used for every word).
//
// Thread safety: tokenize() and encode_words() lock an internal mutex (the word cache is shared),
// so one ClipBpe may be used from several threads; calls are serialised.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "fastcurate/common.hpp"
#include "fastcurate/text_column.hpp"

namespace fastcurate {

struct ClipBpeTables {
  int32_t byte_id[256];      // id of the symbol for byte b inside a word
  int32_t byte_end_id[256];  // id of the symbol for byte b ending a word (its "</w>" form)
  // Merge of rank r: (merge_left[r], merge_right[r]) -> merge_result[r].
  std::vector<int32_t> merge_left, merge_right, merge_result;
  int32_t sot_id = -1;  // <start_of_text>
  int32_t eot_id = -1;  // <end_of_text>
  int32_t vocab_size = 0;
};

enum RowStatus : uint8_t {
  kRowDone = 0,         // ids written
  kRowNeedsPython = 1,  // not plain enough: clean it in Python, then encode_words() its pieces
  kRowNull = 2,         // a null (Arrow) row: the caller decides (open_clip has no null captions)
  kRowFtfyNoop = 3,     // not ASCII, but ftfy and html.unescape provably leave it unchanged: the
                        // caller only collapses whitespace, lower-cases and splits it
};

// What set_ftfy_tables() takes (built in Python from the installed ftfy and unicodedata, see
// python/fastcurate/models/_ftfy_noop.py for why the check they drive is exact):
//   * per non-ASCII code point with non-default properties (sorted `cps`): `unsafe` (one of ftfy's
//     character fixers or NFC may change it), `ccc` (canonical combining class) and `masks` (bit k:
//     member of the k-th explicit character set of ftfy's BADNESS_RE); code points absent from
//     `cps` are safe, class 0, mask 0;
//   * BADNESS_RE as alternatives (a superset of it): alternative a is the item sequence
//     alt_items[alt_offsets[a] .. alt_offsets[a+1]), an item being a set bit or 0 for "any".
struct FtfyTables {
  std::vector<uint32_t> cps;
  std::vector<uint8_t> unsafe, ccc;
  std::vector<uint64_t> masks;
  std::vector<int64_t> alt_offsets;
  std::vector<uint64_t> alt_items;
};

class ClipBpe {
 public:
  static constexpr size_t kNaiveMaxSymbols = 48;

  // Validates the tables (ids in range, no duplicate merge pair); throws InputError.
  // `max_cache_words` bounds the word cache (it is emptied when full); 0 means the default.
  explicit ClipBpe(const ClipBpeTables& tables, size_t max_cache_words = 0);

  // Tokenises every row of `cols` (rows numbered across the columns in order). For a row it can
  // do exactly, writes its ids to out[row * context_length ...] (only the ids: the caller zeroes
  // the array), sets lengths[row] = number of ids written (<= context_length) and status[row] =
  // kRowDone; otherwise sets status[row] and leaves the row alone. Returns the number of rows done.
  // context_length must be >= 2.
  int64_t tokenize(const std::vector<TextColumn>& cols, int64_t context_length, bool precleaned, int64_t* out,
                   int32_t* lengths, uint8_t* status, const CancelToken* cancel = nullptr);

  // Enables kRowFtfyNoop in raw mode. Validates the tables (sorted code points, same lengths,
  // offsets in range, every alternative with at least one non-"any" item); throws InputError.
  void set_ftfy_tables(FtfyTables t);
  bool has_ftfy_tables() const { return !ftfy_.alt_offsets.empty(); }

  // True if the row (UTF-8) is valid, and ftfy.fix_text and html.unescape (twice) provably return
  // it unchanged. Needs set_ftfy_tables(); false without them.
  bool ftfy_noop(const uint8_t* p, int64_t n) const;

  // BPE ids of pre-split words (pieces of open_clip's regex, UTF-8 bytes; "<start_of_text>" and
  // "<end_of_text>" map to their special ids). CSR: ids of word i are ids[offsets[i]..offsets[i+1]).
  // A null or empty word throws InputError (the regex never yields one).
  void encode_words(const TextColumn& words, std::vector<int64_t>& offsets, std::vector<int32_t>& ids);

  // The BPE of one word with the given algorithm, bypassing the cache (for tests).
  std::vector<int32_t> bpe_uncached(std::string_view word, bool heap) const;

  size_t cache_words() const;
  void clear_cache();
  bool merges_monotone() const { return monotone_; }
  int32_t sot_id() const { return sot_; }
  int32_t eot_id() const { return eot_; }

 private:
  struct MergeSlot {
    uint64_t key;  // (left << 32) | right, or kEmpty
    int32_t rank;
    int32_t result;
  };
  struct CacheSlot {
    uint64_t hash;
    uint32_t key_off, key_len;
    uint32_t ids_off, ids_len;  // ids_len == 0: empty slot
  };

  bool find_merge(int32_t left, int32_t right, int32_t& rank, int32_t& result) const;
  void bpe_naive(std::vector<int32_t>& sym) const;
  void bpe_heap(std::vector<int32_t>& sym) const;
  void bpe_word(const uint8_t* w, size_t n, std::vector<int32_t>& out, bool heap) const;
  // Cached ids of a word; computes and stores them on a miss. The span stays valid until the next
  // insertion (the pools may grow), so callers copy it out at once.
  const int32_t* lookup(const uint8_t* w, size_t n, uint32_t& len);
  void grow_cache();
  int64_t tokenize_row(const uint8_t* p, int64_t n, int64_t context_length, int64_t* row);

  struct CharInfo {
    uint8_t unsafe = 0, ccc = 0;
    uint64_t mask = 0;
  };
  CharInfo char_info(uint32_t cp) const;

  FtfyTables ftfy_;
  int32_t byte_id_[256];
  int32_t byte_end_id_[256];
  int32_t sot_ = -1, eot_ = -1;
  std::vector<MergeSlot> merges_;
  uint64_t merge_mask_ = 0;
  bool monotone_ = true;

  mutable std::mutex mu_;
  size_t max_cache_words_;
  size_t cache_count_ = 0;
  uint64_t cache_mask_ = 0;
  std::vector<CacheSlot> cache_;
  std::vector<uint8_t> key_pool_;
  std::vector<int32_t> id_pool_;
  std::vector<int32_t> scratch_;
  std::vector<uint8_t> word_buf_;
};

}  // namespace fastcurate
