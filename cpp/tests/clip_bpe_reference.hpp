// A plain reference of open_clip's tokeniser on ASCII text, and synthetic BPE tables, shared by
// the unit tests (test_clip_bpe.inc) and the fuzz target (fuzz/fuzz_clip_bpe.cpp).
//
// The reference is written the slow, obvious way, independently of the kernel: clean (lower case,
// split on whitespace), then open_clip's regex alternatives tried in order at each position, then
// open_clip's BPE loop over symbol ids with a std::map of merge ranks.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "fastcurate/clip_bpe.hpp"

namespace clip_ref {

struct Tables {
  fastcurate::ClipBpeTables t;
  std::map<std::pair<int32_t, int32_t>, std::pair<int32_t, int32_t>> rank;  // pair -> (rank, result)
};

// Byte symbols are ids 0..255, their end-of-word forms 256..511, merges 512.., then SOT and EOT.
// Merges join existing symbols, biased to letters so that they fire on real-looking words; each
// new symbol is made only from older ones, so the table is monotone unless `shuffle` swaps ranks.
inline Tables make_tables(uint64_t seed, int n_merges, bool shuffle = false) {
  std::mt19937_64 rng(seed);
  Tables r;
  for (int b = 0; b < 256; ++b) {
    r.t.byte_id[b] = b;
    r.t.byte_end_id[b] = 256 + b;
  }
  std::vector<int32_t> inner, ends;  // symbols that can start / end a word
  for (int b = 'a'; b <= 'z'; ++b) inner.push_back(b);
  for (int b = 'a'; b <= 'z'; ++b) ends.push_back(256 + b);
  for (int b : {int{'!'}, int{'%'}, int{'.'}, int{'\''}, int{'<'}, int{'_'}, int{'0'}, int{'1'}, 0xC3, 0xA9}) {
    inner.push_back(b);
    ends.push_back(256 + b);
  }
  int32_t next = 512;
  while (static_cast<int>(r.t.merge_left.size()) < n_merges) {
    const int32_t a = inner[rng() % inner.size()];
    const bool end = rng() % 3 == 0;
    const int32_t b = end ? ends[rng() % ends.size()] : inner[rng() % inner.size()];
    if (r.rank.count({a, b})) continue;
    r.rank[{a, b}] = {static_cast<int32_t>(r.t.merge_left.size()), next};
    r.t.merge_left.push_back(a);
    r.t.merge_right.push_back(b);
    r.t.merge_result.push_back(next);
    (end ? ends : inner).push_back(next);
    ++next;
  }
  if (shuffle && n_merges > 1) {  // reverse the ranks: later symbols are now made "first"
    const auto m = r.t.merge_left.size();
    for (auto& kv : r.rank) kv.second.first = static_cast<int32_t>(m - 1) - kv.second.first;
    std::vector<int32_t> l(m), rr(m), res(m);
    for (size_t i = 0; i < m; ++i) {
      l[m - 1 - i] = r.t.merge_left[i];
      rr[m - 1 - i] = r.t.merge_right[i];
      res[m - 1 - i] = r.t.merge_result[i];
    }
    r.t.merge_left = l;
    r.t.merge_right = rr;
    r.t.merge_result = res;
  }
  r.t.sot_id = next;
  r.t.eot_id = next + 1;
  r.t.vocab_size = next + 2;
  return r;
}

// open_clip's SimpleTokenizer.bpe, on ids.
inline std::vector<int32_t> bpe(const Tables& tb, const std::string& w) {
  std::vector<int32_t> word;
  for (size_t i = 0; i < w.size(); ++i) {
    const auto b = static_cast<uint8_t>(w[i]);
    word.push_back(i + 1 < w.size() ? tb.t.byte_id[b] : tb.t.byte_end_id[b]);
  }
  while (word.size() > 1) {
    std::pair<int32_t, int32_t> best{-1, -1};
    int32_t best_rank = -1, result = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      auto it = tb.rank.find({word[i], word[i + 1]});
      if (it != tb.rank.end() && (best_rank < 0 || it->second.first < best_rank)) {
        best_rank = it->second.first;
        best = {word[i], word[i + 1]};
        result = it->second.second;
      }
    }
    if (best_rank < 0) break;
    std::vector<int32_t> nw;
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == best.first && word[i + 1] == best.second) {
        nw.push_back(result);
        i += 2;
      } else {
        nw.push_back(word[i++]);
      }
    }
    word = nw;
  }
  return word;
}

inline bool is_letter(char c) { return c >= 'a' && c <= 'z'; }
inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

// [SOT] + ids + [EOT] truncated like open_clip, for text the kernel handles (ASCII, no other
// whitespace than blank, tab and newline).
inline std::vector<int64_t> tokenize(const Tables& tb, const std::string& text, int64_t ctx) {
  std::string s;
  for (char c : text) s.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c);
  std::vector<int64_t> ids;
  size_t p = 0;
  while (p < s.size()) {
    const char c = s[p];
    if (c == ' ' || c == '\t' || c == '\n') {
      ++p;
      continue;
    }
    if (s.compare(p, 15, "<start_of_text>") == 0) {
      ids.push_back(tb.t.sot_id);
      p += 15;
      continue;
    }
    if (s.compare(p, 13, "<end_of_text>") == 0) {
      ids.push_back(tb.t.eot_id);
      p += 13;
      continue;
    }
    std::string piece;
    for (const char* con : {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"}) {
      if (s.compare(p, std::char_traits<char>::length(con), con) == 0) {
        piece = con;
        break;
      }
    }
    if (piece.empty()) {
      size_t q = p + 1;
      if (is_letter(c)) {
        while (q < s.size() && is_letter(s[q])) ++q;
      } else if (!is_digit(c)) {
        auto other = [](char x) { return !(x == ' ' || x == '\t' || x == '\n' || is_letter(x) || is_digit(x)); };
        while (q < s.size() && other(s[q])) ++q;
      }
      piece = s.substr(p, q - p);
    }
    p += piece.size();
    for (int32_t id : bpe(tb, piece)) ids.push_back(id);
  }
  std::vector<int64_t> row{tb.t.sot_id};
  for (int64_t id : ids) row.push_back(id);
  row.push_back(tb.t.eot_id);
  if (static_cast<int64_t>(row.size()) > ctx) {
    row.resize(static_cast<size_t>(ctx));
    row.back() = tb.t.eot_id;
  }
  return row;
}

}  // namespace clip_ref
