// Caption statistics and bad-alt-text rules. The definitions are those of
// python/fastcurate/kernels/text_reference.py, which the tests hold this file equal to; the
// comments here say how each is computed fast, not what it means.
#include "fastcurate/text_rules.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <utility>

#include "fastcurate/bytes.hpp"
#include "fastcurate/parallel.hpp"
#include "fastcurate/unicode_class.hpp"
#include "row_blocks.hpp"

namespace fastcurate {

namespace {

using unicode::kAlpha;
using unicode::kMark;
using unicode::kNumeric;
using unicode::kSpace;

constexpr int64_t kBlockRows = 4096;

enum : uint8_t { kKindNone = 0, kKindLetter = 1, kKindDigit = 2 };

// Kinds of an entry of the phrase table (one token sequence may carry several).
enum : uint8_t {
  kPhraseBoilerplate = 1,
  kPhrasePrefix = 2,
  kPhraseCamera = 4,
  kPhraseStop = 8,     // single token: a stopword
  kPhraseFiller = 16,  // single token: a camera-name filler
  kPhraseExt = 32,     // single token: a file extension
  kPhraseStart = 64,   // single token: the first token of some boilerplate phrase
};

struct AsciiTable {
  uint8_t cls[128];
  AsciiTable() {
    for (uint32_t c = 0; c < 128; ++c) cls[c] = unicode::cp_class(c);
  }
};
const AsciiTable& ascii_table() {
  static const AsciiTable t;
  return t;
}

inline uint8_t lower(uint8_t c) { return (c >= 'A' && c <= 'Z') ? static_cast<uint8_t>(c + 32) : c; }

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
constexpr uint64_t kFnvPrime = 0x100000001b3ULL;
constexpr uint64_t kSeqSeed = 0x243F6A8885A308D3ULL;

inline uint64_t fnv_step(uint64_t h, uint8_t c) { return (h ^ lower(c)) * kFnvPrime; }
inline uint64_t token_hash(const uint8_t* p, int64_t n) {
  uint64_t h = kFnvOffset;
  for (int64_t i = 0; i < n; ++i) h = fnv_step(h, p[i]);
  return bytes::mix64(h);
}
inline uint64_t seq_combine(uint64_t seq, uint64_t tok) { return bytes::mix64((seq * 0x9E3779B97F4A7C15ULL) ^ tok); }

struct Tok {
  int64_t b, e;          // byte range within the row
  uint32_t ncp;          // code points, saturating
  uint8_t kind;          // kKindLetter or kKindDigit
  bool first_nonascii;   // the first code point is >= U+0080
  uint64_t h;            // hash of the lower-cased bytes
};

struct WsTok {
  int64_t b, e;
  bool letter;        // holds a letter or mark
  bool dot_or_colon;  // could be a URL at all
};

// Case-insensitive (ASCII) equality of a row's token with a lower-case string.
inline bool tok_equals(const uint8_t* row, const Tok& t, const std::string& s) {
  if (t.e - t.b != static_cast<int64_t>(s.size())) return false;
  for (int64_t i = 0; i < t.e - t.b; ++i) {
    if (lower(row[t.b + i]) != static_cast<uint8_t>(s[static_cast<size_t>(i)])) return false;
  }
  return true;
}
inline bool toks_equal(const uint8_t* row, const Tok& a, const Tok& b) {
  if (a.e - a.b != b.e - b.b) return false;
  for (int64_t i = 0; i < a.e - a.b; ++i) {
    if (lower(row[a.b + i]) != lower(row[b.b + i])) return false;
  }
  return true;
}

struct Scan {
  int64_t words = 0, chars = 0, letters = 0, nonspace = 0;
  bool invalid = false;
};

struct Scratch {
  std::vector<Tok> toks;
  std::vector<WsTok> ws;
  std::vector<int64_t> slots;
};

// One pass over the row's bytes: Python's counts and, when asked, both tokenizations.
void scan_row(const uint8_t* p, int64_t n, bool want_tokens, Scan& s, Scratch& sc) {
  const AsciiTable& at = ascii_table();
  s = Scan{};
  sc.toks.clear();
  sc.ws.clear();
  bool in_ws = false;
  WsTok wcur{0, 0, false, false};
  uint8_t cur_kind = kKindNone;
  Tok cur{0, 0, 0, kKindNone, false, kFnvOffset};
  int64_t i = 0;
  while (i < n) {
    const uint8_t b = p[i];
    uint8_t cls;
    int len = 1;
    if (b < 0x80) {
      cls = at.cls[b];
    } else {
      uint32_t cp = 0;
      len = unicode::decode_utf8(p + i, p + n, cp);
      if (len == 0) {  // one invalid byte: a code point that is neither space nor letter
        len = 1;
        cls = 0;
        s.invalid = true;
      } else {
        cls = unicode::cp_class(cp);
      }
    }
    ++s.chars;
    if (cls & kSpace) {
      if (in_ws) {
        in_ws = false;
        wcur.e = i;
        if (want_tokens) sc.ws.push_back(wcur);
      }
    } else {
      ++s.nonspace;
      if (!in_ws) {
        in_ws = true;
        ++s.words;
        wcur = WsTok{i, 0, false, false};
      }
      if (cls & (kAlpha | kMark)) {
        ++s.letters;
        wcur.letter = true;
      }
      if (b == '.' || b == ':') wcur.dot_or_colon = true;
    }
    if (want_tokens) {
      const uint8_t k = (cls & (kAlpha | kMark)) ? kKindLetter : ((cls & kNumeric) ? kKindDigit : kKindNone);
      if (k != cur_kind) {
        if (cur_kind != kKindNone) {
          cur.e = i;
          cur.h = bytes::mix64(cur.h);
          sc.toks.push_back(cur);
        }
        cur_kind = k;
        if (k != kKindNone) cur = Tok{i, 0, 0, k, b >= 0x80, kFnvOffset};
      }
      if (k != kKindNone) {
        for (int j = 0; j < len; ++j) cur.h = fnv_step(cur.h, p[i + j]);
        if (cur.ncp < 0xFFFFFFFFu) ++cur.ncp;
      }
    }
    i += len;
  }
  if (in_ws) {
    wcur.e = n;
    if (want_tokens) sc.ws.push_back(wcur);
  }
  if (want_tokens && cur_kind != kKindNone) {
    cur.e = n;
    cur.h = bytes::mix64(cur.h);
    sc.toks.push_back(cur);
  }
}

// Tokenizes a configuration phrase the way captions are tokenized.
std::vector<std::string> tokenize_phrase(const std::string& s) {
  Scan scan;
  Scratch sc;
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  scan_row(p, static_cast<int64_t>(s.size()), true, scan, sc);
  std::vector<std::string> out;
  for (const Tok& t : sc.toks) {
    std::string w;
    for (int64_t i = t.b; i < t.e; ++i) w.push_back(static_cast<char>(lower(p[i])));
    out.push_back(std::move(w));
  }
  return out;
}

bool in_set(uint8_t c, const char* set) { return c != 0 && std::strchr(set, c) != nullptr; }

const char* const kGenericTlds[] = {"com",  "net",    "org",  "edu",    "gov",    "mil",   "int",   "info",  "biz",
                                    "io",   "co",     "app",  "dev",    "xyz",    "online", "site", "store", "shop",
                                    "blog", "club",   "top",  "ai",     "tv",     "me",    "ly",    "mobi",  "pro",
                                    "name", "asia",   "museum", "travel", "jobs", "tech",  "news",  "live",  "life",
                                    "world", "space", "website", "email", "cloud", "art",  "design"};

bool generic_tld(const uint8_t* p, int64_t n) {
  for (const char* t : kGenericTlds) {
    const auto len = static_cast<int64_t>(std::strlen(t));
    if (len != n) continue;
    bool eq = true;
    for (int64_t i = 0; i < n && eq; ++i) eq = lower(p[i]) == static_cast<uint8_t>(t[i]);
    if (eq) return true;
  }
  return false;
}

// text_reference.is_url_token on the bytes [b, e) of one whitespace token.
bool is_url_token(const uint8_t* p, int64_t b, int64_t e) {
  while (b < e && in_set(p[b], "\"'([<{")) ++b;
  while (e > b && in_set(p[e - 1], "\"')]>},.;:!?")) --e;
  for (int64_t i = b; i + 3 <= e; ++i) {
    if (p[i] == ':' && p[i + 1] == '/' && p[i + 2] == '/') return true;
  }
  if (e - b >= 4 && lower(p[b]) == 'w' && lower(p[b + 1]) == 'w' && lower(p[b + 2]) == 'w' && p[b + 3] == '.') return true;
  int64_t h = b;
  while (h < e && p[h] != '/' && p[h] != '?' && p[h] != '#' && p[h] != ':') ++h;
  int64_t labels = 0, label_start = b, prev_len = 0, last_start = b;
  for (int64_t i = b; i <= h; ++i) {
    if (i == h || p[i] == '.') {
      const int64_t len = i - label_start;
      if (len == 0) return false;
      ++labels;
      if (i < h) prev_len = len;
      last_start = label_start;
      label_start = i + 1;
      continue;
    }
    const uint8_t c = lower(p[i]);
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  if (labels < 2) return false;
  const int64_t tld_len = h - last_start;
  for (int64_t i = last_start; i < h; ++i) {
    const uint8_t c = lower(p[i]);
    if (c < 'a' || c > 'z') return false;
  }
  if (!(tld_len == 2 || generic_tld(p + last_start, tld_len))) return false;
  return prev_len >= 2;
}

bool valid_share(double x) { return std::isfinite(x) && x >= 0.0; }

}  // namespace

// ----------------------------------------------------------------------------------------------

struct TextRules::Impl {
  TextRulesConfig cfg;

