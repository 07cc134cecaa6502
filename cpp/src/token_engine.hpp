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
#include <cstdlib>
#include <cstring>
#include <new>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fastcurate/bytes.hpp"
#include "fastcurate/huge_alloc.hpp"
#include "fastcurate/simd.hpp"

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define FC_HAVE_SSE2 1
#endif
#include "fastcurate/matcher.hpp"
#include "serial.hpp"
#include "small_sort.hpp"

#if defined(__GNUC__) || defined(__clang__)
#define FC_NOINLINE __attribute__((noinline))
#define FC_INLINE inline __attribute__((always_inline))
#else
#define FC_NOINLINE
#define FC_INLINE inline
#endif

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

// Keeps the first min(n, 16) bytes of two 8-byte words: kKeep[min(n, 16)].
struct KeepMasks {
  uint64_t m[17][2];
  constexpr KeepMasks() : m() {
    for (int n = 0; n <= 16; ++n) {
      m[n][0] = n >= 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * n)) - 1;
      m[n][1] = n <= 8 ? 0 : n >= 16 ? ~uint64_t{0} : (uint64_t{1} << (8 * (n - 8))) - 1;
    }
  }
};
inline constexpr KeepMasks kKeep{};

// Cuts a caption p[0, n) into the pieces of its spaced text, calling emit(ptr, len) for each, in
// order: a run of ordinary bytes, then each of the seven punctuation characters as a piece of its
// own; space, tab, CR and LF only end pieces. `end` bounds the readable memory around the row.
// The SSE2 path classifies 16 bytes per step and walks the separator bits; the last, partial
// block is read in place when 16 bytes are readable there (an Arrow buffer usually continues
// past the row) and from a zero-padded copy otherwise. The scalar path does the same byte by byte.
template <class Emit>
inline void scan_pieces_scalar(const uint8_t* p, size_t n, const uint8_t* piece, size_t from, Emit&& emit) {
  for (size_t i = from; i < n; ++i) {
    const uint8_t c = kClasses.cls[p[i]];
    if (c == kWord) continue;
    emit(piece, static_cast<size_t>(p + i - piece));
    if (c == kPunct) emit(p + i, 1);
    piece = p + i + 1;
  }
  emit(piece, static_cast<size_t>(p + n - piece));
}

template <class Emit>
FC_INLINE void scan_pieces(const uint8_t* p, size_t n, const uint8_t* end, Emit&& emit) {
#ifdef FC_HAVE_SSE2
  if (simd::enabled()) {
    const uint8_t* piece = p;
    for (size_t i = 0; i < n; i += 16) {
      __m128i v;
      uint32_t live = 0xffffu;
      if (n - i < 16) {
        live = (1u << (n - i)) - 1;
        if (end - (p + i) >= 16) {
          v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
        } else {
          alignas(16) uint8_t tail[16] = {};
          std::memcpy(tail, p + i, n - i);
          v = _mm_load_si128(reinterpret_cast<const __m128i*>(tail));
        }
      } else {
        v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
      }
      auto eq = [&](char c) { return _mm_cmpeq_epi8(v, _mm_set1_epi8(c)); };
      const __m128i space = _mm_or_si128(_mm_or_si128(eq(' '), eq('\t')), _mm_or_si128(eq('\n'), eq('\r')));
      const __m128i punct = _mm_or_si128(
          _mm_or_si128(_mm_or_si128(eq(','), eq('.')), _mm_or_si128(eq(';'), eq(':'))),
          _mm_or_si128(_mm_or_si128(eq('?'), eq('!')), eq('`')));
      uint32_t sep = static_cast<uint32_t>(_mm_movemask_epi8(_mm_or_si128(space, punct))) & live;
      const uint32_t pun = static_cast<uint32_t>(_mm_movemask_epi8(punct));
      while (sep != 0) {
        const unsigned b = static_cast<unsigned>(__builtin_ctz(sep));
        const uint8_t* q = p + i + b;
        emit(piece, static_cast<size_t>(q - piece));
        if ((pun >> b) & 1u) emit(q, 1);
        piece = q + 1;
        sep &= sep - 1;
      }
    }
    emit(piece, static_cast<size_t>(p + n - piece));
    return;
  }
#else
  (void)end;
#endif
  scan_pieces_scalar(p, n, p, 0, emit);
}

