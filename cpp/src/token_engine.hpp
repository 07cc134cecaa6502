// The MetaCLIP engine: Aho-Corasick over the space-separated pieces of the spaced caption.
//
// Why this equals the reference: the spaced text is s = " " + X + " " where X applies the
// spacing rules to the caption, and a key is " " + e + " ". Split both on single spaces: the key's
// pieces are [e_1 .. e_k] = e.split(" "), and because the key starts and ends with a space and has
// a space between consecutive pieces, it occurs in s exactly when [e_1 .. e_k] occurs as a
// contiguous run of X.split(" ") (empty pieces included: they carry the significance of double
// spaces). The pieces of X are produced on the fly from the caption's bytes: a run of ordinary
// bytes is a piece, each of , . ; : ? ! ` is a piece of its own with a boundary on each side, and
// space, \t, \n, \r are boundaries. A piece of X is therefore either one of those seven
// characters alone, or contains none of them, so an entry piece that mixes one of them with other
// bytes, or holds \t \n \r, can never match (reported as such at build time).
#pragma once

#include <algorithm>
#include <string>
#include <cstdint>
#include <string_view>
#include <vector>

#include "fastcurate/bytes.hpp"
#include "fastcurate/huge_alloc.hpp"
#include "fastcurate/simd.hpp"

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#endif
#include "fastcurate/matcher.hpp"
#include "serial.hpp"

namespace fastcurate {
namespace detail {

// Byte classes of the spacing rules.
enum : uint8_t { kWord = 0, kSpace = 1, kPunct = 2 };

struct ByteClasses {
  uint8_t cls[256];
  constexpr ByteClasses() : cls() {
    for (int i = 0; i < 256; ++i) cls[i] = kWord;
    cls[static_cast<unsigned char>(' ')] = kSpace;
    cls[static_cast<unsigned char>('\t')] = kSpace;
    cls[static_cast<unsigned char>('\n')] = kSpace;
    cls[static_cast<unsigned char>('\r')] = kSpace;
    for (char c : {',', '.', ';', ':', '?', '!', '`'}) cls[static_cast<unsigned char>(c)] = kPunct;
  }
};
inline constexpr ByteClasses kClasses{};

// Cuts a caption into the pieces of its spaced text, calling add(ptr, len) for each, in order:
// a run of ordinary bytes, then each of the seven punctuation characters as a piece of its own;
// space, tab, CR and LF only end pieces. The SSE2 path classifies 16 bytes per step and walks the
// separator bits; the scalar path does the same byte by byte.
template <class Add>
inline void for_each_piece_scalar(const uint8_t* p, size_t n, const uint8_t* piece, size_t from, Add&& add) {
  for (size_t i = from; i < n; ++i) {
    const uint8_t c = kClasses.cls[p[i]];
    if (c == kWord) continue;
    add(piece, static_cast<size_t>(p + i - piece));
    if (c == kPunct) add(p + i, 1);
    piece = p + i + 1;
  }
  add(piece, static_cast<size_t>(p + n - piece));
}

template <class Add>
inline void for_each_piece(const uint8_t* p, size_t n, Add&& add) {
#if defined(__SSE2__) || defined(_M_X64)
  if (simd::enabled()) {
    const uint8_t* piece = p;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
      auto eq = [&](char c) { return _mm_cmpeq_epi8(v, _mm_set1_epi8(c)); };
      const __m128i space = _mm_or_si128(_mm_or_si128(eq(' '), eq('\t')), _mm_or_si128(eq('\n'), eq('\r')));
      const __m128i punct = _mm_or_si128(
          _mm_or_si128(_mm_or_si128(eq(','), eq('.')), _mm_or_si128(eq(';'), eq(':'))),
          _mm_or_si128(_mm_or_si128(eq('?'), eq('!')), eq('`')));
      uint32_t sep = static_cast<uint32_t>(_mm_movemask_epi8(_mm_or_si128(space, punct)));
      const uint32_t pun = static_cast<uint32_t>(_mm_movemask_epi8(punct));
      while (sep != 0) {
        const unsigned b = static_cast<unsigned>(__builtin_ctz(sep));
        const uint8_t* q = p + i + b;
        add(piece, static_cast<size_t>(q - piece));
        if ((pun >> b) & 1u) add(q, 1);
        piece = q + 1;
        sep &= sep - 1;
      }
    }
    for_each_piece_scalar(p, n, piece, i, add);
    return;
  }
#endif
  for_each_piece_scalar(p, n, p, 0, add);
}

class TokenEngine {
 public:
  void build(const std::vector<std::string_view>& entries, bool case_insensitive, BuildReport& report);