  struct Phrase {
    std::vector<std::string> toks;
    uint8_t kinds = 0;
  };
  std::vector<Phrase> phrases;
  struct Slot {
    uint64_t h;
    int32_t phrase;  // -1 = empty
  };
  std::vector<Slot> table;
  uint64_t mask = 0;
  size_t max_boiler = 0, max_prefix = 0, max_camera = 0;

  void add(const std::vector<std::string>& toks, uint8_t kind, std::map<std::vector<std::string>, int32_t>& index) {
    auto it = index.find(toks);
    if (it == index.end()) {
      it = index.emplace(toks, static_cast<int32_t>(phrases.size())).first;
      phrases.push_back(Phrase{toks, 0});
    }
    phrases[static_cast<size_t>(it->second)].kinds |= kind;
  }

  void add_list(const std::vector<std::string>& list, uint8_t kind, const char* what,
                std::map<std::vector<std::string>, int32_t>& index, bool flatten, bool single) {
    for (const std::string& s : list) {
      std::vector<std::string> toks = tokenize_phrase(s);
      if (toks.empty()) {
        throw InputError(std::string(what) + " entry '" + s + "' has no letters or digits; remove it");
      }
      if (single && (toks.size() != 1 || toks[0].size() != s.size())) {
        throw InputError(std::string(what) + " entry '" + s +
                         "' must be one run of letters or of digits (no dot, no mixed letters and digits)");
      }
      if (flatten) {
        for (const std::string& t : toks) add({t}, kind, index);
      } else {
        add(toks, kind, index);
        if (kind == kPhraseBoilerplate) add({toks[0]}, kPhraseStart, index);
        size_t& mx = kind == kPhraseBoilerplate ? max_boiler : (kind == kPhrasePrefix ? max_prefix : max_camera);
        mx = std::max(mx, toks.size());
      }
    }
  }