// The ids found by one worker, appended through a raw pointer by the hot loop (see
// TokenEngine::step). It keeps a result_vector whose size is its capacity (resizing it does not
// initialise memory) and counts the ids itself, so that growing never zeroes or constructs
// anything, and so that a single worker's ids can become the result without a copy (take()).
class IdBuffer {
 public:
  int32_t* data() { return v_.data(); }
  const int32_t* data() const { return v_.data(); }
  size_t size() const { return size_; }
  // Address space only: pages are touched as ids are written.
  void reserve(size_t cap) {
    if (cap > v_.size()) v_.resize(cap);
  }
  // Room for at least `extra` more ids past the end.
  int32_t* room(size_t extra) {
    if (v_.size() - size_ < extra || v_.empty()) v_.resize(std::max({size_ + extra, v_.size() * 2, size_t{1024}}));
    return v_.data() + size_;
  }
  void commit(const int32_t* end) { size_ = static_cast<size_t>(end - v_.data()); }
  // The ids as a vector of exactly size() elements; the buffer is left empty.
  result_vector<int32_t> take() {
    v_.resize(size_);
    size_ = 0;
    return std::move(v_);
  }

 private:
  result_vector<int32_t> v_;
  size_t size_ = 0;
};

class TokenEngine {
 public:
  void build(const std::vector<std::string_view>& entries, bool case_insensitive, BuildReport& report);

  // For rows [begin, end) of the column: appends each row's (sorted, unique) ids to `ids` and
  // the end of its run in `ids` to `ends`. `scratch` is the calling worker's own.
  struct Scratch;
  void match_rows(const TextColumn& col, int64_t begin, int64_t end, IdBuffer& ids, result_vector<int64_t>& ends,
                  Scratch& scratch) const {
    if (ci_) {
      match_rows_impl<true>(col, begin, end, ids, ends, scratch);
    } else {
      match_rows_impl<false>(col, begin, end, ids, ends, scratch);
    }
  }

  void write(serial::Writer& w) const;
  void read(serial::Reader& r, int64_t n_entries);
  size_t memory_bytes() const;

 private:
  // One vocabulary slot: 32 bytes, so that the common case (a piece of at most 16 bytes that
  // leads from the root to a one-piece state) is answered by this one cache line, with no access
  // to the arena, the state array or the transition table. The empty piece is a token like any
  // other (all its bytes and its length are 0); a free slot has tok = -1 and length kFreeLen,
  // which no piece has. The table is hashed by buckets of two slots, one 64-byte line
  // (prefetched as one), filled slot 0 first; a full bucket overflows to the next. A piece that
  // is no token gets kNullSlot, whose token -1 leads to the root (so the automaton needs no
  // branch for it).
  struct alignas(32) VSlot {
    uint64_t w0;      // bytes 0..7 of the piece, zero-padded (folded if ci)
    uint64_t w1;      // bytes 8..15
    uint32_t len;
    int32_t tok;      // -1 = free slot; the depth-1 state of token t is t + 1
    int32_t out1;     // copy of states_[tok + 1].out
    int32_t nchild1;  // copy of states_[tok + 1].nchild
  };
  static constexpr uint32_t kFreeLen = UINT32_MAX;
  static constexpr VSlot kFreeSlot{0, 0, kFreeLen, -1, -1, 0};
  static constexpr VSlot kNullSlot{0, 0, kFreeLen, -1, -1, 0};
  // A bucket of two free slots outside the table: a probe of it ends at the first bucket with
  // kNullSlot (see make_piece). 64-byte aligned, as the table's buckets are.
  alignas(64) static constexpr VSlot kNullBucket[2] = {kFreeSlot, kFreeSlot};
  struct State {
    int32_t fail;
    int32_t out;     // entry id ending here, or -1
    int32_t dict;    // nearest proper suffix state with an output, or -1
    int32_t nchild;  // number of transitions leaving this state
  };
  struct GSlot {
    uint64_t key;   // (state << 32) | token; kEmptyKey = empty
    int32_t next;
    uint32_t info;  // the child's (out + 1) | (has children) << 31, see step()
  };
  static constexpr uint64_t kEmptyKey = ~uint64_t{0};

  // ---- hashing -------------------------------------------------------------------------------
  template <bool CI>
  static uint64_t word_at(const uint8_t* p, size_t n, size_t i, const uint8_t* end) {
    if (i >= n) return 0;
    uint64_t x = bytes::load_upto8(p + i, std::min<size_t>(8, n - i), end);
    return CI ? bytes::fold_ascii8(x) : x;
  }
  static uint64_t rotl23(uint64_t h) { return (h << 23) | (h >> 41); }
  // The hash of a piece from its first 16 bytes (zero-padded) and its length; longer pieces mix
  // in the rest 8 bytes at a time (piece_hash). Table slots are the top bits of the last product
  // (multiplicative hashing), which depend on every byte and on the length.
  static uint64_t hash16(uint64_t w0, uint64_t w1, size_t n) {
    const uint64_t h = (w0 ^ (static_cast<uint64_t>(n) << 56)) * 0x9E3779B97F4A7C15ULL;
    return (rotl23(h) ^ w1) * 0xD6E8FEB86659FD93ULL;
  }
  template <bool CI>
  static uint64_t hash_rest(uint64_t h, const uint8_t* p, size_t n, const uint8_t* end) {
    for (size_t i = 16; i < n; i += 8) h = (rotl23(h) ^ word_at<CI>(p, n, i, end)) * 0xD6E8FEB86659FD93ULL;
    return h;
  }
  // The reference form (build time and the slow path); w0, w1 receive the first 16 bytes.
  template <bool CI>
  static uint64_t piece_hash(const uint8_t* p, size_t n, const uint8_t* end, uint64_t& w0, uint64_t& w1) {
    w0 = word_at<CI>(p, n, 0, end);
    w1 = word_at<CI>(p, n, 8, end);
    return hash_rest<CI>(hash16(w0, w1, n), p, n, end);
  }
  uint64_t vbucket_of(uint64_t h) const { return h >> vshift_; }


