// fastText supervised inference. Every arithmetic step follows fastText 0.9's own order and types
// (float accumulation, expf in the sigmoid, double log in std_log, the DFS of the hierarchical
// softmax with its pruning and tie rule), so that labels and float probabilities equal fastText's.
// What is done differently is only how: no strings, no allocations per row, precomputed rows of
// the quantized input matrix, an open-addressing table for the pruned n-gram index.
#include "fastcurate/langid.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <utility>

#include "fastcurate/bytes.hpp"
#include "fastcurate/parallel.hpp"
#include "row_blocks.hpp"

namespace fastcurate {

namespace {

constexpr int32_t kMagic = 793712314;
constexpr int64_t kBlockRows = 1024;
constexpr int32_t kLossHs = 1;
constexpr int32_t kModelSup = 3;
constexpr int64_t kMaxLabels = 1 << 20;
constexpr int32_t kMaxDim = 1 << 12;
constexpr int32_t kMaxN = 64;

// Bounds-checked little-endian reader over the model bytes.
class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  template <class T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  void bytes(void* out, size_t n, const char* what) {
    need(n, what);
    if (n > 0) std::memcpy(out, p_ + pos_, n);
    pos_ += n;
  }
  std::string cstring(const char* what) {
    const void* z = pos_ < n_ ? std::memchr(p_ + pos_, 0, n_ - pos_) : nullptr;
    if (z == nullptr) fail(std::string("unterminated string in ") + what);
    const size_t len = static_cast<size_t>(static_cast<const uint8_t*>(z) - (p_ + pos_));
    std::string s(reinterpret_cast<const char*>(p_ + pos_), len);
    pos_ += len + 1;
    return s;
  }
  size_t remaining() const { return n_ - pos_; }
  [[noreturn]] static void fail(const std::string& why) {
    throw FormatError("not a usable fastText model: " + why);
  }

 private:
  void need(size_t k, const char* what) {
    if (k > n_ - pos_) fail(std::string("file truncated while reading ") + what);
  }
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
};

// fastText's Dictionary::hash: FNV-1a over the bytes, each sign-extended from int8 first.
inline uint32_t ft_hash_step(uint32_t h, uint8_t c) {
  h ^= static_cast<uint32_t>(static_cast<int32_t>(static_cast<int8_t>(c)));
  return h * 16777619u;
}
inline uint32_t ft_hash(const uint8_t* p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; ++i) h = ft_hash_step(h, p[i]);
  return h;
}

// fastText's readWord separators (DataComp replaces '\n' with ' ' first, so '\n' is one too).
inline bool ft_space(uint8_t c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f' || c == '\0';
}

inline float std_log(float x) { return static_cast<float>(std::log(static_cast<double>(x) + 1e-5)); }

struct PQ {
  int32_t dim = 0, nsubq = 0, dsub = 0, lastdsub = 0;
  std::vector<float> centroids;  // dim * 256
  const float* get(int32_t m, uint8_t i) const {
    if (m == nsubq - 1) return &centroids[static_cast<size_t>(m) * 256 * static_cast<size_t>(dsub) + static_cast<size_t>(i) * static_cast<size_t>(lastdsub)];
    return &centroids[(static_cast<size_t>(m) * 256 + i) * static_cast<size_t>(dsub)];
  }
  void load(Reader& r, const char* what) {
    dim = r.get<int32_t>(what);
    nsubq = r.get<int32_t>(what);
    dsub = r.get<int32_t>(what);
    lastdsub = r.get<int32_t>(what);
    // dsub bounds how far the reconstructed rows outgrow the codes (fastText's default is 2).
    if (dim <= 0 || dim > kMaxDim || nsubq <= 0 || dsub <= 0 || dsub > 64 || lastdsub <= 0 || lastdsub > dsub ||
        static_cast<int64_t>(nsubq - 1) * dsub + lastdsub != dim) {
      Reader::fail(std::string("inconsistent product quantizer in ") + what);
    }
    centroids.resize(static_cast<size_t>(dim) * 256);
    r.bytes(centroids.data(), centroids.size() * sizeof(float), what);
    for (float c : centroids) {
      if (!std::isfinite(c)) Reader::fail(std::string("non-finite centroid in ") + what);
    }
  }
};

// The input rows of out-of-vocabulary tokens seen recently. A token's rows are a pure function of
// its bytes, and they are appended in the same order either way, so a hit changes nothing, not
// even float rounding; it only skips the n-gram hashing and the pruning-table lookups (about 15
// per word). Captions repeat their words a lot (64 % of LAION-10k's tokens occur earlier in it),
// so most tokens hit. Bounded: emptied when full.
class TokenCache {
 public:
  static constexpr size_t kMaxTokenBytes = 64;
  TokenCache() : slots_(kSlots, Slot{0, 0, 0, 0, 0}) {}
  void prefetch(uint32_t h) const { FC_PREFETCH(&slots_[slot_of(h)]); }

