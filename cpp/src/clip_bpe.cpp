// CLIP byte-level BPE (see fastcurate/clip_bpe.hpp for the exact semantics and why they hold).
#include "fastcurate/clip_bpe.hpp"

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <queue>
#include <utility>

namespace fastcurate {

namespace {

constexpr uint64_t kEmptyKey = ~uint64_t{0};
constexpr size_t kDefaultMaxCacheWords = size_t{1} << 21;
// Longer words are not cached: they are rare, and a cache entry's offsets are 32-bit.
constexpr size_t kMaxCachedWordBytes = 4096;
// The pools are cleared before their 32-bit offsets could overflow.
constexpr size_t kMaxPoolItems = size_t{1} << 30;
constexpr size_t kInitialCacheSlots = size_t{1} << 12;  // grows by doubling at half load

constexpr std::string_view kSot = "<start_of_text>";
constexpr std::string_view kEot = "<end_of_text>";

// Character classes of open_clip's split regex on lower-cased ASCII.
enum : uint8_t { kSpace = 0, kLetter = 1, kDigit = 2, kOther = 3 };

struct AsciiTables {
  uint8_t cls[256];
  uint8_t lower[256];
  // Raw mode: bytes that need Python (anything but printable ASCII, tab and newline).
  bool raw_bad[256];
  // Precleaned mode: non-ASCII, or whitespace that str.split() would have removed (the blank is
  // the only whitespace a cleaned row can hold).
  bool clean_bad[256];
  AsciiTables() {
    for (int b = 0; b < 256; ++b) {
      const auto u = static_cast<uint8_t>(b);
      lower[b] = (b >= 'A' && b <= 'Z') ? static_cast<uint8_t>(b + 32) : u;
      const int l = lower[b];
      if (b == ' ' || b == '\t' || b == '\n') {
        cls[b] = kSpace;
      } else if (l >= 'a' && l <= 'z') {
        cls[b] = kLetter;
      } else if (b >= '0' && b <= '9') {
        cls[b] = kDigit;
      } else {
        cls[b] = kOther;
      }
      raw_bad[b] = !((b >= 0x20 && b <= 0x7E) || b == '\t' || b == '\n');
      clean_bad[b] = b >= 0x80 || (b >= 0x09 && b <= 0x0D) || (b >= 0x1C && b <= 0x1F);
    }
  }
};

const AsciiTables& tables() {
  static const AsciiTables t;
  return t;
}

inline uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xFF51AFD7ED558CCDULL;
  x ^= x >> 33;
  x *= 0xC4CEB9FE1A85EC53ULL;
  x ^= x >> 33;
  return x;
}

inline uint64_t hash_word(const uint8_t* p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ULL ^ (n * 0xD6E8FEB86659FD93ULL);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    std::memcpy(&v, p + i, 8);
    h = (h ^ v) * 0x9FB21C651E98DF25ULL;
    h ^= h >> 29;
  }
  uint64_t v = 0;
  if (i < n) std::memcpy(&v, p + i, n - i);
  return mix64(h ^ v);
}

inline uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// Does the row need Python? (see the header for the two rules)
inline bool needs_python(const uint8_t* p, int64_t n, bool precleaned) {
  const AsciiTables& t = tables();
  if (precleaned) {
    for (int64_t i = 0; i < n; ++i) {
      if (t.clean_bad[p[i]]) return true;
    }
    return false;
  }
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t b = p[i];
    if (t.raw_bad[b]) return true;
    // An '&' may start an HTML entity unless whitespace or the end follows it.
    if (b == '&' && i + 1 < n && p[i + 1] != ' ' && p[i + 1] != '\t' && p[i + 1] != '\n') return true;
  }
  return false;
}

inline bool starts_with_lower(const uint8_t* p, const uint8_t* end, std::string_view s) {
  if (end - p < static_cast<std::ptrdiff_t>(s.size())) return false;
  const AsciiTables& t = tables();
  for (size_t i = 0; i < s.size(); ++i) {
    if (t.lower[p[i]] != static_cast<uint8_t>(s[i])) return false;
  }
  return true;
}

}  // namespace

