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
#include <cstdint>
#include <string_view>
#include <vector>

#include "fastcurate/bytes.hpp"
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

class TokenEngine {
 public:
  void build(const std::vector<std::string_view>& entries, bool case_insensitive, BuildReport& report);

  // Appends the (sorted, unique) ids that the text matches to `out`.
  void match_text(const uint8_t* p, int64_t n, const uint8_t* readable_end, std::vector<int32_t>& out) const {
    if (ci_) {
      match_impl<true>(p, n, readable_end, out);
    } else {
      match_impl<false>(p, n, readable_end, out);
    }
  }

  void write(serial::Writer& w) const;
  void read(serial::Reader& r, int64_t n_entries);
  size_t memory_bytes() const;

 private:
  struct VSlot {
    uint64_t prefix;  // the first (up to) 8 bytes of the piece, zero-padded (folded if ci)
    uint32_t len;
    int32_t tok;      // -1 = empty slot
  };
  struct State {
    int32_t fail;
    int32_t out;     // entry id ending here, or -1
    int32_t dict;    // nearest proper suffix state with an output, or -1
    int32_t nchild;  // number of non-root goto transitions leaving this state
  };
  struct GSlot {
    uint64_t key;  // (state << 32) | token; kEmptyKey = empty
    int32_t next;
    int32_t pad;
  };
  static constexpr uint64_t kEmptyKey = ~uint64_t{0};

  template <bool CI>
  static uint64_t piece_hash(const uint8_t* p, size_t n, const uint8_t* end, uint64_t& prefix) {
    uint64_t w = bytes::load_upto8(p, n, end);
    if (CI) w = bytes::fold_ascii8(w);
    prefix = w;
    uint64_t h = (w ^ (static_cast<uint64_t>(n) << 56)) * 0x9E3779B97F4A7C15ULL;
    for (size_t i = 8; i < n; i += 8) {
      uint64_t x = bytes::load_upto8(p + i, std::min<size_t>(8, n - i), end);
      if (CI) x = bytes::fold_ascii8(x);
      h = ((h << 23) | (h >> 41)) ^ x;
      h *= 0x9E3779B97F4A7C15ULL;
    }
    return h ^ (h >> 29);
  }

  template <bool CI>
  bool tail_equal(const uint8_t* p, size_t n, int32_t tok) const {
    // Bytes 8.. of the piece against the stored (already folded) token bytes.
    const uint8_t* q = varena_.data() + voff_[static_cast<size_t>(tok)] + 8;
    if (!CI) return std::memcmp(p + 8, q, n - 8) == 0;
    for (size_t i = 8; i < n; ++i, ++q) {
      if (bytes::fold_ascii(p[i]) != *q) return false;
    }
    return true;
  }

  template <bool CI>
  int32_t lookup(const uint8_t* p, size_t n, const uint8_t* end) const {
    if (n == 0) return empty_tok_;
    uint64_t prefix;
    uint64_t i = piece_hash<CI>(p, n, end, prefix) & vmask_;
    for (;;) {
      const VSlot& s = vslots_[i];
      if (s.tok < 0) return -1;
      if (s.prefix == prefix && s.len == n && (n <= 8 || tail_equal<CI>(p, n, s.tok))) return s.tok;
      i = (i + 1) & vmask_;
    }
  }

  static uint64_t gkey(int32_t s, int32_t t) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(s)) << 32) | static_cast<uint32_t>(t);
  }
  static uint64_t ghash(uint64_t key) { return (key * 0x9E3779B97F4A7C15ULL) >> 17; }

  int32_t go_nonroot(int32_t s, int32_t t) const {
    const uint64_t key = gkey(s, t);
    uint64_t i = ghash(key) & gmask_;
    for (;;) {
      const GSlot& g = gslots_[i];
      if (g.key == key) return g.next;
      if (g.key == kEmptyKey) return 0;
      i = (i + 1) & gmask_;
    }
  }
  int32_t go(int32_t s, int32_t t) const { return s == 0 ? root_next_[static_cast<size_t>(t)] : go_nonroot(s, t); }

  template <bool CI>
  void match_impl(const uint8_t* p, int64_t n, const uint8_t* end, std::vector<int32_t>& out) const {
    const size_t base = out.size();
    int32_t s = 0;
    const State* states = states_.data();
    auto feed = [&](const uint8_t* b, size_t len) {
      const int32_t t = lookup<CI>(b, len, end);
      if (t < 0) {  // a piece that occurs in no entry: nothing can continue through it
        s = 0;
        return;
      }
      for (;;) {
        if (s == 0) {
          s = root_next_[static_cast<size_t>(t)];
          break;
        }
        if (states[s].nchild != 0) {
          const int32_t nx = go_nonroot(s, t);
          if (nx > 0) {
            s = nx;
            break;
          }
        }
        s = states[s].fail;
      }
      if (s == 0) return;
      const State& st = states[s];
      if (st.out >= 0) out.push_back(st.out);
      for (int32_t d = st.dict; d >= 0; d = states[d].dict) out.push_back(states[d].out);
    };
    const uint8_t* piece = p;
    const uint8_t* const stop = p + n;
    for (const uint8_t* q = p; q < stop; ++q) {
      const uint8_t c = kClasses.cls[*q];
      if (c == kWord) continue;
      feed(piece, static_cast<size_t>(q - piece));
      if (c == kPunct) feed(q, 1);
      piece = q + 1;
    }
    feed(piece, static_cast<size_t>(stop - piece));
    if (out.size() - base > 1) {
      std::sort(out.begin() + static_cast<std::ptrdiff_t>(base), out.end());
      out.erase(std::unique(out.begin() + static_cast<std::ptrdiff_t>(base), out.end()), out.end());
    }
  }

  int32_t intern(const uint8_t* p, size_t n);  // build time: returns the token id of a (folded) piece
  void vocab_insert_slot(int32_t tok);
  void grow_vocab();
  void goto_insert(uint64_t key, int32_t next);
  void validate(int64_t n_entries) const;

  bool ci_ = false;
  std::vector<VSlot> vslots_;
  uint64_t vmask_ = 0;
  std::vector<uint8_t> varena_;
  std::vector<uint64_t> voff_{0};
  int32_t empty_tok_ = -1;
  std::vector<State> states_;
  std::vector<int32_t> root_next_;
  std::vector<GSlot> gslots_;
  uint64_t gmask_ = 0;
};

}  // namespace detail
}  // namespace fastcurate