  // The cached rows of token [p, p + n) with fastText hash h, or nullptr.
  const int32_t* find(const uint8_t* p, size_t n, uint32_t h, size_t& count) const {
    for (size_t s = slot_of(h);; s = (s + 1) & kMask) {
      const Slot& e = slots_[s];
      if (e.key_len == 0) return nullptr;
      if (e.hash == h && e.key_len == n && std::memcmp(&keys_[e.key_off], p, n) == 0) {
        count = e.rows_len;
        return rows_.data() + e.rows_off;
      }
    }
  }

  void insert(const uint8_t* p, size_t n, uint32_t h, const std::vector<int32_t>& rows) {
    if (n == 0 || n > kMaxTokenBytes || rows.size() > 0xFFFF) return;
    if (entries_ >= kMaxEntries || rows_.size() + rows.size() > kMaxRows) clear();
    size_t s = slot_of(h);
    while (slots_[s].key_len != 0) s = (s + 1) & kMask;
    slots_[s] = Slot{h, static_cast<uint16_t>(n), static_cast<uint16_t>(rows.size()), static_cast<uint32_t>(keys_.size()),
                     static_cast<uint32_t>(rows_.size())};
    keys_.insert(keys_.end(), p, p + n);
    rows_.insert(rows_.end(), rows.begin(), rows.end());
    ++entries_;
  }

 private:
  static constexpr size_t kSlots = size_t{1} << 16;
  static constexpr size_t kMask = kSlots - 1;
  static constexpr size_t kMaxEntries = kSlots / 2;
  static constexpr size_t kMaxRows = size_t{1} << 21;
  struct Slot {  // 16 bytes: four to a cache line
    uint32_t hash;
    uint16_t key_len, rows_len;
    uint32_t key_off, rows_off;
  };
  static size_t slot_of(uint32_t h) { return static_cast<size_t>((h * 0x9E3779B1u) >> 16) & kMask; }
  void clear() {
    std::fill(slots_.begin(), slots_.end(), Slot{0, 0, 0, 0, 0});
    keys_.clear();
    rows_.clear();
    entries_ = 0;
  }
  std::vector<Slot> slots_;
  std::vector<uint8_t> keys_;
  std::vector<int32_t> rows_;
  size_t entries_ = 0;
};

}  // namespace

struct FastTextModel::Impl {
  // args
  int32_t dim = 0, word_ngrams = 1, loss = 0, model = 0, minn = 0, maxn = 0;
  int64_t bucket = 0;
  // dictionary
  int32_t nwords = 0, nlabels = 0;
  int64_t prune_size = -1;
  std::vector<std::string> words;       // every dictionary entry: words [0, nwords), then labels
  std::vector<int64_t> label_counts;    // per label
  std::vector<std::string> labels;      // full label strings ("__label__en")
  uint64_t word_mask = 0;
  std::vector<int64_t> sub_offsets;     // subwords of word i: sub_ids[sub_offsets[i] .. sub_offsets[i+1])
  std::vector<int32_t> sub_ids;
  int32_t eos_id = -1;
  // pruned n-gram index: bucket id -> row offset (open addressing)
  std::vector<std::pair<int32_t, int32_t>> prune_slots;
  uint64_t prune_mask = 0;
  // input matrix rows, reconstructed as fastText adds them (alpha * centroid, in float)
  int64_t in_rows = 0;
  std::vector<float> in_data;  // in_rows * dim
  bool quant = false;
  // output matrix (dense) and the Huffman tree
  std::vector<float> out_data;  // nlabels * dim
  struct Node {
    int32_t left = -1, right = -1;
    int64_t count = 0;
  };
  std::vector<Node> tree;

  // Word lookup: slots hold (hash, id) so that a miss touches one cache line and a hit compares
  // the bytes in one contiguous arena.
  struct WordSlot {
    uint32_t hash;
    int32_t id;  // -1 = empty
  };
  std::vector<WordSlot> wslots;
  std::vector<uint8_t> word_arena;
  std::vector<uint64_t> word_off;  // word i is word_arena[word_off[i], word_off[i + 1])
  size_t wslot_of(uint32_t h) const { return static_cast<size_t>(bytes::mix64(h) & word_mask); }
  int32_t find_word(const uint8_t* p, size_t n, uint32_t h) const {
    for (size_t s = wslot_of(h); wslots[s].id >= 0; s = (s + 1) & word_mask) {
      if (wslots[s].hash != h) continue;
      const auto id = static_cast<size_t>(wslots[s].id);
      const uint64_t b = word_off[id], e = word_off[id + 1];
      if (e - b == n && (n == 0 || std::memcmp(&word_arena[b], p, n) == 0)) return wslots[s].id;
    }
    return -1;
  }