  static uint64_t seq_hash_of(const std::vector<std::string>& toks) {
    uint64_t seq = kSeqSeed;
    for (const std::string& t : toks) {
      seq = seq_combine(seq, token_hash(reinterpret_cast<const uint8_t*>(t.data()), static_cast<int64_t>(t.size())));
    }
    return seq;
  }

  explicit Impl(TextRulesConfig c) : cfg(std::move(c)) {
    if (!valid_share(cfg.min_letter_share) || cfg.min_letter_share > 1.0) {
      throw InputError("min_letter_share must be in [0, 1], got " + std::to_string(cfg.min_letter_share));
    }
    if (!valid_share(cfg.repeat_min_dup_share) || cfg.repeat_min_dup_share > 1.0) {
      throw InputError("repeat_min_dup_share must be in [0, 1], got " + std::to_string(cfg.repeat_min_dup_share));
    }
    if (cfg.repeat_min_tokens < 2) {
      throw InputError("repeat_min_tokens must be >= 2, got " + std::to_string(cfg.repeat_min_tokens));
    }
    if (cfg.repeat_min_tokens_distinct < 1) {
      throw InputError("repeat_min_tokens_distinct must be >= 1, got " + std::to_string(cfg.repeat_min_tokens_distinct));
    }
    if (cfg.url_min_other_words < 0) {
      throw InputError("url_min_other_words must be >= 0, got " + std::to_string(cfg.url_min_other_words));
    }
    if ((cfg.rules & ~kAllRules) != 0) throw InputError("unknown rule bits in rules mask");
    std::map<std::vector<std::string>, int32_t> index;
    add_list(cfg.boilerplate_phrases, kPhraseBoilerplate, "boilerplate_phrases", index, false, false);
    add_list(cfg.boilerplate_prefixes, kPhrasePrefix, "boilerplate_prefixes", index, false, false);
    add_list(cfg.camera_prefixes, kPhraseCamera, "camera_prefixes", index, false, false);
    add_list(cfg.stopwords, kPhraseStop, "stopwords", index, true, false);
    add_list(cfg.camera_fillers, kPhraseFiller, "camera_fillers", index, true, false);
    add_list(cfg.extensions, kPhraseExt, "extensions", index, false, true);
    size_t cap = 16;
    while (cap < phrases.size() * 4) cap <<= 1;
    table.assign(cap, Slot{0, -1});
    mask = cap - 1;
    for (size_t i = 0; i < phrases.size(); ++i) {
      const uint64_t h = seq_hash_of(phrases[i].toks);
      uint64_t s = h & mask;
      while (table[s].phrase >= 0) s = (s + 1) & mask;
      table[s] = Slot{h, static_cast<int32_t>(i)};
    }
  }