  // For rows [begin, end) of the column: appends each row's (sorted, unique) ids to `ids` and
  // the end of its run in `ids` to `ends`.
  void match_rows(const TextColumn& col, int64_t begin, int64_t end, std::vector<int32_t>& ids,
                  std::vector<int64_t>& ends) const {
    if (ci_) {
      match_rows_impl<true>(col, begin, end, ids, ends);
    } else {
      match_rows_impl<false>(col, begin, end, ids, ends);
    }
  }

  void write(serial::Writer& w) const;
  void read(serial::Reader& r, int64_t n_entries);
  size_t memory_bytes() const;

 private:
  // One vocabulary slot: 32 bytes, so that the common case (a piece of at most 16 bytes that
  // leads from the root to a one-piece state) is answered by this one cache line, with no access
  // to the arena, the state array or the transition table.
  struct VSlot {
    uint64_t w0;      // bytes 0..7 of the piece, zero-padded (folded if ci)
    uint64_t w1;      // bytes 8..15
    uint32_t len;
    int32_t tok;      // -1 = empty slot; the depth-1 state of token t is t + 1
    int32_t out1;     // copy of states_[tok + 1].out
    int32_t nchild1;  // copy of states_[tok + 1].nchild
  };
  struct State {
    int32_t fail;
    int32_t out;     // entry id ending here, or -1
    int32_t dict;    // nearest proper suffix state with an output, or -1
    int32_t nchild;  // number of transitions leaving this state
  };
  struct GSlot {
    uint64_t key;   // (state << 32) | token; kEmptyKey = empty
    int32_t next;
    uint32_t info;  // the child's (out + 1) | (has children) << 31, see Cursor
  };
  static constexpr uint64_t kEmptyKey = ~uint64_t{0};

  template <bool CI>
  static uint64_t word_at(const uint8_t* p, size_t n, size_t i, const uint8_t* end) {
    if (i >= n) return 0;
    uint64_t x = bytes::load_upto8(p + i, std::min<size_t>(8, n - i), end);
    return CI ? bytes::fold_ascii8(x) : x;
  }

  template <bool CI>
  static uint64_t piece_hash(const uint8_t* p, size_t n, const uint8_t* end, uint64_t& w0, uint64_t& w1) {
    w0 = word_at<CI>(p, n, 0, end);
    w1 = word_at<CI>(p, n, 8, end);
    uint64_t h = (w0 ^ (static_cast<uint64_t>(n) << 56)) * 0x9E3779B97F4A7C15ULL;
    if (n > 8) {
      h = (((h << 23) | (h >> 41)) ^ w1) * 0x9E3779B97F4A7C15ULL;
      for (size_t i = 16; i < n; i += 8) {
        h = (((h << 23) | (h >> 41)) ^ word_at<CI>(p, n, i, end)) * 0x9E3779B97F4A7C15ULL;
      }
    }
    return h ^ (h >> 29);
  }

  template <bool CI>
  bool tail_equal(const uint8_t* p, size_t n, int32_t tok) const {
    // Bytes 16.. of the piece against the stored (already folded) token bytes.
    const uint8_t* q = varena_.data() + voff_[static_cast<size_t>(tok)] + 16;
    if (!CI) return std::memcmp(p + 16, q, n - 16) == 0;
    for (size_t i = 16; i < n; ++i, ++q) {
      if (bytes::fold_ascii(p[i]) != *q) return false;
    }
    return true;
  }

  template <bool CI>
  const VSlot* lookup(const uint8_t* p, size_t n, const uint8_t* end) const {
    if (n == 0) return empty_slot_.tok >= 0 ? &empty_slot_ : nullptr;
    uint64_t w0, w1;
    uint64_t i = piece_hash<CI>(p, n, end, w0, w1) & vmask_;
    for (;;) {
      const VSlot& s = vslots_[i];
      if (s.tok < 0) return nullptr;
      if (s.w0 == w0 && s.w1 == w1 && s.len == n && (n <= 16 || tail_equal<CI>(p, n, s.tok))) return &s;
      i = (i + 1) & vmask_;
    }
  }

  // A piece of a caption with its hash, computed ahead of the automaton so that the vocabulary
  // slots of a whole batch of pieces can be prefetched (see match_rows_impl).
  struct Piece {
    const uint8_t* p;
    uint64_t w0, w1, h;
    uint32_t len;
    uint32_t row_end;  // 1 if this is the last piece of its row
  };