ClipBpe::ClipBpe(const ClipBpeTables& t, size_t max_cache_words)
    : max_cache_words_(max_cache_words == 0 ? kDefaultMaxCacheWords : max_cache_words) {
  const int32_t v = t.vocab_size;
  if (v <= 0) throw InputError("ClipBpe: vocab_size must be positive");
  auto check_id = [v](int32_t id, const std::string& what) {
    if (id < 0 || id >= v) {
      throw InputError("ClipBpe: " + what + " = " + std::to_string(id) + " is outside the vocabulary [0, " +
                       std::to_string(v) + ")");
    }
  };
  for (int b = 0; b < 256; ++b) {
    check_id(t.byte_id[b], "byte_id[" + std::to_string(b) + "]");
    check_id(t.byte_end_id[b], "byte_end_id[" + std::to_string(b) + "]");
    byte_id_[b] = t.byte_id[b];
    byte_end_id_[b] = t.byte_end_id[b];
  }
  check_id(t.sot_id, "sot_id");
  check_id(t.eot_id, "eot_id");
  sot_ = t.sot_id;
  eot_ = t.eot_id;
  const size_t m = t.merge_left.size();
  if (t.merge_right.size() != m || t.merge_result.size() != m) {
    throw InputError("ClipBpe: merge_left, merge_right and merge_result must have the same length");
  }
  if (m > static_cast<size_t>(std::numeric_limits<int32_t>::max())) throw InputError("ClipBpe: too many merges");
  size_t cap = 1024;
  while (cap < 2 * m) cap <<= 1;
  merges_.assign(cap, MergeSlot{kEmptyKey, 0, 0});
  merge_mask_ = cap - 1;
  // Largest rank that makes each id (-1: a base byte symbol), for the monotonicity check.
  std::vector<int64_t> made_at(static_cast<size_t>(v), -1);
  for (size_t r = 0; r < m; ++r) {
    const int32_t a = t.merge_left[r], b = t.merge_right[r], c = t.merge_result[r];
    check_id(a, "merge_left[" + std::to_string(r) + "]");
    check_id(b, "merge_right[" + std::to_string(r) + "]");
    check_id(c, "merge_result[" + std::to_string(r) + "]");
    const uint64_t key = pair_key(a, b);
    uint64_t i = mix64(key) & merge_mask_;
    while (merges_[i].key != kEmptyKey) {
      if (merges_[i].key == key) {
        throw InputError("ClipBpe: merge " + std::to_string(r) + " repeats the pair of merge " +
                         std::to_string(merges_[i].rank) + "; each pair must have one rank");
      }
      i = (i + 1) & merge_mask_;
    }
    merges_[i] = MergeSlot{key, static_cast<int32_t>(r), c};
    made_at[static_cast<size_t>(c)] = std::max<int64_t>(made_at[static_cast<size_t>(c)], static_cast<int64_t>(r));
  }
  for (size_t r = 0; r < m; ++r) {
    const auto ri = static_cast<int64_t>(r);
    const int32_t a = t.merge_left[r], b = t.merge_right[r], c = t.merge_result[r];
    if (made_at[static_cast<size_t>(a)] >= ri || made_at[static_cast<size_t>(b)] >= ri || c == a || c == b) {
      monotone_ = false;
      break;
    }
  }
  cache_.assign(kInitialCacheSlots, CacheSlot{0, 0, 0, 0, 0});
  cache_mask_ = cache_.size() - 1;
}

bool ClipBpe::find_merge(int32_t left, int32_t right, int32_t& rank, int32_t& result) const {
  const uint64_t key = pair_key(left, right);
  uint64_t i = mix64(key) & merge_mask_;
  for (;;) {
    const MergeSlot& s = merges_[i];
    if (s.key == key) {
      rank = s.rank;
      result = s.result;
      return true;
    }
    if (s.key == kEmptyKey) return false;
    i = (i + 1) & merge_mask_;
  }
}