  // Kinds of the phrase equal to toks[i, i + len) whose sequence hash is `h` (0 if none).
  uint8_t lookup(const uint8_t* row, const std::vector<Tok>& toks, size_t i, size_t len, uint64_t h) const {
    for (uint64_t s = h & mask; table[s].phrase >= 0; s = (s + 1) & mask) {
      if (table[s].h != h) continue;
      const Phrase& ph = phrases[static_cast<size_t>(table[s].phrase)];
      if (ph.toks.size() != len) continue;
      bool eq = true;
      for (size_t k = 0; k < len && eq; ++k) eq = tok_equals(row, toks[i + k], ph.toks[k]);
      if (eq) return ph.kinds;
    }
    return 0;
  }
  uint8_t lookup1(const uint8_t* row, const std::vector<Tok>& toks, size_t i) const {
    return lookup(row, toks, i, 1, seq_combine(kSeqSeed, toks[i].h));
  }

  bool rule_url(const uint8_t* p, const Scratch& sc) const {
    int64_t urls = 0, other = 0;
    for (const WsTok& w : sc.ws) {
      if (w.dot_or_colon && is_url_token(p, w.b, w.e)) {
        ++urls;
      } else if (w.letter) {
        ++other;
      }
    }
    return urls > 0 && other < cfg.url_min_other_words;
  }

  bool rule_filename(const uint8_t* p, const Scratch& sc) const {
    if (sc.ws.size() == 1) {
      const WsTok& w = sc.ws[0];
      int64_t dot = w.e - 1;
      while (dot >= w.b && p[dot] != '.') --dot;
      if (dot > w.b) {
        const int64_t elen = w.e - dot - 1;
        const uint64_t h = token_hash(p + dot + 1, elen);
        Tok t{dot + 1, w.e, 0, 0, false, h};
        std::vector<Tok> one{t};
        if (lookup(p, one, 0, 1, seq_combine(kSeqSeed, h)) & kPhraseExt) return true;
      }
    }
    const std::vector<Tok>& toks = sc.toks;
    size_t n = toks.size();
    if (n == 0) return false;
    const Tok& last = toks[n - 1];
    if (last.b > 0 && p[last.b - 1] == '.' && (lookup1(p, toks, n - 1) & kPhraseExt)) --n;
    size_t best = 0;
    uint64_t seq = kSeqSeed;
    for (size_t len = 1; len <= std::min(max_camera, n); ++len) {
      seq = seq_combine(seq, toks[len - 1].h);
      if (lookup(p, toks, 0, len, seq) & kPhraseCamera) best = len;
    }
    if (best == 0) return false;
    bool any_digit = false;
    for (size_t i = best; i < n; ++i) {
      if (toks[i].kind == kKindDigit) {
        any_digit = true;
      } else if (!(lookup1(p, toks, i) & kPhraseFiller)) {
        return false;
      }
    }
    return any_digit;
  }