  // pushHash: the row of n-gram bucket `id`, or -1 when pruned away.
  int64_t ngram_row(int32_t id) const {
    if (prune_size == 0 || id < 0) return -1;
    if (prune_size > 0) {
      for (uint64_t s = bytes::mix64(static_cast<uint32_t>(id)) & prune_mask; prune_slots[s].first >= 0; s = (s + 1) & prune_mask) {
        if (prune_slots[s].first == id) return static_cast<int64_t>(nwords) + prune_slots[s].second;
      }
      return -1;
    }
    return static_cast<int64_t>(nwords) + id;
  }

  // computeSubwords over the bytes of "<" + word + ">", calling emit(bucket) for every n-gram in
  // fastText's order (the bucket still has to go through pushHash's pruning: ngram_row).
  template <class Emit>
  void subwords(const uint8_t* word, size_t wlen, std::vector<uint8_t>& buf, Emit&& emit) const {
    const size_t len = wlen + 2;
    buf.resize(len);
    buf[0] = '<';
    if (wlen > 0) std::memcpy(&buf[1], word, wlen);
    buf[len - 1] = '>';
    const uint8_t* w = buf.data();
    for (size_t i = 0; i < len; ++i) {
      if ((w[i] & 0xC0) == 0x80) continue;
      uint32_t h = 2166136261u;
      size_t j = i;
      for (int32_t n = 1; j < len && n <= maxn; ++n) {
        h = ft_hash_step(h, w[j++]);
        while (j < len && (w[j] & 0xC0) == 0x80) h = ft_hash_step(h, w[j++]);
        if (n >= minn && !(n == 1 && (i == 0 || j == len))) emit(static_cast<int32_t>(bucket_of(h)));
      }
    }
  }

  // h % bucket without a division (Lemire's fastmod: exact for every 32-bit h and divisor).
  uint64_t fastmod_m = 0;
  uint32_t bucket_of(uint32_t h) const {
    const uint64_t low = fastmod_m * h;
    const auto d = static_cast<uint64_t>(bucket);
    // The high 64 bits of low * d (d < 2^32), without a 128-bit type.
    return static_cast<uint32_t>(((low >> 32) * d + (((low & 0xFFFFFFFFu) * d) >> 32)) >> 32);
  }

  struct Token {
    const uint8_t* p;
    size_t n;
    uint32_t h;
    bool eos;
  };
  struct Scratch {
    std::vector<float> hidden;
    std::vector<int32_t> hashes;
    std::vector<int64_t> items;  // >= 0: an input row; < 0: -(bucket + 1), not yet through pushHash
    std::vector<uint8_t> buf;    // "<" + word + ">"
    std::vector<int32_t> buckets, rows;
    std::vector<Token> toks;
    TokenCache* cache = nullptr;
  };

  // Token caches outlive one call (a stage calls predict once per batch); each call takes one per
  // worker from this pool, so concurrent calls never share one. The model stays immutable in
  // every observable way.
  mutable std::mutex pool_mu;
  mutable std::vector<std::unique_ptr<TokenCache>> pool;
  std::unique_ptr<TokenCache> take_cache() const {
    std::lock_guard<std::mutex> lock(pool_mu);
    if (pool.empty()) return std::unique_ptr<TokenCache>(new TokenCache);
    std::unique_ptr<TokenCache> c = std::move(pool.back());
    pool.pop_back();
    return c;
  }
  void give_cache(std::unique_ptr<TokenCache> c) const {
    std::lock_guard<std::mutex> lock(pool_mu);
    pool.push_back(std::move(c));
  }

  // The rows of an out-of-vocabulary token: its n-grams through pushHash's pruning, in order.
  void oov_rows(const uint8_t* tok, size_t tlen, Scratch& sc) const {
    sc.buckets.clear();
    subwords(tok, tlen, sc.buf, [&](int32_t b) { sc.buckets.push_back(b); });
    if (prune_size > 0) {
      for (int32_t b : sc.buckets) FC_PREFETCH(prune_slot_addr(b));
    }
    sc.rows.clear();
    for (int32_t b : sc.buckets) {
      const int64_t row = ngram_row(b);
      if (row >= 0) sc.rows.push_back(static_cast<int32_t>(row));
    }
  }

  const void* prune_slot_addr(int32_t id) const {
    return &prune_slots[bytes::mix64(static_cast<uint32_t>(id)) & prune_mask];
  }