// open_clip's loop, verbatim in ids: the lowest-ranked adjacent pair, all its non-overlapping
// occurrences merged left to right, until no adjacent pair has a rank.
void ClipBpe::bpe_naive(std::vector<int32_t>& sym) const {
  size_t n = sym.size();
  while (n > 1) {
    int32_t best = std::numeric_limits<int32_t>::max(), left = 0, right = 0, merged = 0;
    for (size_t i = 0; i + 1 < n; ++i) {
      int32_t r, c;
      if (find_merge(sym[i], sym[i + 1], r, c) && r < best) {
        best = r;
        left = sym[i];
        right = sym[i + 1];
        merged = c;
      }
    }
    if (best == std::numeric_limits<int32_t>::max()) break;
    size_t j = 0;
    for (size_t i = 0; i < n;) {
      if (i + 1 < n && sym[i] == left && sym[i + 1] == right) {
        sym[j++] = merged;
        i += 2;
      } else {
        sym[j++] = sym[i++];
      }
    }
    n = j;
  }
  sym.resize(n);
}

// The same result in O(n log n): a min-heap of (rank, position) over a linked list of symbols.
// With monotone merges a merge never creates a pair of its own rank or lower, so the heap pops
// each rank's occurrences together and left to right, as the loop above merges them; entries made
// stale by an earlier merge are skipped (their symbols changed).
void ClipBpe::bpe_heap(std::vector<int32_t>& sym) const {
  const size_t n = sym.size();
  if (n < 2) return;
  std::vector<uint32_t> next(n), prev(n);
  std::vector<uint8_t> alive(n, 1);
  constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();
  for (size_t i = 0; i < n; ++i) {
    next[i] = i + 1 < n ? static_cast<uint32_t>(i + 1) : kNone;
    prev[i] = i > 0 ? static_cast<uint32_t>(i - 1) : kNone;
  }
  struct Entry {
    uint64_t order;  // (rank << 32) | position
    int32_t left, right, merged;
    bool operator>(const Entry& o) const { return order > o.order; }
  };
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  auto push = [&](uint32_t pos) {
    if (pos == kNone || next[pos] == kNone) return;
    int32_t r, c;
    if (find_merge(sym[pos], sym[next[pos]], r, c)) {
      heap.push(Entry{(static_cast<uint64_t>(r) << 32) | pos, sym[pos], sym[next[pos]], c});
    }
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<uint32_t>(i));
  while (!heap.empty()) {
    const Entry e = heap.top();
    heap.pop();
    const auto pos = static_cast<uint32_t>(e.order & 0xFFFFFFFFu);
    if (!alive[pos] || next[pos] == kNone || sym[pos] != e.left || sym[next[pos]] != e.right) continue;
    const uint32_t gone = next[pos];
    sym[pos] = e.merged;
    alive[gone] = 0;
    next[pos] = next[gone];
    if (next[gone] != kNone) prev[next[gone]] = pos;
    push(prev[pos]);
    push(pos);
  }
  size_t j = 0;
  for (uint32_t i = 0; i != kNone; i = next[i]) sym[j++] = sym[i];
  sym.resize(j);
}

void ClipBpe::bpe_word(const uint8_t* w, size_t n, std::vector<int32_t>& out, bool heap) const {
  out.resize(n);
  for (size_t i = 0; i + 1 < n; ++i) out[i] = byte_id_[w[i]];
  if (n > 0) out[n - 1] = byte_end_id_[w[n - 1]];
  if (heap) {
    bpe_heap(out);
  } else {
    bpe_naive(out);
  }
}

std::vector<int32_t> ClipBpe::bpe_uncached(std::string_view word, bool heap) const {
  std::vector<int32_t> out;
  if (word == kSot) return {sot_};
  if (word == kEot) return {eot_};
  bpe_word(reinterpret_cast<const uint8_t*>(word.data()), word.size(), out, heap && monotone_);
  return out;
}

void ClipBpe::grow_cache() {
  std::vector<CacheSlot> bigger(cache_.size() * 2, CacheSlot{0, 0, 0, 0, 0});
  const uint64_t mask = bigger.size() - 1;
  for (const CacheSlot& s : cache_) {
    if (s.ids_len == 0) continue;
    uint64_t i = s.hash & mask;
    while (bigger[i].ids_len != 0) i = (i + 1) & mask;
    bigger[i] = s;
  }
  cache_.swap(bigger);
  cache_mask_ = mask;
}