  bool rule_boilerplate(const uint8_t* p, const Scratch& sc) const {
    const std::vector<Tok>& toks = sc.toks;
    const size_t n = toks.size();
    uint64_t seq = kSeqSeed;
    for (size_t len = 1; len <= std::min(max_prefix, n); ++len) {
      seq = seq_combine(seq, toks[len - 1].h);
      if (lookup(p, toks, 0, len, seq) & kPhrasePrefix) return true;
    }
    // Every content token must lie inside an occurrence of a phrase. Phrases starting at or before
    // token i are known when token i is judged, so the scan stops at the first uncovered content
    // token (for most captions: the first or second token).
    size_t cov_end = 0;
    bool any_phrase = false;
    for (size_t i = 0; i < n; ++i) {
      const uint8_t k1 = lookup1(p, toks, i);
      if (k1 & kPhraseBoilerplate) {
        any_phrase = true;
        cov_end = std::max(cov_end, i + 1);
      }
      if (k1 & kPhraseStart) {
        uint64_t s = seq_combine(kSeqSeed, toks[i].h);
        for (size_t len = 2; len <= std::min(max_boiler, n - i); ++len) {
          s = seq_combine(s, toks[i + len - 1].h);
          if (lookup(p, toks, i, len, s) & kPhraseBoilerplate) {
            any_phrase = true;
            cov_end = std::max(cov_end, i + len);
          }
        }
      }
      if (i >= cov_end) {
        const Tok& t = toks[i];
        const bool content = t.kind == kKindLetter && !(k1 & kPhraseStop) && (t.ncp >= 2 || t.first_nonascii);
        if (content) return false;
      }
    }
    return any_phrase;
  }

  bool rule_non_letters(const Scan& s) const {
    return s.letters == 0 ||
           static_cast<double>(s.letters) < cfg.min_letter_share * static_cast<double>(s.nonspace);
  }

  // Counts distinct tokens, or bigrams that repeat an earlier one, with an open-addressing set
  // of indices; equal hashes are confirmed by comparing the bytes.
  bool rule_repeated(const uint8_t* p, Scratch& sc) const {
    const std::vector<Tok>& toks = sc.toks;
    const auto n = static_cast<int64_t>(toks.size());
    if (n < cfg.repeat_min_tokens_distinct && n < cfg.repeat_min_tokens) return false;
    // Both forms need many repeated tokens (a repeated bigram starts with a repeated token). A
    // 128-bit mask of token hashes over-counts repeats (equal tokens share a bit), so when even
    // that count is too small, neither form can fire and the exact sets are not built. This
    // skips almost every real caption.
    uint64_t bits[2] = {0, 0};
    int64_t upper = 0;
    for (const Tok& t : toks) {
      const uint64_t b = t.h & 127u;
      const uint64_t bit = uint64_t{1} << (b & 63u);
      upper += (bits[b >> 6] & bit) != 0;
      bits[b >> 6] |= bit;
    }
    const bool distinct_possible = n >= cfg.repeat_min_tokens_distinct && upper >= n - n / 3;
    const bool bigram_possible = n >= cfg.repeat_min_tokens &&
                                 static_cast<double>(upper) >= cfg.repeat_min_dup_share * static_cast<double>(n - 1);
    if (!distinct_possible && !bigram_possible) return false;
    size_t cap = 16;
    while (cap < static_cast<size_t>(n) * 2) cap <<= 1;
    const uint64_t m = cap - 1;
    std::vector<int64_t>& slots = sc.slots;
    if (n >= cfg.repeat_min_tokens_distinct) {
      slots.assign(cap, -1);
      int64_t distinct = 0;
      for (int64_t i = 0; i < n; ++i) {
        uint64_t s = toks[static_cast<size_t>(i)].h & m;
        bool found = false;
        while (slots[s] >= 0) {
          const Tok& o = toks[static_cast<size_t>(slots[s])];
          if (o.h == toks[static_cast<size_t>(i)].h && toks_equal(p, o, toks[static_cast<size_t>(i)])) {
            found = true;
            break;
          }
          s = (s + 1) & m;
        }
        if (!found) {
          slots[s] = i;
          ++distinct;
        }
      }
      if (distinct * 3 <= n) return true;
    }
    if (n >= cfg.repeat_min_tokens) {
      slots.assign(cap, -1);
      int64_t dup = 0;
      for (int64_t i = 0; i + 1 < n; ++i) {
        const Tok& a = toks[static_cast<size_t>(i)];
        const Tok& b = toks[static_cast<size_t>(i + 1)];
        const uint64_t h = seq_combine(a.h, b.h);
        uint64_t s = h & m;
        bool found = false;
        while (slots[s] >= 0) {
          const int64_t j = slots[s];
          const Tok& c = toks[static_cast<size_t>(j)];
          const Tok& d = toks[static_cast<size_t>(j + 1)];
          if (seq_combine(c.h, d.h) == h && toks_equal(p, a, c) && toks_equal(p, b, d)) {
            found = true;
            break;
          }
          s = (s + 1) & m;
        }
        if (found) {
          ++dup;
        } else {
          slots[s] = i;
        }
      }
      return static_cast<double>(dup) >= cfg.repeat_min_dup_share * static_cast<double>(n - 1);
    }
    return false;
  }