  // Dictionary::getLine + FastText::predict for one text. Returns false for no prediction.
  //
  // The rows are gathered first and summed afterwards, in the same order, so that the pruning
  // table and the rows can be prefetched many lookups ahead: per caption there are a hundred or
  // more random reads into a table of a few MB, and waiting for each in turn is what costs.
  bool predict_one(const uint8_t* p, int64_t n, int32_t& label, float& prob, Scratch& sc) const {
    std::vector<int64_t>& items = sc.items;
    items.clear();
    sc.hashes.clear();
    auto emit_bucket = [&](int32_t b) { items.push_back(-static_cast<int64_t>(b) - 1); };
    static const uint8_t kEos[] = {'<', '/', 's', '>'};
    // Readword: the tokens up to the end of the line, hashed, with their table slots prefetched.
    std::vector<Token>& toks = sc.toks;
    toks.clear();
    int64_t i = 0;
    for (;;) {
      while (i < n && ft_space(p[i])) ++i;
      Token t;
      if (i >= n) {  // the '\n' that predict() appends ends the line with EOS
        t = Token{kEos, 4, 0, true};
      } else {
        const int64_t b = i;
        while (i < n && !ft_space(p[i])) ++i;
        const auto tlen = static_cast<size_t>(i - b);
        t = Token{p + b, tlen, 0, tlen == 4 && std::memcmp(p + b, kEos, 4) == 0};  // a literal "</s>" ends it too
      }
      t.h = ft_hash(t.p, t.n);
      FC_PREFETCH(&wslots[wslot_of(t.h)]);
      if (sc.cache != nullptr) sc.cache->prefetch(t.h);
      toks.push_back(t);
      if (t.eos) break;
    }
    for (const Token& t : toks) {
      const uint8_t* tok = t.p;
      const size_t tlen = t.n;
      const bool eos = t.eos;
      const uint32_t h = t.h;
      const int32_t wid = find_word(tok, tlen, h);
      bool is_label;
      if (wid >= 0) {
        is_label = wid >= nwords;
      } else {
        is_label = tlen >= 9 && std::memcmp(tok, "__label__", 9) == 0;
      }
      if (!is_label) {
        if (wid < 0) {
          if (!eos && maxn > 0) {
            size_t count = 0;
            const int32_t* cached = sc.cache != nullptr ? sc.cache->find(tok, tlen, h, count) : nullptr;
            if (cached == nullptr) {
              oov_rows(tok, tlen, sc);
              if (sc.cache != nullptr) sc.cache->insert(tok, tlen, h, sc.rows);
              cached = sc.rows.data();
              count = sc.rows.size();
            }
            for (size_t k = 0; k < count; ++k) items.push_back(cached[k]);
          }
        } else if (maxn <= 0) {
          items.push_back(wid);
        } else {
          for (int64_t k = sub_offsets[static_cast<size_t>(wid)]; k < sub_offsets[static_cast<size_t>(wid) + 1]; ++k) {
            items.push_back(sub_ids[static_cast<size_t>(k)]);
          }
        }
        sc.hashes.push_back(static_cast<int32_t>(h));
      }
      if (eos) break;
    }
    // addWordNgrams (wordNgrams > 1): fastText widens the int32 word hash to uint64 with sign
    // extension, which this reproduces.
    const auto nh = static_cast<int64_t>(sc.hashes.size());
    for (int64_t a = 0; a < nh; ++a) {
      uint64_t hh = static_cast<uint64_t>(static_cast<int64_t>(sc.hashes[static_cast<size_t>(a)]));
      for (int64_t b = a + 1; b < nh && b < a + word_ngrams; ++b) {
        hh = hh * 116049371u + static_cast<uint64_t>(static_cast<int64_t>(sc.hashes[static_cast<size_t>(b)]));
        emit_bucket(static_cast<int32_t>(hh % static_cast<uint64_t>(bucket)));
      }
    }
    // pushHash for the buckets, prefetching the pruning table ahead; pruned ones drop out.
    constexpr size_t kAhead = 16;
    const size_t total = items.size();
    if (prune_size > 0) {
      for (size_t k = 0; k < std::min(kAhead, total); ++k) {
        if (items[k] < 0) FC_PREFETCH(prune_slot_addr(static_cast<int32_t>(-items[k] - 1)));
      }
    }
    size_t kept = 0;
    for (size_t k = 0; k < total; ++k) {
      if (prune_size > 0 && k + kAhead < total && items[k + kAhead] < 0) {
        FC_PREFETCH(prune_slot_addr(static_cast<int32_t>(-items[k + kAhead] - 1)));
      }
      int64_t v = items[k];
      if (v < 0) v = ngram_row(static_cast<int32_t>(-v - 1));
      if (v >= 0) {
        items[kept++] = v;
        FC_PREFETCH(&in_data[static_cast<size_t>(v) * static_cast<size_t>(dim)]);
      }
    }
    if (kept == 0) return false;
    // computeHidden: the rows summed in order, then scaled by 1 / count.
    float* hv = sc.hidden.data();
    std::fill(sc.hidden.begin(), sc.hidden.end(), 0.0f);
    for (size_t k = 0; k < kept; ++k) add_row(hv, items[k]);
    const auto inv = static_cast<float>(1.0 / static_cast<double>(kept));
    for (int32_t j = 0; j < dim; ++j) hv[j] *= inv;
    return dfs_top1(hv, label, prob);
  }