  // A piece of a caption, cut and hashed ahead of the automaton (see match_rows_impl).
  struct Piece {
    const uint8_t* p;
    uint64_t w0, w1;     // adjacent: loaded as one 16-byte vector
    const VSlot* first;  // first vocabulary bucket to probe: kNullBucket when the vocabulary
                         // filter rules the piece out
    uint32_t len;
  };

  // VF: screen the piece with the vocabulary filter (see below and VFilterPolicy).
  template <bool CI, bool VF = false>
  FC_INLINE Piece make_piece(const uint8_t* s, size_t len, const uint8_t* end) const {
    Piece pc;
    pc.p = s;
    pc.len = static_cast<uint32_t>(len);
    uint64_t h;
    if (end - s >= 16) {  // two plain loads and a mask: no branch on the length
      const size_t k = std::min<size_t>(len, 16);
      pc.w0 = bytes::load64(s) & kKeep.m[k][0];
      pc.w1 = bytes::load64(s + 8) & kKeep.m[k][1];
      if (CI) {
        pc.w0 = bytes::fold_ascii8(pc.w0);
        pc.w1 = bytes::fold_ascii8(pc.w1);
      }
      h = hash16(pc.w0, pc.w1, len);
      if (len > 16) h = hash_rest<CI>(h, s, len, end);
    } else {
      h = piece_hash<CI>(s, len, end, pc.w0, pc.w1);
    }
    const VSlot* const bucket = vslots_.data() + 2 * vbucket_of(h);
    if (!VF) {
      pc.first = bucket;
      return pc;
    }
    // Pieces that are no token (with WordNet's metadata, 45% of a caption's: stop words, numbers,
    // rare words) would each cost a probe of a random bucket of the vocabulary table (megabytes,
    // mostly out of L2) that runs on while the bucket is full. The vocabulary filter (~16 bits per
    // token, in L1/L2) rules most of them out first; they then probe kNullBucket, which is always
    // in cache and ends the probe at once. Selected without a branch: whether a piece is a token
    // is unpredictable.
    const uint64_t f = vfilter_hash(h);
    const uint64_t fm = filter_mask(f);
    const uint64_t maybe = 0 - static_cast<uint64_t>((vfilter_[f >> vfshift_] & fm) == fm);
    pc.first = reinterpret_cast<const VSlot*>((reinterpret_cast<uintptr_t>(bucket) & maybe) |
                                              (reinterpret_cast<uintptr_t>(kNullBucket) & ~maybe));
    return pc;
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

  // The piece's slot, or &kNullSlot. Pieces of up to 16 bytes (nearly all) compare both slots
  // of their bucket and select the answer without branching on it; only an overflow to the next
  // bucket (rare at load factor 1/2) branches. Free slots have length kFreeLen, which no piece
  // has, so they never match.
  template <bool CI>
  FC_INLINE const VSlot* lookup_piece(const Piece& pc) const {
    if (pc.len > 16) return lookup_long<CI>(pc);
#ifdef FC_HAVE_SSE2
    const __m128i key = _mm_loadu_si128(reinterpret_cast<const __m128i*>(&pc.w0));  // w0, w1
#endif
    const VSlot* s = pc.first;
    for (;;) {
#ifdef FC_HAVE_SSE2
      // Bytes 0..15 of both slots against the piece's in two compares (the slots are 32-byte
      // aligned: the table is allocated 64-byte aligned).
      const uint32_t eq0 = static_cast<uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_load_si128(reinterpret_cast<const __m128i*>(s)), key)));
      const uint32_t eq1 = static_cast<uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_load_si128(reinterpret_cast<const __m128i*>(s + 1)), key)));
      const uint64_t m0 = 0 - static_cast<uint64_t>((eq0 == 0xffffu) & (s[0].len == pc.len));
      const uint64_t m1 = 0 - static_cast<uint64_t>((eq1 == 0xffffu) & (s[1].len == pc.len));
