// The plain engine: a byte-level Aho-Corasick automaton that reports every overlapping occurrence
// of every pattern. Children are stored sorted by byte in one CSR array (built from the sorted
// patterns, so no per-node maps), the root has a dense 256-entry table because most bytes leave
// from the root, and duplicate patterns all report their own ids.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "fastcurate/bytes.hpp"
#include "fastcurate/matcher.hpp"
#include "serial.hpp"

namespace fastcurate {
namespace detail {

class ByteEngine {
 public:
  void build(const std::vector<std::string_view>& entries, bool case_insensitive);

  // Calls emit(id, start, end) for every occurrence, by end position (longer patterns first).
  template <class Emit>
  void scan(const uint8_t* p, int64_t n, Emit&& emit) const {
    int32_t s = 0;
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t c = ci_ ? bytes::fold_ascii(p[i]) : p[i];
      for (;;) {
        if (s == 0) {
          s = root_[c];
          break;
        }
        const int32_t nx = child(s, c);
        if (nx > 0) {
          s = nx;
          break;
        }
        s = fail_[static_cast<size_t>(s)];
      }
      for (int32_t d = term_cnt_[static_cast<size_t>(s)] ? s : dict_[static_cast<size_t>(s)]; d > 0;
           d = dict_[static_cast<size_t>(d)]) {
        const uint32_t b = term_beg_[static_cast<size_t>(d)];
        const uint32_t e = b + term_cnt_[static_cast<size_t>(d)];
        for (uint32_t k = b; k < e; ++k) {
          const int32_t id = term_ids_[k];
          emit(id, i + 1 - static_cast<int64_t>(pat_len_[static_cast<size_t>(id)]), i + 1);
        }
      }
    }
  }

  void write(serial::Writer& w) const;
  void read(serial::Reader& r, int64_t n_entries);
  size_t memory_bytes() const;

 private:
  int32_t child(int32_t s, uint8_t c) const {
    uint32_t lo = cbeg_[static_cast<size_t>(s)];
    uint32_t hi = cbeg_[static_cast<size_t>(s) + 1];
    while (hi - lo > 8) {  // binary search down to a short run, then scan it
      const uint32_t mid = lo + (hi - lo) / 2;
      if (cbyte_[mid] < c) {
        lo = mid + 1;
      } else {
        hi = mid + 1;
      }
    }
    for (; lo < hi; ++lo) {
      if (cbyte_[lo] == c) return cnext_[lo];
    }
    return 0;
  }
  int32_t go(int32_t s, uint8_t c) const { return s == 0 ? root_[c] : child(s, c); }
  void validate(int64_t n_entries) const;

  bool ci_ = false;
  std::vector<int32_t> root_;       // 256 entries: next state from the root (0 = stay)
  std::vector<uint32_t> cbeg_;      // CSR of children: per state, [cbeg_[s], cbeg_[s+1])
  std::vector<uint8_t> cbyte_;
  std::vector<int32_t> cnext_;
  std::vector<int32_t> fail_;
  std::vector<int32_t> dict_;       // nearest proper suffix state with patterns, 0 = none
  std::vector<uint32_t> term_beg_;  // patterns ending at a state: term_ids_[beg, beg + cnt)
  std::vector<uint32_t> term_cnt_;
  std::vector<int32_t> term_ids_;
  std::vector<uint32_t> pat_len_;   // byte length of every pattern
};

}  // namespace detail
}  // namespace fastcurate