  void add_row(float* hidden, int64_t row) const {
    const float* v = &in_data[static_cast<size_t>(row) * static_cast<size_t>(dim)];
    for (int32_t j = 0; j < dim; ++j) hidden[j] += v[j];
  }

  float dot_out(const float* hidden, int64_t row) const {
    const float* w = &out_data[static_cast<size_t>(row) * static_cast<size_t>(dim)];
    float d = 0.0f;
    for (int32_t j = 0; j < dim; ++j) d += w[j] * hidden[j];
    if (std::isnan(d)) throw FormatError("the fastText model produced NaN (its output matrix holds extreme values)");
    return d;
  }

  // HierarchicalSoftmaxLoss::dfs with k = 1, threshold 0, in fastText's visiting order.
  bool dfs_top1(const float* hidden, int32_t& label, float& prob) const {
    const float min_score = std_log(0.0f);
    bool have = false;
    float best = 0.0f;
    int32_t best_node = -1;
    struct Item {
      int32_t node;
      float score;
    };
    Item stack[128];
    std::vector<Item> big;  // only for degenerate trees deeper than the fixed stack
    size_t sp = 0;
    auto push = [&](Item it) {
      if (sp < 128) {
        stack[sp++] = it;
      } else {
        big.push_back(it);
        ++sp;
      }
    };
    auto pop = [&]() -> Item {
      --sp;
      if (sp >= 128) {
        Item it = big.back();
        big.pop_back();
        return it;
      }
      return stack[sp];
    };
    push(Item{2 * nlabels - 2, 0.0f});
    while (sp > 0) {
      const Item it = pop();
      if (it.score < min_score) continue;
      if (have && it.score < best) continue;
      const Node& nd = tree[static_cast<size_t>(it.node)];
      if (nd.left == -1 && nd.right == -1) {
        // A new leaf replaces the kept one on a tie, as fastText's heap does for k = 1.
        best = it.score;
        best_node = it.node;
        have = true;
        continue;
      }
      float f = dot_out(hidden, it.node - nlabels);
      f = static_cast<float>(1. / (1 + std::exp(-f)));  // std::exp(float): expf, as in fastText
      push(Item{nd.right, it.score + std_log(f)});
      push(Item{nd.left, it.score + std_log(static_cast<float>(1.0 - f))});
    }
    if (!have) return false;
    label = best_node;
    prob = std::exp(best);
    return true;
  }
};