void ClipBpe::clear_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  cache_.assign(kInitialCacheSlots, CacheSlot{0, 0, 0, 0, 0});
  cache_mask_ = cache_.size() - 1;
  cache_count_ = 0;
  key_pool_.clear();
  id_pool_.clear();
}

size_t ClipBpe::cache_words() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cache_count_;
}

const int32_t* ClipBpe::lookup(const uint8_t* w, size_t n, uint32_t& len) {
  const bool heap = n > kNaiveMaxSymbols && monotone_;
  if (n > kMaxCachedWordBytes) {
    bpe_word(w, n, scratch_, heap);
    len = static_cast<uint32_t>(scratch_.size());
    return scratch_.data();
  }
  const uint64_t h = hash_word(w, n);
  uint64_t i = h & cache_mask_;
  for (;;) {
    const CacheSlot& s = cache_[i];
    if (s.ids_len == 0) break;
    if (s.hash == h && s.key_len == n && std::memcmp(key_pool_.data() + s.key_off, w, n) == 0) {
      len = s.ids_len;
      return id_pool_.data() + s.ids_off;
    }
    i = (i + 1) & cache_mask_;
  }
  bpe_word(w, n, scratch_, heap);
  if (cache_count_ + 1 > max_cache_words_ || key_pool_.size() + n > kMaxPoolItems ||
      id_pool_.size() + scratch_.size() > kMaxPoolItems) {
    // Bounded memory on endless streams: start over (refilling costs one BPE per word).
    cache_.assign(kInitialCacheSlots, CacheSlot{0, 0, 0, 0, 0});
    cache_mask_ = cache_.size() - 1;
    cache_count_ = 0;
    key_pool_.clear();
    id_pool_.clear();
    i = h & cache_mask_;
  } else if (2 * (cache_count_ + 1) > cache_.size()) {
    grow_cache();
    i = h & cache_mask_;
    while (cache_[i].ids_len != 0) i = (i + 1) & cache_mask_;
  }
  CacheSlot s;
  s.hash = h;
  s.key_off = static_cast<uint32_t>(key_pool_.size());
  s.key_len = static_cast<uint32_t>(n);
  s.ids_off = static_cast<uint32_t>(id_pool_.size());
  s.ids_len = static_cast<uint32_t>(scratch_.size());  // >= 1 for a non-empty word
  key_pool_.insert(key_pool_.end(), w, w + n);
  id_pool_.insert(id_pool_.end(), scratch_.begin(), scratch_.end());
  cache_[i] = s;
  ++cache_count_;
  len = s.ids_len;
  return id_pool_.data() + s.ids_off;
}

// One row that needs_python() accepted: open_clip's split regex on lower-cased ASCII, BPE of each
// piece, then [SOT] ids[:context-2] [EOT] (open_clip's truncation gives exactly this).
int64_t ClipBpe::tokenize_row(const uint8_t* p, int64_t n, int64_t context_length, int64_t* row) {
  const AsciiTables& t = tables();
  const int64_t cap = context_length - 2;
  int64_t k = 0;
  row[0] = sot_;
  const uint8_t* end = p + n;
  auto emit = [&](const int32_t* ids, uint32_t len) {
    const int64_t take = std::min<int64_t>(len, cap - k);
    for (int64_t j = 0; j < take; ++j) row[1 + k + j] = ids[j];
    k += take;
  };
  auto emit_word = [&](const uint8_t* w, size_t wn, bool lower) {
    const uint8_t* src = w;
    if (lower) {
      word_buf_.resize(wn);
      for (size_t j = 0; j < wn; ++j) word_buf_[j] = t.lower[w[j]];
      src = word_buf_.data();
    }
    uint32_t len = 0;
    const int32_t* ids = lookup(src, wn, len);
    emit(ids, len);
  };
  while (p < end && k < cap) {
    const uint8_t c = p[0];
    const uint8_t cl = t.cls[c];
    if (cl == kSpace) {
      ++p;
      continue;
    }
    if (c == '<') {
      if (starts_with_lower(p, end, kSot)) {
        const int32_t id = sot_;
        emit(&id, 1);
        p += kSot.size();
        continue;
      }
      if (starts_with_lower(p, end, kEot)) {
        const int32_t id = eot_;
        emit(&id, 1);
        p += kEot.size();
        continue;
      }
    }
    if (c == '\'' && end - p >= 2) {
      const uint8_t d = t.lower[p[1]];
      size_t wn = 0;
      if (d == 's' || d == 't' || d == 'm' || d == 'd') {
        wn = 2;
      } else if (end - p >= 3) {
        const uint8_t e = t.lower[p[2]];
        if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l')) wn = 3;
      }
      if (wn != 0) {
        emit_word(p, wn, true);
        p += wn;
        continue;
      }
    }
    const uint8_t* q = p + 1;
    if (cl == kLetter) {
      while (q < end && t.cls[*q] == kLetter) ++q;
    } else if (cl == kOther) {
      while (q < end && t.cls[*q] == kOther) ++q;
    }  // a digit is a piece of its own
    emit_word(p, static_cast<size_t>(q - p), cl == kLetter);
    p = q;
  }
  row[1 + k] = eot_;
  return k + 2;
}