#else
      const uint64_t m0 = 0 - static_cast<uint64_t>(((s[0].w0 ^ pc.w0) | (s[0].w1 ^ pc.w1) | (s[0].len ^ pc.len)) == 0);
      const uint64_t m1 = 0 - static_cast<uint64_t>(((s[1].w0 ^ pc.w0) | (s[1].w1 ^ pc.w1) | (s[1].len ^ pc.len)) == 0);
#endif
      const uint64_t mf = 0 - static_cast<uint64_t>(s[1].len == kFreeLen);  // the probe ends here
      const uintptr_t r = (reinterpret_cast<uintptr_t>(s) & m0) | (reinterpret_cast<uintptr_t>(s + 1) & m1) |
                          (reinterpret_cast<uintptr_t>(&kNullSlot) & mf & ~(m0 | m1));
      if (r != 0) return reinterpret_cast<const VSlot*>(r);
      s = next_bucket(s);
    }
  }
  // The bucket after `s` (kNullBucket never gets here: its probe ends at once).
  const VSlot* next_bucket(const VSlot* s) const {
    const VSlot* const table = vslots_.data();
    return table + 2 * ((static_cast<uint64_t>(s - table) / 2 + 1) & vbmask_);
  }
  template <bool CI>
  FC_NOINLINE const VSlot* lookup_long(const Piece& pc) const {
    const VSlot* s = pc.first;
    for (;;) {
      for (int k = 0; k < 2; ++k) {
        if (s[k].w0 == pc.w0 && s[k].w1 == pc.w1 && s[k].len == pc.len && tail_equal<CI>(pc.p, pc.len, s[k].tok)) return s + k;
      }
      if (s[1].len == kFreeLen) return &kNullSlot;
      s = next_bucket(s);
    }
  }
  const VSlot* lookup(const uint8_t* p, size_t n) const {  // build time: p holds folded bytes; nullptr if absent
    Piece pc;
    pc.p = p;
    pc.len = static_cast<uint32_t>(n);
    // Not through the vocabulary filter: it is built once the vocabulary is complete.
    pc.first = vslots_.data() + 2 * vbucket_of(piece_hash<false>(p, n, p + n, pc.w0, pc.w1));
    const VSlot* v = lookup_piece<false>(pc);
    return v->tok >= 0 ? v : nullptr;
  }

  static uint64_t gkey(int32_t s, int32_t t) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(s)) << 32) | static_cast<uint32_t>(t);
  }
  // Multiplicative hashing: the slot is the top bits of key * C, which depend on every bit of
  // both the state and the token.
  static uint64_t ghash(uint64_t key) { return key * 0x9E3779B97F4A7C15ULL; }
  uint64_t gslot_of(uint64_t key) const { return ghash(key) >> gshift_; }

  // Most probes for a (state, token) transition miss: the next word rarely continues a
  // multi-word entry. The transition table is far larger than the cache, so a miss there is a
  // DRAM round trip; a blocked Bloom filter (two bits in one 64-bit word per transition), sized
  // to stay in L2, answers most misses without touching the table. The word is chosen by the top
  // bits of the product, the two bits by bits 36..47, so both depend on the state and the token.
  static uint64_t filter_hash(uint64_t key) { return key * 0xD6E8FEB86659FD93ULL; }
  // The vocabulary filter's word and bits, from a piece's hash (whose top bits pick its bucket).
  static uint64_t vfilter_hash(uint64_t piece_hash) { return piece_hash * 0x9FB21C651E98DF25ULL; }
  static uint64_t filter_mask(uint64_t h) { return (uint64_t{1} << ((h >> 36) & 63)) | (uint64_t{1} << ((h >> 42) & 63)); }
  const uint64_t* filter_word(uint64_t key) const { return &filter_[filter_hash(key) >> fshift_]; }
  bool maybe_edge(uint64_t key) const {
    const uint64_t h = filter_hash(key);
    const uint64_t m = filter_mask(h);
    return (filter_[h >> fshift_] & m) == m;
  }

  // The transition slot of `key`, or nullptr, without asking the filter.
  const GSlot* probe_edge(uint64_t key) const {
    uint64_t i = gslot_of(key);
    for (;;) {
      const GSlot& g = gslots_[i];
      if (g.key == key) return &g;
      if (g.key == kEmptyKey) return nullptr;
      i = (i + 1) & gmask_;
    }
  }
  const GSlot* find_edge(uint64_t key) const { return maybe_edge(key) ? probe_edge(key) : nullptr; }
  int32_t go(int32_t s, int32_t t) const {  // build time
    if (s == 0) return t + 1;
    const GSlot* g = find_edge(gkey(s, t));
    return g == nullptr ? 0 : g->next;
  }

  // ---- the automaton ---------------------------------------------------------------------------
  // Where the automaton is. States 1..n_tok_ are the depth-1 states (one per token); a depth-1
  // state before a piece is always the previous piece's (directly or by failure: a depth-1
  // suffix is the last piece alone), so the one transition it can take there is worked out ahead
  // of time (`k1`, see step). Most matched multi-word entries are two pieces long, and a depth-2
  // state needs nothing from the state array: its failure link is a depth-1 state, and its own
  // output and child flag are in the transition slot that led to it.
  struct Cursor {
    int32_t s = 0;
    bool has_children = false;  // for states deeper than 1
    bool depth2 = false;        // s has depth 2 (known when entered from depth 1)
  };

  // What passes 2-6 worked out ahead for a piece (see match_rows_impl).
  struct Ahead {
    int32_t tok;        // the piece's token (-1: no token) and the output of its depth-1 state,
    int32_t out1;       // copied from its vocabulary slot (kNullSlot if it is no token) by pass 2,
                        // so that the passes after it do not read that random line again
    uint64_t k1;        // passes 2-3: key of the transition (depth-1 state of the previous
                        // piece's token, this token) while it may exist, else 0
    const GSlot* e1;    // pass 4, where k1 != 0: the transition of k1, nullptr if there is none
    uint64_t key2;      // pass 4: the key (depth-2 state that e1 of the previous piece leads to,
                        // this token), if worked out; may be left over from an earlier batch
    const GSlot* e2;    // passes 4-6: the transition of key2, nullptr if there is none
  };

  // Feeds one piece to the automaton and writes the ids of the entries that end here at `o`
  // (which must have room for max_out_ ids); returns the new end. `a.tok` is the piece's token
  // (-1: a piece that occurs in no entry, through which nothing can continue).
  FC_INLINE int32_t* step(const Ahead& a, Cursor& c, int32_t* o) const {
    if (c.s > n_tok_) {
      // Deeper than one piece: extend if possible, else follow failure links until depth 1.
      const int32_t t = a.tok;
      if (t < 0) {  // no token: nothing continues, not even from depth 1
        c.s = 0;
        return o;
      }
      for (;;) {
        if (c.has_children) {
          const uint64_t key = gkey(c.s, t);
          // Pass 6 looked this transition up when it is the one worked out ahead (a pair left
          // over from an earlier batch is still a key with its own transition).
          const GSlot* g = key == a.key2 ? a.e2 : find_edge(key);
          if (g != nullptr) {
            const State& st = states_[static_cast<size_t>(g->next)];
            c.s = g->next;
            c.has_children = st.nchild != 0;
            c.depth2 = false;
            if (st.out >= 0) *o++ = st.out;
            // The output chain (proper suffixes that are entries, deepest first). Its last link
            // can be the depth-1 state of this piece, whose output v already holds: the state
            // array (random reads, in a dependent chain) is read for the deeper links only.
            int32_t d = st.dict;
            for (; d > n_tok_; d = states_[static_cast<size_t>(d)].dict) *o++ = states_[static_cast<size_t>(d)].out;
            if (d >= 0) *o++ = a.out1;  // d == t + 1
            return o;
          }
        }
        if (c.depth2) {
          c.s = 1;  // a depth-1 state: the previous piece's
          break;
        }
        c.s = states_[static_cast<size_t>(c.s)].fail;
        if (c.s <= n_tok_) break;
        c.has_children = states_[static_cast<size_t>(c.s)].nchild != 0;
      }
    }
    // Here the state is the root or a depth-1 state, and a depth-1 state is the previous piece's
    // (the failure chain of a state that ends with a token reaches that token's depth-1 state
    // before the root), so the one transition it can take is a.e1; a.e1 is nullptr after the
    // root, since the previous piece then was no token.
    const GSlot* const e1 = a.k1 != 0 ? a.e1 : nullptr;
    if (e1 != nullptr && c.s != 0) {  // to a depth-2 state; its failure state (this piece's depth-1) outputs out1
      const uint32_t info = e1->info;
      const int32_t x = static_cast<int32_t>(info & 0x7fffffffu) - 1;
      *o = x;
      o += x >= 0;
      *o = a.out1;
      o += a.out1 >= 0;
      c.s = e1->next;
      c.has_children = (info >> 31) != 0;
      c.depth2 = true;
      return o;
    }
    // From the root: the depth-1 state of this piece, described by its vocabulary slot (the
    // root itself for kNullSlot).
    c.s = a.tok + 1;
    *o = a.out1;
    return o + (a.out1 >= 0);
  }

  // ---- the batched pipeline -------------------------------------------------------------------
  // Rows go through the automaton in batches of about kBatchPieces pieces, in passes, so that
  // the cache misses of many captions are in flight together instead of one dependent miss at a
  // time. Each pass issues prefetches that a later pass consumes:
  //   1. scan: cut the rows into pieces, hash them, prefetch their vocabulary buckets;
  //   2. lookup: find the pieces' tokens. Where the previous piece's depth-1 state has children,
  //      the key of the one transition it can take here is known already: prefetch its filter word;
  //   3. filter: test those keys; prefetch the transition slots of the keys that pass;
  //   4. edges: read those transitions (Ahead::e1). Where one leads to a depth-2 state with
  //      children, the key of its transition with the next piece is known: prefetch its filter word;
  //   5. filter2: test those keys; prefetch the transition slots of the keys that pass;
  //   6. edges2: read those transitions (Ahead::e2); prefetch the states they lead to;
  //   7. run: the automaton, whose transitions out of depths 1 and 2 now hit the cache.
  // Rows longer than kLongRow bytes are matched alone, piece by piece (match_long_row), so that
  // the batch's memory stays bounded whatever the input.
  static constexpr size_t kBatchPieces = 512;
  static constexpr size_t kBatchRows = 256;
  static constexpr size_t kLongRow = 2048;
  static constexpr size_t kMaxPieces = kBatchPieces + 2 * kLongRow + 2;  // a row of n bytes has <= 2n + 1 pieces

  // Whether pass 1 screens pieces with the vocabulary filter. It pays where many pieces are no
  // token (45% of the pieces with WordNet's metadata on web captions: 1.20-1.22x the captions/s)
  // and costs ~5% where nearly all are (17% non-tokens with the benchmark's 500k entries, taken
  // from the captions themselves: 0.95-1.0x), and the share depends on metadata and captions
  // alike. So it is measured as the worker goes: every kProbeEvery-th batch is screened and
  // counted, and the batches until the next such one screen if at least a quarter of its pieces
  // were ruled out. The result does not depend on the choice.
  class VFilterPolicy {
   public:
    static constexpr uint32_t kProbeEvery = 32;
    enum Mode { kOff, kOn, kProbe };
    Mode next() {
      const int forced = simd::vocab_filter();
      if (forced >= 0) return forced ? kOn : kOff;
      return (batch_++ % kProbeEvery) == 0 ? kProbe : on_ ? kOn : kOff;
    }
    // A probed batch of `pieces` pieces, of which `ruled_out` were ruled out.
    void measured(size_t ruled_out, size_t pieces) { on_ = ruled_out * 4 >= pieces && pieces != 0; }

   private:
    uint32_t batch_ = 0;
    bool on_ = true;
  };

 public:
  // Per-worker scratch memory of match_rows (about 300 KB), reused across calls.
  struct Scratch {
    std::unique_ptr<Piece[]> pieces{new Piece[kMaxPieces]};
    // Zeroed once: (key2, e2) of every piece is then always a consistent pair, even when left
    // over from an earlier batch (see step).
    std::unique_ptr<Ahead[]> ahead{new Ahead[kMaxPieces]()};
    std::unique_ptr<uint32_t[]> cand{new uint32_t[kMaxPieces]};
    std::unique_ptr<uint32_t[]> cand2{new uint32_t[kMaxPieces]};
    uint32_t row_end[kBatchRows];  // end of each row's pieces
    size_t n_pieces = 0;
    size_t ruled_out = 0;  // pieces that pass 1 ruled out with the vocabulary filter
    size_t n_rows = 0;
    VFilterPolicy vfilter;
    size_t n_cand = 0;
    size_t n_cand2 = 0;
  };

 private:
  // Pass 1. Returns the first row not taken; stops before a long row (returned as `long_row`).
  // VF: screen the pieces with the vocabulary filter; COUNT: count those it rules out (b.ruled_out).
  template <bool CI, bool VF, bool COUNT>
  FC_NOINLINE int64_t pass_scan(const TextColumn& col, int64_t row, int64_t end, Scratch& b, bool& long_row) const {
    long_row = false;
    b.n_rows = 0;
    size_t ruled_out = 0;
    Piece* out = b.pieces.get();
    Piece* const stop = out + kBatchPieces;
    for (; row < end && out < stop && b.n_rows < kBatchRows; ++row) {
      const uint8_t* p;
      int64_t n;
      if (col.get(row, p, n) && n != 0) {
        if (static_cast<uint64_t>(n) > kLongRow) {
          long_row = true;
          break;
        }
        const uint8_t* rend = col.readable_end(p, n);
        scan_pieces(p, static_cast<size_t>(n), rend, [&](const uint8_t* s, size_t len) {
          *out = make_piece<CI, VF>(s, len, rend);
          FC_PREFETCH(out->first);
          if (COUNT) ruled_out += out->first == kNullBucket;
          ++out;
        });
      }
      b.row_end[b.n_rows++] = static_cast<uint32_t>(out - b.pieces.get());
    }
    b.n_pieces = static_cast<size_t>(out - b.pieces.get());
    b.ruled_out = ruled_out;
    return row;
  }

  // Pass 2. Branch-free apart from the table probe: whether a piece is a token, or continues
  // anything, is data that a branch predictor cannot guess. (Masks rather than ?: below, so that
  // the compiler cannot turn them into branches; the members are read into locals once, as the
  // stores through the scratch pointers would otherwise make the compiler reload them.)
  template <bool CI>
  FC_NOINLINE void pass_lookup(Scratch& b) const {
    const Piece* const pieces = b.pieces.get();
    Ahead* const ahead = b.ahead.get();
    uint32_t* const cand = b.cand.get();
    const uint64_t* const filter = filter_.data();
    const uint32_t fshift = fshift_;
    size_t nc = 0;
    size_t j = 0;
    for (size_t r = 0; r < b.n_rows; ++r) {
      int32_t prev1 = 0;  // depth-1 state of the previous piece when it has children, else 0
      for (const size_t e = b.row_end[r]; j < e; ++j) {
        const VSlot* v = lookup_piece<CI>(pieces[j]);
        const int32_t t = v->tok;
        const uint64_t cand_mask = 0 - static_cast<uint64_t>((prev1 != 0) & (t >= 0));
        const uint64_t key = gkey(prev1, t) & cand_mask;
        Ahead& a = ahead[j];
        a.tok = t;
        a.out1 = v->out1;
        a.k1 = key;  // e1 is only read where k1 != 0, and written by pass 4 there
        FC_PREFETCH(filter + ((filter_hash(key) >> fshift) & cand_mask));
        cand[nc] = static_cast<uint32_t>(j);
        nc += cand_mask & 1;
        prev1 = (t + 1) & -static_cast<int32_t>(v->nchild1 != 0);
      }
    }
    b.n_cand = nc;
  }

  // Pass 3.
  FC_NOINLINE void pass_filter(Scratch& b) const {
    Ahead* const ahead = b.ahead.get();
    const uint32_t* const cand = b.cand.get();
    const GSlot* const gslots = gslots_.data();
    const uint64_t* const filter = filter_.data();
    const uint32_t fshift = fshift_, gshift = gshift_;
    for (size_t c = 0; c < b.n_cand; ++c) {
      Ahead& a = ahead[cand[c]];
      const uint64_t key = a.k1;
      const uint64_t h = filter_hash(key);
      const uint64_t m = filter_mask(h);
      const uint64_t pass_mask = 0 - static_cast<uint64_t>((filter[h >> fshift] & m) == m);
      a.k1 = key & pass_mask;
      FC_PREFETCH(gslots + ((ghash(key) >> gshift) & pass_mask));
    }
  }

  // Pass 4.
  FC_NOINLINE void pass_edges(Scratch& b) const {
    Ahead* const ahead = b.ahead.get();
    const uint32_t* const cand = b.cand.get();
    uint32_t* const cand2 = b.cand2.get();
    size_t n2 = 0;
    size_t r = 0;  // the row of piece j (candidates come in increasing order)
    for (size_t c = 0; c < b.n_cand; ++c) {
      const size_t j = cand[c];
      if (ahead[j].k1 == 0) continue;
      const GSlot* g = probe_edge(ahead[j].k1);
      ahead[j].e1 = g;
      while (b.row_end[r] <= j) ++r;
      if (g == nullptr || (g->info >> 31) == 0 || j + 1 >= b.row_end[r] || ahead[j + 1].tok < 0) continue;
      const uint64_t key = gkey(g->next, ahead[j + 1].tok);
      ahead[j + 1].key2 = key;
      ahead[j + 1].e2 = nullptr;  // unless pass 6 finds it
      FC_PREFETCH(filter_word(key));
      cand2[n2++] = static_cast<uint32_t>(j + 1);
    }
    b.n_cand2 = n2;
  }

  // Pass 5.
  FC_NOINLINE void pass_filter2(Scratch& b) const {
    Ahead* ahead = b.ahead.get();
    const uint32_t* cand2 = b.cand2.get();
    uint32_t* keep = b.cand2.get();
    size_t n = 0;
    for (size_t c = 0; c < b.n_cand2; ++c) {
      const uint64_t key = ahead[cand2[c]].key2;
      if (maybe_edge(key)) {
        FC_PREFETCH(&gslots_[gslot_of(key)]);
        keep[n++] = cand2[c];
      }
    }
    b.n_cand2 = n;
  }

  // Pass 6.
  FC_NOINLINE void pass_edges2(Scratch& b) const {
    Ahead* ahead = b.ahead.get();
    const uint32_t* cand2 = b.cand2.get();
    for (size_t c = 0; c < b.n_cand2; ++c) {
      Ahead& a = ahead[cand2[c]];
      a.e2 = probe_edge(a.key2);
      if (a.e2 != nullptr) FC_PREFETCH(&states_[static_cast<size_t>(a.e2->next)]);
    }
  }

  // Pass 7.
  FC_NOINLINE void pass_run(const Scratch& b, IdBuffer& ids, result_vector<int64_t>& ends) const {
    const Ahead* ahead = b.ahead.get();
    size_t j = 0;
    for (size_t r = 0; r < b.n_rows; ++r) {
      const size_t e = b.row_end[r];
      int32_t* const base = ids.room((e - j) * max_out_);
      int32_t* o = base;
      Cursor c;
      for (; j < e; ++j) o = step(ahead[j], c, o);
      ids.commit(base + sort_unique_ids(base, static_cast<size_t>(o - base)));
      ends.push_back(static_cast<int64_t>(ids.size()));
    }
  }

  // A row longer than kLongRow, piece by piece with the same automaton.
  template <bool CI>
  FC_NOINLINE void match_long_row(const uint8_t* p, size_t n, const uint8_t* rend, IdBuffer& ids,
                                  result_vector<int64_t>& ends) const {
    const size_t base = ids.size();
    Cursor c;
    int32_t prev1 = 0;
    scan_pieces(p, n, rend, [&](const uint8_t* s, size_t len) {
      const VSlot* v = lookup_piece<CI>(make_piece<CI>(s, len, rend));
      const GSlot* e1 = v->tok >= 0 && prev1 != 0 ? find_edge(gkey(prev1, v->tok)) : nullptr;
      const Ahead a{v->tok, v->out1, e1 != nullptr ? e1->key : 0, e1, 0, nullptr};
      prev1 = v->nchild1 != 0 ? v->tok + 1 : 0;
      ids.commit(step(a, c, ids.room(max_out_)));
    });
    int32_t* a = ids.data() + base;
    ids.commit(a + sort_unique_ids(a, ids.size() - base));
    ends.push_back(static_cast<int64_t>(ids.size()));
  }

  template <bool CI>
  void match_rows_impl(const TextColumn& col, int64_t begin, int64_t end, IdBuffer& ids, result_vector<int64_t>& ends,
                       Scratch& b) const {
    int64_t row = begin;
    while (row < end) {
      bool long_row = false;
      const VFilterPolicy::Mode mode = b.vfilter.next();
      if (mode == VFilterPolicy::kProbe) {
        row = pass_scan<CI, true, true>(col, row, end, b, long_row);
        b.vfilter.measured(b.ruled_out, b.n_pieces);
      } else if (mode == VFilterPolicy::kOn) {
        row = pass_scan<CI, true, false>(col, row, end, b, long_row);
      } else {
        row = pass_scan<CI, false, false>(col, row, end, b, long_row);
      }
      if (b.n_rows != 0) {
        pass_lookup<CI>(b);
        pass_filter(b);
        pass_edges(b);
        pass_filter2(b);
        pass_edges2(b);
        pass_run(b, ids, ends);
      }
      if (long_row) {
        const uint8_t* p = nullptr;
        int64_t n = 0;
        col.get(row, p, n);  // valid and longer than kLongRow: pass_scan looked
        if (n > INT32_MAX) throw InputError("row " + std::to_string(row) + " is longer than 2 GiB");
        match_long_row<CI>(p, static_cast<size_t>(n), col.readable_end(p, n), ids, ends);
        ++row;
      }
    }
  }

  // ---- build and load --------------------------------------------------------------------------
  int32_t intern(const uint8_t* p, size_t n);  // build time: returns the token id of a (folded) piece
  void vocab_insert_slot(int32_t tok);
  void grow_vocab();
  void sync_slots();
  void goto_insert(uint64_t key, int32_t next);
  void validate(int64_t n_entries);
  void build_filter();
  void build_vfilter();
  void place_slots();
  void set_vocab_geometry();
  static uint32_t shift_for(size_t table_size);

  bool ci_ = false;
  big_vector<VSlot> vslots_;
  uint64_t vmask_ = 0;     // vslots_.size() - 1
  uint64_t vbmask_ = 0;    // buckets - 1
  uint32_t vshift_ = 64;  // 64 - log2(buckets)
  std::vector<uint8_t> varena_;
  std::vector<uint64_t> voff_{0};
  int32_t empty_tok_ = -1;  // the token of the empty piece, if any entry has one
  int32_t n_tok_ = 0;
  size_t max_out_ = 2;      // most ids one piece can add: max(2, deepest state's depth)
  big_vector<State> states_;
  big_vector<GSlot> gslots_;
  uint64_t gmask_ = 0;
  uint32_t gshift_ = 64;  // 64 - log2(gslots_.size())
  std::vector<uint64_t> filter_;  // transition Bloom filter, 2^(64 - fshift_) words
  uint32_t fshift_ = 58;
  // Vocabulary filter (see make_piece), 2^(64 - vfshift_) words; zeros until
  // build_vfilter runs, which rules every piece out.
  std::vector<uint64_t> vfilter_ = std::vector<uint64_t>(2, 0);
  uint32_t vfshift_ = 63;
};

}  // namespace detail
}  // namespace fastcurate