FastTextModel FastTextModel::from_bytes(const uint8_t* data, size_t size) {
  Reader r(data, size);
  std::unique_ptr<Impl> m(new Impl);
  const int32_t magic = r.get<int32_t>("the header");
  const int32_t version = r.get<int32_t>("the header");
  if (magic != kMagic) Reader::fail("wrong magic number (not a fastText .bin / .ftz file)");
  // fastText itself accepts every version up to its own (12) and special-cases only 11.
  if (version < 0 || version > 12) Reader::fail("unsupported fastText file version " + std::to_string(version));
  int32_t args[12];
  for (int32_t& a : args) a = r.get<int32_t>("the arguments");
  (void)r.get<double>("the arguments");
  m->dim = args[0];
  m->word_ngrams = args[5];
  m->loss = args[6];
  m->model = args[7];
  m->bucket = args[8];
  m->minn = args[9];
  m->maxn = args[10];
  if (m->model != kModelSup) Reader::fail("not a supervised (classification) model");
  if (m->loss != kLossHs) Reader::fail("loss " + std::to_string(m->loss) + " is not supported (only hierarchical softmax, as lid.176 uses)");
  if (version == 11) m->maxn = 0;  // fastText: old supervised models use no char n-grams
  if (m->dim <= 0 || m->dim > kMaxDim) Reader::fail("dimension " + std::to_string(m->dim) + " out of range");
  if (m->minn < 0 || m->maxn < 0 || m->maxn > kMaxN || m->word_ngrams < 1 || m->word_ngrams > kMaxN || m->bucket < 0) {
    Reader::fail("arguments out of range (minn/maxn/wordNgrams/bucket)");
  }
  if (m->bucket == 0 && (m->maxn > 0 || m->word_ngrams > 1)) Reader::fail("n-grams with zero buckets");

  // Dictionary.
  const int32_t dsize = r.get<int32_t>("the dictionary");
  m->nwords = r.get<int32_t>("the dictionary");
  m->nlabels = r.get<int32_t>("the dictionary");
  (void)r.get<int64_t>("the dictionary");
  m->prune_size = r.get<int64_t>("the dictionary");
  if (dsize < 0 || m->nwords < 0 || m->nlabels < 1 || m->nlabels > kMaxLabels ||
      static_cast<int64_t>(m->nwords) + m->nlabels != dsize || m->prune_size < -1) {
    Reader::fail("inconsistent dictionary sizes");
  }
  if (static_cast<size_t>(dsize) > r.remaining() / 10) Reader::fail("file truncated in the dictionary");
  m->words.reserve(static_cast<size_t>(dsize));
  for (int32_t i = 0; i < dsize; ++i) {
    std::string w = r.cstring("a dictionary entry");
    const int64_t count = r.get<int64_t>("a dictionary entry");
    const int8_t type = r.get<int8_t>("a dictionary entry");
    if (type != (i < m->nwords ? 0 : 1)) Reader::fail("dictionary entries are not words followed by labels");
    if (i >= m->nwords) {
      m->labels.push_back(w);
      m->label_counts.push_back(count);
    }
    m->words.push_back(std::move(w));  // labels too: a caption token equal to a label is a label
  }
  if (m->prune_size > 0) {
    if (static_cast<uint64_t>(m->prune_size) > r.remaining() / 8) Reader::fail("file truncated in the pruning index");
    size_t cap = 16;
    while (cap < static_cast<size_t>(m->prune_size) * 2) cap <<= 1;
    m->prune_slots.assign(cap, {-1, -1});
    m->prune_mask = cap - 1;
    for (int64_t i = 0; i < m->prune_size; ++i) {
      const int32_t a = r.get<int32_t>("the pruning index");
      const int32_t b = r.get<int32_t>("the pruning index");
      if (a < 0 || b < 0) Reader::fail("negative entry in the pruning index");
      uint64_t s = bytes::mix64(static_cast<uint32_t>(a)) & m->prune_mask;
      while (m->prune_slots[s].first >= 0 && m->prune_slots[s].first != a) s = (s + 1) & m->prune_mask;
      m->prune_slots[s] = {a, b};  // a repeated key keeps the last value, like std::unordered_map[]
    }
  }

  // Input matrix.
  const bool quant_input = r.get<uint8_t>("the input matrix flag") != 0;
  m->quant = quant_input;
  if (!quant_input && m->prune_size >= 0) Reader::fail("a pruned dictionary needs a quantized input matrix");
  if (quant_input) {
    const bool qnorm = r.get<uint8_t>("the input matrix") != 0;
    const int64_t rows = r.get<int64_t>("the input matrix");
    const int64_t cols = r.get<int64_t>("the input matrix");
    const int32_t codesize = r.get<int32_t>("the input matrix");
    if (rows < 0 || cols != m->dim) Reader::fail("input matrix shape does not match the dimension");
    if (codesize < 0 || static_cast<size_t>(codesize) > r.remaining()) Reader::fail("file truncated in the input codes");
    std::vector<uint8_t> codes(static_cast<size_t>(codesize));
    r.bytes(codes.data(), codes.size(), "the input codes");
    PQ pq;
    pq.load(r, "the input quantizer");
    // (rows <= codesize first, so that rows * nsubq cannot overflow)
    if (pq.dim != m->dim || rows > codesize || static_cast<int64_t>(codesize) != rows * pq.nsubq) {
      Reader::fail("input codes do not match the quantizer");
    }
    std::vector<uint8_t> norm_codes;
    PQ npq;
    if (qnorm) {
      if (static_cast<uint64_t>(rows) > r.remaining()) Reader::fail("file truncated in the norm codes");
      norm_codes.resize(static_cast<size_t>(rows));
      r.bytes(norm_codes.data(), norm_codes.size(), "the norm codes");
      npq.load(r, "the norm quantizer");
      if (npq.dim != 1 || npq.nsubq != 1) Reader::fail("norm quantizer is not one-dimensional");
    }
    m->in_rows = rows;
    m->in_data.assign(static_cast<size_t>(rows) * static_cast<size_t>(m->dim), 0.0f);
    for (int64_t i = 0; i < rows; ++i) {
      // QuantMatrix::addRowToVector: x[m * dsub + n] += alpha * c[n], alpha the row's norm.
      const float alpha = qnorm ? npq.get(0, norm_codes[static_cast<size_t>(i)])[0] : 1.0f;
      const uint8_t* code = &codes[static_cast<size_t>(i) * static_cast<size_t>(pq.nsubq)];
      float* out = &m->in_data[static_cast<size_t>(i) * static_cast<size_t>(m->dim)];
      for (int32_t q = 0; q < pq.nsubq; ++q) {
        const float* c = pq.get(q, code[q]);
        const int32_t d = q == pq.nsubq - 1 ? pq.lastdsub : pq.dsub;
        for (int32_t k = 0; k < d; ++k) out[q * pq.dsub + k] = alpha * c[k];
      }
    }
  } else {
    const int64_t rows = r.get<int64_t>("the input matrix");
    const int64_t cols = r.get<int64_t>("the input matrix");
    if (rows < 0 || cols != m->dim) Reader::fail("input matrix shape does not match the dimension");
    if (static_cast<uint64_t>(rows) > r.remaining() / (sizeof(float) * static_cast<uint64_t>(cols))) {
      Reader::fail("file truncated in the input matrix");
    }
    m->in_rows = rows;
    m->in_data.resize(static_cast<size_t>(rows * cols));
    r.bytes(m->in_data.data(), m->in_data.size() * sizeof(float), "the input matrix");
    for (float v : m->in_data) {
      if (!std::isfinite(v)) Reader::fail("non-finite value in the input matrix");
    }
  }
  // Every row the dictionary can address must exist.
  if (m->in_rows < m->nwords) Reader::fail("input matrix has fewer rows than words");
  if (m->prune_size < 0 && m->bucket > 0 && m->in_rows != m->nwords + m->bucket) {
    Reader::fail("input matrix rows do not equal words + buckets");
  }
  for (const auto& s : m->prune_slots) {
    if (s.first >= 0 && static_cast<int64_t>(m->nwords) + s.second >= m->in_rows) {
      Reader::fail("pruning index points past the input matrix");
    }
  }

  // Output matrix.
  const bool qout = r.get<uint8_t>("the output matrix flag") != 0;
  if (qout) Reader::fail("quantized output matrices (-qout) are not supported");
  const int64_t orows = r.get<int64_t>("the output matrix");
  const int64_t ocols = r.get<int64_t>("the output matrix");
  if (orows != m->nlabels || ocols != m->dim) Reader::fail("output matrix shape does not match labels x dimension");
  m->out_data.resize(static_cast<size_t>(orows * ocols));
  r.bytes(m->out_data.data(), m->out_data.size() * sizeof(float), "the output matrix");
  for (float v : m->out_data) {
    if (!std::isfinite(v)) Reader::fail("non-finite value in the output matrix");
  }
  if (r.remaining() != 0) Reader::fail(std::to_string(r.remaining()) + " unexpected bytes after the output matrix");

  // The word table (later duplicates win, as in fastText's word2int_) and each word's subwords.
  size_t cap = 16;
  while (cap < m->words.size() * 2) cap <<= 1;
  m->wslots.assign(cap, Impl::WordSlot{0, -1});
  m->word_mask = cap - 1;
  m->word_off.assign(1, 0);
  for (const std::string& w : m->words) {
    m->word_arena.insert(m->word_arena.end(), w.begin(), w.end());
    m->word_off.push_back(m->word_arena.size());
  }
  for (size_t i = 0; i < m->words.size(); ++i) {
    const auto* w = reinterpret_cast<const uint8_t*>(m->words[i].data());
    const uint32_t h = ft_hash(w, m->words[i].size());
    size_t s = m->wslot_of(h);
    while (m->wslots[s].id >= 0 && m->words[static_cast<size_t>(m->wslots[s].id)] != m->words[i]) s = (s + 1) & m->word_mask;
    m->wslots[s] = Impl::WordSlot{h, static_cast<int32_t>(i)};
    if (m->words[i] == "</s>" && i < static_cast<size_t>(m->nwords)) m->eos_id = static_cast<int32_t>(i);
  }
  if (m->bucket > 0) m->fastmod_m = UINT64_MAX / static_cast<uint64_t>(m->bucket) + 1;
  m->sub_offsets.assign(1, 0);
  std::vector<uint8_t> buf;
  for (size_t i = 0; i < static_cast<size_t>(m->nwords); ++i) {
    m->sub_ids.push_back(static_cast<int32_t>(i));
    if (m->words[i] != "</s>" && m->maxn > 0) {
      m->subwords(reinterpret_cast<const uint8_t*>(m->words[i].data()), m->words[i].size(), buf, [&](int32_t b) {
        const int64_t row = m->ngram_row(b);
        if (row >= 0) m->sub_ids.push_back(static_cast<int32_t>(row));
      });
    }
    m->sub_offsets.push_back(static_cast<int64_t>(m->sub_ids.size()));
  }

  // HierarchicalSoftmaxLoss::buildTree, from the label counts in file order. Its bounds hold only
  // for counts below its 1e15 sentinel (and sums that cannot overflow): a file outside that is
  // corrupt (real counts are occurrences in the training data).
  int64_t total_count = 0;
  for (int64_t c : m->label_counts) {
    if (c < 0 || c >= static_cast<int64_t>(1e15) || total_count > (int64_t{1} << 62) - c) {
      Reader::fail("label count out of range");
    }
    total_count += c;
  }
  const int32_t osz = m->nlabels;
  m->tree.assign(static_cast<size_t>(2 * osz - 1), Impl::Node{-1, -1, static_cast<int64_t>(1e15)});
  for (int32_t i = 0; i < osz; ++i) m->tree[static_cast<size_t>(i)].count = m->label_counts[static_cast<size_t>(i)];
  int32_t leaf = osz - 1, node = osz;
  for (int32_t i = osz; i < 2 * osz - 1; ++i) {
    int32_t mini[2] = {0, 0};
    for (int32_t& mj : mini) {
      if (leaf >= 0 && m->tree[static_cast<size_t>(leaf)].count < m->tree[static_cast<size_t>(node)].count) {
        mj = leaf--;
      } else {
        mj = node++;
      }
    }
    Impl::Node& nd = m->tree[static_cast<size_t>(i)];
    nd.left = mini[0];
    nd.right = mini[1];
    nd.count = m->tree[static_cast<size_t>(mini[0])].count + m->tree[static_cast<size_t>(mini[1])].count;
  }
  return FastTextModel(m.release());
}