  RowStats classify(const uint8_t* p, int64_t n, Scratch& sc) const {
    Scan s;
    const uint8_t rules = cfg.rules;
    const bool want_tokens = (rules & (kRuleUrl | kRuleFilename | kRuleBoilerplate | kRuleRepeated)) != 0;
    scan_row(p, n, want_tokens, s, sc);
    RowStats r;
    r.words = s.words;
    r.chars = s.chars;
    uint8_t f = s.invalid ? kFlagInvalidUtf8 : 0;
    if ((rules & kRuleUrl) && rule_url(p, sc)) f |= kRuleUrl;
    if ((rules & kRuleFilename) && rule_filename(p, sc)) f |= kRuleFilename;
    if ((rules & kRuleBoilerplate) && rule_boilerplate(p, sc)) f |= kRuleBoilerplate;
    if ((rules & kRuleNonLetters) && rule_non_letters(s)) f |= kRuleNonLetters;
    if ((rules & kRuleRepeated) && rule_repeated(p, sc)) f |= kRuleRepeated;
    r.flags = f;
    return r;
  }
};

TextRules::TextRules(TextRulesConfig config) : impl_(new Impl(std::move(config))) {}
TextRules::~TextRules() { delete impl_; }
TextRules::TextRules(TextRules&& o) noexcept : impl_(o.impl_) { o.impl_ = nullptr; }
TextRules& TextRules::operator=(TextRules&& o) noexcept {
  if (this != &o) {
    delete impl_;
    impl_ = o.impl_;
    o.impl_ = nullptr;
  }
  return *this;
}

const TextRulesConfig& TextRules::config() const { return impl_->cfg; }

RowStats TextRules::row(const uint8_t* p, int64_t n) const {
  Scratch sc;
  return impl_->classify(p, n, sc);
}

TextStats TextRules::run(const std::vector<TextColumn>& cols, bool want_counts, int threads,
                         const CancelToken* cancel) const {
  int64_t total = 0;
  const std::vector<detail::RowBlock> blocks = detail::make_row_blocks(cols, kBlockRows, total);
  TextStats out;
  out.flags.assign(static_cast<size_t>(total), 0);
  if (want_counts) {
    out.words.assign(static_cast<size_t>(total), 0);
    out.chars.assign(static_cast<size_t>(total), 0);
  }
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  parallel_for_blocks(static_cast<int64_t>(blocks.size()), threads, cancel, [&](int64_t bi) {
    const detail::RowBlock& blk = blocks[static_cast<size_t>(bi)];
    const TextColumn& col = cols[blk.chunk];
    Scratch sc;
    for (int64_t r = blk.begin; r < blk.end; ++r) {
      const auto g = static_cast<size_t>(blk.global + (r - blk.begin));
      const uint8_t* ptr = nullptr;
      int64_t len = 0;
      if (!col.get(r, ptr, len)) {
        out.flags[g] = kFlagNull;
        continue;
      }
      const RowStats rs = impl_->classify(ptr, len, sc);
      out.flags[g] = rs.flags;
      if (want_counts) {
        out.words[g] = static_cast<int32_t>(std::min(rs.words, kMax));
        out.chars[g] = static_cast<int32_t>(std::min(rs.chars, kMax));
      }
    }
  });
  return out;
}

void count_words_chars(const uint8_t* p, int64_t n, int64_t& words, int64_t& chars, bool& invalid) {
  Scan s;
  Scratch sc;
  scan_row(p, n, false, s, sc);
  words = s.words;
  chars = s.chars;
  invalid = s.invalid;
}

}  // namespace fastcurate