  template <bool CI>
  const VSlot* lookup_piece(const Piece& pc) const {
    if (pc.len == 0) return empty_slot_.tok >= 0 ? &empty_slot_ : nullptr;
    uint64_t i = pc.h & vmask_;
    for (;;) {
      const VSlot& s = vslots_[i];
      if (s.tok < 0) return nullptr;
      if (s.w0 == pc.w0 && s.w1 == pc.w1 && s.len == pc.len && (pc.len <= 16 || tail_equal<CI>(pc.p, pc.len, s.tok))) {
        return &s;
      }
      i = (i + 1) & vmask_;
    }
  }

  static uint64_t gkey(int32_t s, int32_t t) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(s)) << 32) | static_cast<uint32_t>(t);
  }
  static uint64_t ghash(uint64_t key) { return (key * 0x9E3779B97F4A7C15ULL) >> 17; }

  // Most probes for a (state, token) transition miss: the next word rarely continues a
  // multi-word entry. The transition table is far larger than the cache, so a miss there is a
  // DRAM round trip; a blocked Bloom filter (two bits in one 64-bit word per transition), sized
  // to stay in L2, answers most misses without touching the table.
  static uint64_t filter_hash(uint64_t key) { return key * 0xD6E8FEB86659FD93ULL; }
  static uint64_t filter_mask(uint64_t h) { return (uint64_t{1} << ((h >> 20) & 63)) | (uint64_t{1} << ((h >> 26) & 63)); }
  bool maybe_edge(uint64_t key) const {
    const uint64_t h = filter_hash(key);
    const uint64_t m = filter_mask(h);
    return (filter_[h >> fshift_] & m) == m;
  }

  const GSlot* find_edge(int32_t s, int32_t t) const {
    const uint64_t key = gkey(s, t);
    if (!maybe_edge(key)) return nullptr;
    uint64_t i = ghash(key) & gmask_;
    for (;;) {
      const GSlot& g = gslots_[i];
      if (g.key == key) return &g;
      if (g.key == kEmptyKey) return nullptr;
      i = (i + 1) & gmask_;
    }
  }
  int32_t go_nonroot(int32_t s, int32_t t) const {
    const GSlot* g = find_edge(s, t);
    return g == nullptr ? 0 : g->next;
  }
  int32_t go(int32_t s, int32_t t) const { return s == 0 ? t + 1 : go_nonroot(s, t); }

  // Where the automaton is. Most matched multi-word entries are two words long, and a depth-2
  // state (a, t) needs nothing from the state array: its failure link is the depth-1 state of t,
  // whose output and children are in t's vocabulary slot, and its own output and child flag are
  // in the transition slot that led to it. So the cursor remembers the failure state when it is
  // known, and the state array is read only for deeper states.
  struct Cursor {
    int32_t s = 0;
    bool has_children = false;
    int32_t fail = -1;  // failure state of s when known (depth-2 states), else -1
    bool fail_has_children = false;
  };

  // Feeds one piece (already looked up) to the automaton, appending the ids of the entries that
  // end here.
  void step(const VSlot* v, Cursor& c, std::vector<int32_t>& out) const {
    if (v == nullptr) {  // a piece that occurs in no entry: nothing can continue through it
      c.s = 0;
      return;
    }
    const State* states = states_.data();
    const int32_t t = v->tok;
    while (c.s != 0) {
      if (c.has_children) {
        const GSlot* g = find_edge(c.s, t);
        if (g != nullptr) {
          if (c.s <= n_tok_) {  // a depth-2 state: everything needed is in g and v
            const int32_t o = static_cast<int32_t>(g->info & 0x7fffffffu) - 1;
            if (o >= 0) out.push_back(o);
            if (v->out1 >= 0) out.push_back(v->out1);
            c.s = g->next;
            c.has_children = (g->info >> 31) != 0;
            c.fail = t + 1;
            c.fail_has_children = v->nchild1 != 0;
            return;
          }
          const State& st = states[g->next];
          c.s = g->next;
          c.has_children = st.nchild != 0;
          c.fail = -1;
          if (st.out >= 0) out.push_back(st.out);
          for (int32_t d = st.dict; d >= 0; d = states[d].dict) out.push_back(states[d].out);
          return;
        }
      }
      if (c.s <= n_tok_) {  // depth-1 states fail to the root
        c.s = 0;
      } else if (c.fail >= 0) {
        c.s = c.fail;
        c.has_children = c.fail_has_children;
        c.fail = -1;
      } else {
        c.s = states[c.s].fail;
        c.has_children = states[c.s].nchild != 0;
      }
    }
    // From the root: the depth-1 state of this piece, described by its vocabulary slot.
    c.s = t + 1;
    c.has_children = v->nchild1 != 0;
    c.fail = -1;
    if (v->out1 >= 0) out.push_back(v->out1);
  }

  static void sort_unique_tail(std::vector<int32_t>& out, size_t base) {
    const size_t k = out.size() - base;
    if (k <= 1) return;
    int32_t* a = out.data() + base;
    if (k <= 16) {  // insertion sort: a caption matches a handful of entries
      for (size_t i = 1; i < k; ++i) {
        const int32_t x = a[i];
        size_t j = i;
        while (j > 0 && a[j - 1] > x) {
          a[j] = a[j - 1];
          --j;
        }
        a[j] = x;
      }
    } else {
      std::sort(a, a + k);
    }
    out.erase(std::unique(out.begin() + static_cast<std::ptrdiff_t>(base), out.end()), out.end());
  }

  // Two phases per batch of rows. Phase 1 cuts the rows into pieces, hashes them and prefetches
  // their vocabulary slots; phase 2 runs the automaton. The slot loads of a whole batch are then
  // in flight at once instead of one dependent cache miss per word.
  template <bool CI>
  void match_rows_impl(const TextColumn& col, int64_t begin, int64_t end, std::vector<int32_t>& ids,
                       std::vector<int64_t>& ends) const {
    constexpr size_t kBatchPieces = 256;
    std::vector<Piece> pieces;
    pieces.reserve(kBatchPieces + 64);
    std::vector<uint8_t> row_has_pieces;
    int64_t row = begin;
    while (row < end) {
      pieces.clear();
      row_has_pieces.clear();
      const int64_t batch_begin = row;
      for (; row < end && pieces.size() < kBatchPieces; ++row) {
        const uint8_t* p;
        int64_t n;
        if (!col.get(row, p, n) || n == 0) {
          row_has_pieces.push_back(0);
          continue;
        }
        if (n > INT32_MAX) throw InputError("row " + std::to_string(row) + " is longer than 2 GiB");
        const uint8_t* rend = col.readable_end(p, n);
        auto add = [&](const uint8_t* b, size_t len) {
          Piece pc;
          pc.p = b;
          pc.len = static_cast<uint32_t>(len);
          pc.row_end = 0;
          pc.h = len == 0 ? 0 : piece_hash<CI>(b, len, rend, pc.w0, pc.w1);
          if (len != 0) FC_PREFETCH(&vslots_[pc.h & vmask_]);
          pieces.push_back(pc);
        };
        for_each_piece(p, static_cast<size_t>(n), add);
        pieces.back().row_end = 1;
        row_has_pieces.push_back(1);
      }
      size_t k = 0;
      for (int64_t r = batch_begin; r < row; ++r) {
        if (row_has_pieces[static_cast<size_t>(r - batch_begin)]) {
          const size_t base = ids.size();
          Cursor cur;
          for (;;) {
            const Piece& pc = pieces[k++];
            step(lookup_piece<CI>(pc), cur, ids);
            if (pc.row_end) break;
          }
          sort_unique_tail(ids, base);
        }
        ends.push_back(static_cast<int64_t>(ids.size()));
      }
    }
  }

  int32_t intern(const uint8_t* p, size_t n);  // build time: returns the token id of a (folded) piece
  void vocab_insert_slot(int32_t tok);
  void grow_vocab();
  void sync_slots();
  void goto_insert(uint64_t key, int32_t next);
  void validate(int64_t n_entries) const;
  void build_filter();

  bool ci_ = false;
  big_vector<VSlot> vslots_;
  uint64_t vmask_ = 0;
  std::vector<uint8_t> varena_;
  std::vector<uint64_t> voff_{0};
  int32_t empty_tok_ = -1;
  VSlot empty_slot_{0, 0, 0, -1, -1, 0};  // the empty piece lives outside the table
  int32_t n_tok_ = 0;
  big_vector<State> states_;
  big_vector<GSlot> gslots_;
  uint64_t gmask_ = 0;
  std::vector<uint64_t> filter_;  // transition Bloom filter, 2^(64 - fshift_) words
  uint32_t fshift_ = 58;
};

}  // namespace detail
}  // namespace fastcurate