FastTextModel::FastTextModel(FastTextModel&& o) noexcept : impl_(o.impl_) { o.impl_ = nullptr; }
FastTextModel& FastTextModel::operator=(FastTextModel&& o) noexcept {
  if (this != &o) {
    delete impl_;
    impl_ = o.impl_;
    o.impl_ = nullptr;
  }
  return *this;
}
FastTextModel::~FastTextModel() { delete impl_; }

const std::vector<std::string>& FastTextModel::labels() const { return impl_->labels; }
int32_t FastTextModel::dim() const { return impl_->dim; }
int64_t FastTextModel::words() const { return impl_->nwords; }
bool FastTextModel::quantized() const { return impl_->quant; }
int64_t FastTextModel::memory_bytes() const {
  const Impl& m = *impl_;
  int64_t b = static_cast<int64_t>(m.in_data.size() * sizeof(float) + m.out_data.size() * sizeof(float) +
                                   m.sub_ids.size() * 4 + m.sub_offsets.size() * 8 + m.wslots.size() * 8 +
                                   m.word_arena.size() + m.word_off.size() * 8 +
                                   m.prune_slots.size() * 8 + m.tree.size() * sizeof(Impl::Node));
  for (const std::string& w : m.words) b += static_cast<int64_t>(w.size() + sizeof(std::string));
  return b;
}