int64_t ClipBpe::tokenize(const std::vector<TextColumn>& cols, int64_t context_length, bool precleaned, int64_t* out,
                          int32_t* lengths, uint8_t* status, const CancelToken* cancel) {
  if (context_length < 2) throw InputError("context_length must be >= 2, got " + std::to_string(context_length));
  std::lock_guard<std::mutex> lock(mu_);
  int64_t row = 0, done = 0;
  for (const TextColumn& col : cols) {
    for (int64_t i = 0; i < col.length; ++i, ++row) {
      if ((row & 4095) == 0 && cancel != nullptr && cancel->is_cancelled()) throw Cancelled();
      const uint8_t* p = nullptr;
      int64_t n = 0;
      if (!col.get(i, p, n)) {
        status[row] = kRowNull;
        lengths[row] = 0;
        continue;
      }
      if (needs_python(p, n, precleaned)) {
        status[row] = (!precleaned && ftfy_noop(p, n)) ? kRowFtfyNoop : kRowNeedsPython;
        lengths[row] = 0;
        continue;
      }
      lengths[row] = static_cast<int32_t>(tokenize_row(p, n, context_length, out + row * context_length));
      status[row] = kRowDone;
      ++done;
    }
  }
  return done;
}

void ClipBpe::set_ftfy_tables(FtfyTables t) {
  const size_t n = t.cps.size();
  if (t.unsafe.size() != n || t.ccc.size() != n || t.masks.size() != n) {
    throw InputError("set_ftfy_tables: cps, unsafe, ccc and masks must have the same length");
  }
  for (size_t i = 0; i < n; ++i) {
    if (t.cps[i] < 0x80 || t.cps[i] > 0x10FFFF || (i > 0 && t.cps[i] <= t.cps[i - 1])) {
      throw InputError("set_ftfy_tables: cps must be sorted, unique, non-ASCII code points");
    }
  }
  if (t.alt_offsets.size() < 2 || t.alt_offsets.front() != 0 ||
      t.alt_offsets.back() != static_cast<int64_t>(t.alt_items.size())) {
    throw InputError("set_ftfy_tables: alt_offsets must start at 0 and end at len(alt_items), with >= 1 alternative");
  }
  for (size_t a = 0; a + 1 < t.alt_offsets.size(); ++a) {
    const int64_t b = t.alt_offsets[a], e = t.alt_offsets[a + 1];
    if (e <= b) throw InputError("set_ftfy_tables: alt_offsets must increase");
    bool explicit_item = false;
    for (int64_t k = b; k < e; ++k) explicit_item |= t.alt_items[static_cast<size_t>(k)] != 0;
    // An alternative made only of "any" items would match every text: the check would be void.
    if (!explicit_item) throw InputError("set_ftfy_tables: an alternative has no explicit character set");
  }
  std::lock_guard<std::mutex> lock(mu_);
  ftfy_ = std::move(t);
}

ClipBpe::CharInfo ClipBpe::char_info(uint32_t cp) const {
  CharInfo info;
  const auto it = std::lower_bound(ftfy_.cps.begin(), ftfy_.cps.end(), cp);
  if (it != ftfy_.cps.end() && *it == cp) {
    const auto i = static_cast<size_t>(it - ftfy_.cps.begin());
    info.unsafe = ftfy_.unsafe[i];
    info.ccc = ftfy_.ccc[i];
    info.mask = ftfy_.masks[i];
  }
  return info;
}

bool ClipBpe::ftfy_noop(const uint8_t* p, int64_t n) const {
  if (!has_ftfy_tables()) return false;
  const AsciiTables& t = tables();
  std::vector<uint64_t> masks;  // per code point, filled once a masked character is seen
  bool any_mask = false;
  int64_t count = 0;  // code points so far
  uint8_t last_ccc = 0;
  for (int64_t i = 0; i < n;) {
    const uint8_t b = p[i];
    if (b < 0x80) {
      if (t.raw_bad[b]) return false;
      if (b == '&' && i + 1 < n && p[i + 1] != ' ' && p[i + 1] != '\t' && p[i + 1] != '\n') return false;
      if (any_mask) masks.push_back(0);
      ++count;
      last_ccc = 0;
      ++i;
      continue;
    }
    // Strict UTF-8 (no overlong forms, surrogates or values past U+10FFFF).
    uint32_t cp;
    int len;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
      cp = b & 0x1Fu;
      len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      cp = b & 0x0Fu;
      len = 3;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      cp = b & 0x07u;
      len = 4;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (int k = 1; k < len; ++k) {
      const uint8_t c = p[i + k];
      if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF)) return false;
      cp = (cp << 6) | (c & 0x3Fu);
    }
    i += len;
    const CharInfo info = char_info(cp);
    if (info.unsafe) return false;
    if (info.ccc != 0 && last_ccc > info.ccc) return false;  // not in canonical order: not NFC
    last_ccc = info.ccc;
    if (info.mask != 0 && !any_mask) {
      any_mask = true;
      masks.assign(static_cast<size_t>(count), 0);
    }
    if (any_mask) masks.push_back(info.mask);
    ++count;
  }
  if (!any_mask) return true;  // every BADNESS_RE alternative needs a masked character
  const size_t m = masks.size();
  for (size_t a = 0; a + 1 < ftfy_.alt_offsets.size(); ++a) {
    const auto b = static_cast<size_t>(ftfy_.alt_offsets[a]);
    const size_t len = static_cast<size_t>(ftfy_.alt_offsets[a + 1]) - b;
    for (size_t s = 0; s + len <= m; ++s) {
      size_t j = 0;
      while (j < len) {
        const uint64_t item = ftfy_.alt_items[b + j];
        if (item != 0 && (masks[s + j] & item) == 0) break;
        ++j;
      }
      if (j == len) return false;  // BADNESS_RE may match: ftfy may change the text
    }
  }
  return true;
}

void ClipBpe::encode_words(const TextColumn& words, std::vector<int64_t>& offsets, std::vector<int32_t>& ids) {
  std::lock_guard<std::mutex> lock(mu_);
  offsets.assign(1, 0);
  offsets.reserve(static_cast<size_t>(words.length) + 1);
  ids.clear();
  for (int64_t i = 0; i < words.length; ++i) {
    const uint8_t* p = nullptr;
    int64_t n = 0;
    const bool valid = words.get(i, p, n);
    if (!valid || n == 0) {
      throw InputError("words[" + std::to_string(i) + "] is " + (valid ? "empty" : "null") +
                       "; pass the non-empty pieces of the split regex");
    }
    const std::string_view w(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
    if (w == kSot) {
      ids.push_back(sot_);
    } else if (w == kEot) {
      ids.push_back(eot_);
    } else {
      uint32_t len = 0;
      const int32_t* s = lookup(p, static_cast<size_t>(n), len);
      ids.insert(ids.end(), s, s + len);
    }
    offsets.push_back(static_cast<int64_t>(ids.size()));
  }
}

}  // namespace fastcurate