bool FastTextModel::predict_one(const uint8_t* p, int64_t n, int32_t& label, float& prob) const {
  Impl::Scratch sc;
  sc.hidden.resize(static_cast<size_t>(impl_->dim));
  return impl_->predict_one(p, n, label, prob, sc);
}

LangPredictions FastTextModel::predict(const std::vector<TextColumn>& cols, const uint8_t* skip, int threads,
                                       const CancelToken* cancel) const {
  int64_t total = 0;
  const std::vector<detail::RowBlock> blocks = detail::make_row_blocks(cols, kBlockRows, total);
  LangPredictions out;
  out.label.assign(static_cast<size_t>(total), -1);
  out.prob.assign(static_cast<size_t>(total), std::numeric_limits<float>::quiet_NaN());
  parallel_for_blocks(static_cast<int64_t>(blocks.size()), threads, cancel, [&](int64_t bi) {
    const detail::RowBlock& blk = blocks[static_cast<size_t>(bi)];
    const TextColumn& col = cols[blk.chunk];
    Impl::Scratch sc;
    sc.hidden.resize(static_cast<size_t>(impl_->dim));
    std::unique_ptr<TokenCache> cache = impl_->take_cache();
    sc.cache = cache.get();
    struct GiveBack {
      const Impl* m;
      std::unique_ptr<TokenCache>& c;
      ~GiveBack() { m->give_cache(std::move(c)); }
    } give_back{impl_, cache};
    for (int64_t r = blk.begin; r < blk.end; ++r) {
      const auto g = static_cast<size_t>(blk.global + (r - blk.begin));
      if (skip != nullptr && skip[g] != 0) continue;
      const uint8_t* ptr = nullptr;
      int64_t len = 0;
      if (!col.get(r, ptr, len)) continue;
      int32_t label = -1;
      float prob = 0.0f;
      if (impl_->predict_one(ptr, len, label, prob, sc)) {
        out.label[g] = label;
        out.prob[g] = prob;
      }
    }
  });
  return out;
}

}  // namespace fastcurate
