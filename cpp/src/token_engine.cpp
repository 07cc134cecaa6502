#include "token_engine.hpp"

#include <cstring>
#include <string>

namespace fastcurate {
namespace detail {

namespace {

uint64_t pow2_at_least(uint64_t n) {
  uint64_t p = 16;
  while (p < n) p <<= 1;
  return p;
}

bool piece_can_match(std::string_view piece) {
  bool has_punct = false;
  for (unsigned char c : piece) {
    if (c == '\t' || c == '\n' || c == '\r') return false;
    if (kClasses.cls[c] == kPunct) has_punct = true;
  }
  // In the spaced text, the seven punctuation characters always stand alone between spaces.
  return !(has_punct && piece.size() > 1);
}

}  // namespace

void TokenEngine::vocab_insert_slot(int32_t tok) {
  const size_t n = voff_[static_cast<size_t>(tok) + 1] - voff_[static_cast<size_t>(tok)];
  const uint8_t* p = varena_.data() + voff_[static_cast<size_t>(tok)];
  uint64_t w0, w1;
  uint64_t b = vbucket_of(piece_hash<false>(p, n, p + n, w0, w1));
  while (vslots_[2 * b + 1].tok >= 0) b = (b + 1) & vbmask_;
  VSlot& s = vslots_[2 * b + (vslots_[2 * b].tok >= 0 ? 1 : 0)];  // slot 0 fills first
  s = VSlot{w0, w1, static_cast<uint32_t>(n), tok, -1, 0};
}

void TokenEngine::grow_vocab() {
  const uint64_t cap = vslots_.empty() ? 1024 : vslots_.size() * 2;
  vslots_.assign(cap, kFreeSlot);
  set_vocab_geometry();
  const int32_t n_tok = static_cast<int32_t>(voff_.size() - 1);
  for (int32_t t = 0; t < n_tok; ++t) vocab_insert_slot(t);
}

int32_t TokenEngine::intern(const uint8_t* p, size_t n) {
  // The piece is already folded when ci_, so the case-sensitive lookup finds folded tokens.
  const VSlot* found = lookup(p, n);
  if (found != nullptr) return found->tok;
  const int32_t tok = static_cast<int32_t>(voff_.size() - 1);
  if (n == 0) empty_tok_ = tok;
  varena_.insert(varena_.end(), p, p + n);
  voff_.push_back(varena_.size());
  // Keep the load factor at or below 1/2: probes stay short on the hot path.
  if (static_cast<uint64_t>(tok + 1) * 2 > vslots_.size()) {
    grow_vocab();
  } else {
    vocab_insert_slot(tok);
  }
  return tok;
}

void TokenEngine::set_vocab_geometry() {
  vmask_ = vslots_.size() - 1;
  vbmask_ = vslots_.size() / 2 - 1;
  vshift_ = shift_for(vslots_.size() / 2);
}

uint32_t TokenEngine::shift_for(size_t table_size) {
  uint32_t log2 = 0;
  while ((size_t{1} << log2) < table_size) ++log2;
  return 64 - log2;
}

void TokenEngine::goto_insert(uint64_t key, int32_t next) {
  uint64_t i = gslot_of(key);
  while (gslots_[i].key != kEmptyKey) i = (i + 1) & gmask_;
  gslots_[i] = GSlot{key, next, 0};
}

// Copies each depth-1 state's output and child count into its vocabulary slot (see VSlot), and
// each child's output and child flag into the transition slot that leads to it (see Cursor).
void TokenEngine::sync_slots() {
  for (GSlot& g : gslots_) {
    if (g.key == kEmptyKey) continue;
    const State& st = states_[static_cast<size_t>(g.next)];
    g.info = static_cast<uint32_t>(st.out + 1) | (st.nchild != 0 ? 0x80000000u : 0u);
  }
  for (VSlot& v : vslots_) {
    if (v.tok < 0) continue;
    const State& st = states_[static_cast<size_t>(v.tok) + 1];
    v.out1 = st.out;
    v.nchild1 = st.nchild;
  }
}

void TokenEngine::build(const std::vector<std::string_view>& entries, bool case_insensitive, BuildReport& report) {
  ci_ = case_insensitive;
  grow_vocab();  // allocate the table even if no entry can match: lookups need a free slot

  // Pass 1: cut every entry into pieces and intern them. Token sequences are kept flat.
  std::vector<int32_t> seq;         // all token sequences, back to back
  std::vector<size_t> seq_end;      // end of each matchable entry's sequence in `seq`
  std::vector<int32_t> seq_entry;   // its entry id
  std::string folded;
  for (size_t e = 0; e < entries.size(); ++e) {
    std::string_view entry = entries[e];
    const size_t mark = seq.size();
    bool ok = true;
    size_t start = 0;
    for (;;) {
      const size_t sp = entry.find(' ', start);
      std::string_view piece = entry.substr(start, sp == std::string_view::npos ? std::string_view::npos : sp - start);
      // A piece of 2 GiB or more cannot occur in a row (rows are shorter), and its length
      // would not fit a vocabulary slot.
      if (!piece_can_match(piece) || piece.size() > static_cast<size_t>(INT32_MAX)) {
        ok = false;
        break;
      }
      const uint8_t* pp = reinterpret_cast<const uint8_t*>(piece.data());
      if (ci_) {
        folded.assign(piece.begin(), piece.end());
        for (char& c : folded) c = static_cast<char>(bytes::fold_ascii(static_cast<uint8_t>(c)));
        pp = reinterpret_cast<const uint8_t*>(folded.data());
      }
      seq.push_back(intern(pp, piece.size()));
      if (sp == std::string_view::npos) break;
      start = sp + 1;
    }
    if (!ok) {
      seq.resize(mark);
      if (report.never_match == 0) report.first_never_match = static_cast<int64_t>(e);
      ++report.never_match;
      continue;
    }
    seq_end.push_back(seq.size());
    seq_entry.push_back(static_cast<int32_t>(e));
  }
  if (voff_.size() > static_cast<size_t>(INT32_MAX) / 2) throw InputError("the metadata has too many distinct words");
  n_tok_ = static_cast<int32_t>(voff_.size() - 1);

  // Pass 2: the trie. State t + 1 is the depth-1 state of token t, for every token (a state for
  // a token that starts no entry has no output and no children, and behaves like the root);
  // deeper states are numbered after them in creation order, so a parent's id is always smaller
  // than its children's.
  states_.assign(static_cast<size_t>(n_tok_) + 1, State{0, -1, -1, 0});
  std::vector<uint64_t> edge_keys;  // (parent << 32 | token) of every deeper edge, in creation order
  std::vector<int32_t> edge_child;
  struct BuildMap {
    big_vector<GSlot> slots;
    uint64_t mask = 0;
    uint32_t shift = 64;
    size_t used = 0;
  } bm;
  bm.slots.assign(1024, GSlot{kEmptyKey, 0, 0});
  bm.mask = 1023;
  bm.shift = shift_for(1024);
  auto bm_find = [&](uint64_t key) -> int32_t {
    uint64_t i = ghash(key) >> bm.shift;
    for (;;) {
      if (bm.slots[i].key == key) return bm.slots[i].next;
      if (bm.slots[i].key == kEmptyKey) return 0;
      i = (i + 1) & bm.mask;
    }
  };
  auto bm_insert = [&](uint64_t key, int32_t next) {
    if ((bm.used + 1) * 2 > bm.slots.size()) {
      big_vector<GSlot> old;
      old.swap(bm.slots);
      bm.slots.assign(old.size() * 2, GSlot{kEmptyKey, 0, 0});
      bm.mask = bm.slots.size() - 1;
      bm.shift = shift_for(bm.slots.size());
      for (const GSlot& g : old) {
        if (g.key == kEmptyKey) continue;
        uint64_t i = ghash(g.key) >> bm.shift;
        while (bm.slots[i].key != kEmptyKey) i = (i + 1) & bm.mask;
        bm.slots[i] = g;
      }
    }
    uint64_t i = ghash(key) >> bm.shift;
    while (bm.slots[i].key != kEmptyKey) i = (i + 1) & bm.mask;
    bm.slots[i] = GSlot{key, next, 0};
    ++bm.used;
  };
  size_t begin = 0;
  max_out_ = 2;
  for (size_t k = 0; k < seq_end.size(); ++k) {
    max_out_ = std::max(max_out_, seq_end[k] - begin);  // the deepest state: see step()
    int32_t s = seq[begin] + 1;
    for (size_t j = begin + 1; j < seq_end[k]; ++j) {
      const uint64_t key = gkey(s, seq[j]);
      int32_t nx = bm_find(key);
      if (nx == 0) {
        if (states_.size() >= static_cast<size_t>(INT32_MAX)) throw InputError("the metadata needs more than 2^31 states");
        nx = static_cast<int32_t>(states_.size());
        states_.push_back(State{0, -1, -1, 0});
        bm_insert(key, nx);
        edge_keys.push_back(key);
        edge_child.push_back(nx);
        ++states_[static_cast<size_t>(s)].nchild;
      }
      s = nx;
    }
    begin = seq_end[k];
    State& st = states_[static_cast<size_t>(s)];
    if (st.out >= 0) {  // the same key again: MetaCLIP's automaton keeps the last id
      if (report.shadowed == 0) report.first_shadowed = st.out;
      ++report.shadowed;
    }
    st.out = seq_entry[k];
  }

  // The final transition table, at load factor in (1/3, 2/3]: successful probes stay short, and
  // the filter screens out most unsuccessful ones (at most 1/2, it took 32 MB instead of 16 for
  // the 552k transitions of the benchmark's metadata).
  const uint64_t gcap = pow2_at_least(edge_keys.size() * 3 / 2 + 2);
  gslots_.assign(gcap, GSlot{kEmptyKey, 0, 0});
  gmask_ = gcap - 1;
  gshift_ = shift_for(gcap);
  for (size_t i = 0; i < edge_keys.size(); ++i) goto_insert(edge_keys[i], edge_child[i]);
  build_filter();
  build_vfilter();

  // Failure and output links, breadth first. Depth-1 states fail to the root. Children lists
  // (CSR by parent) come from the edges.
  const size_t n_states = states_.size();
  std::vector<uint32_t> cbeg(n_states + 1, 0);
  for (uint64_t k : edge_keys) ++cbeg[static_cast<size_t>(k >> 32) + 1];
  for (size_t i = 0; i < n_states; ++i) cbeg[i + 1] += cbeg[i];
  std::vector<std::pair<int32_t, int32_t>> children(edge_keys.size());  // (token, child)
  {
    std::vector<uint32_t> fill(cbeg.begin(), cbeg.end() - 1);
    for (size_t i = 0; i < edge_keys.size(); ++i) {
      const size_t parent = static_cast<size_t>(edge_keys[i] >> 32);
      children[fill[parent]++] = {static_cast<int32_t>(edge_keys[i] & 0xffffffffu), edge_child[i]};
    }
  }
  std::vector<int32_t> queue;
  queue.reserve(n_states);
  for (int32_t t = 0; t < n_tok_; ++t) queue.push_back(t + 1);
  for (size_t qi = 0; qi < queue.size(); ++qi) {
    const int32_t u = queue[qi];
    for (uint32_t c = cbeg[static_cast<size_t>(u)]; c < cbeg[static_cast<size_t>(u) + 1]; ++c) {
      const int32_t t = children[c].first;
      const int32_t v = children[c].second;
      int32_t f = states_[static_cast<size_t>(u)].fail;
      int32_t target;
      for (;;) {
        target = go(f, t);
        if (target > 0 || f == 0) break;
        f = states_[static_cast<size_t>(f)].fail;
      }
      State& sv = states_[static_cast<size_t>(v)];
      sv.fail = target;
      const State& sf = states_[static_cast<size_t>(target)];
      sv.dict = sf.out >= 0 ? target : sf.dict;
      queue.push_back(v);
    }
  }
  sync_slots();
}

// Where a token or an edge sits in its table depends on the hash functions, which are not part
// of the file format: the file holds the two tables' contents, and loading places every token and
// every edge again with this build's hashes, in tables of the same (validated) sizes. So files
// written by a build with other hash functions (format version 1 from before) load correctly.
void TokenEngine::place_slots() {
  set_vocab_geometry();
  gshift_ = shift_for(gslots_.size());
  vslots_.assign(vslots_.size(), kFreeSlot);
  for (int32_t t = 0; t < n_tok_; ++t) vocab_insert_slot(t);
  big_vector<GSlot> old;
  old.swap(gslots_);
  gslots_.assign(old.size(), GSlot{kEmptyKey, 0, 0});
  for (const GSlot& g : old) {
    if (g.key != kEmptyKey) goto_insert(g.key, g.next);
  }
}

void TokenEngine::build_filter() {
  // About 8 bits per transition (about 5% false positives with two bits set per key), but at
  // most 4 Mbit = 512 KiB, so that the filter stays in L2 even for huge metadata.
  size_t n_edges = 0;
  for (const GSlot& g : gslots_) n_edges += g.key != kEmptyKey;
  uint32_t log_words = 6;
  while (log_words < 16 && (uint64_t{64} << log_words) < n_edges * 8) ++log_words;
  fshift_ = 64 - log_words;
  filter_.assign(size_t{1} << log_words, 0);
  for (const GSlot& g : gslots_) {
    if (g.key == kEmptyKey) continue;
    const uint64_t h = filter_hash(g.key);
    filter_[h >> fshift_] |= filter_mask(h);
  }
}

void TokenEngine::build_vfilter() {
  // About 16 bits per token (under 2% false positives with two bits per piece), at most 2 Mbit
  // = 256 KiB, so that it stays in L1/L2 beside the transition filter: a piece that is no token
  // then costs a filter word in cache instead of a random line of the vocabulary table.
  uint32_t log_words = 1;
  while (log_words < 15 && (uint64_t{64} << log_words) < static_cast<uint64_t>(n_tok_) * 16) ++log_words;
  vfshift_ = 64 - log_words;
  vfilter_.assign(size_t{1} << log_words, 0);
  for (int32_t t = 0; t < n_tok_; ++t) {
    const size_t n = voff_[static_cast<size_t>(t) + 1] - voff_[static_cast<size_t>(t)];
    const uint8_t* p = varena_.data() + voff_[static_cast<size_t>(t)];
    uint64_t w0, w1;
    const uint64_t f = vfilter_hash(piece_hash<false>(p, n, p + n, w0, w1));
    vfilter_[f >> vfshift_] |= filter_mask(f);
  }
}

void TokenEngine::write(serial::Writer& w) const {
  w.pod<uint64_t>(ci_ ? 1 : 0);
  w.pod<int64_t>(empty_tok_);
  w.pod<int64_t>(n_tok_);
  w.pod<uint64_t>(vmask_);
  w.pod<uint64_t>(gmask_);
  w.vec(vslots_);
  w.vec(varena_);
  w.vec(voff_);
  w.vec(states_);
  w.vec(gslots_);
}

void TokenEngine::read(serial::Reader& r, int64_t n_entries) {
  const uint64_t kMax = uint64_t{1} << 40;
  ci_ = r.pod<uint64_t>() != 0;
  empty_tok_ = static_cast<int32_t>(r.pod<int64_t>());
  n_tok_ = static_cast<int32_t>(r.pod<int64_t>());
  vmask_ = r.pod<uint64_t>();
  gmask_ = r.pod<uint64_t>();
  vslots_ = r.vec<VSlot, HugePageAllocator<VSlot>>(kMax);
  varena_ = r.vec<uint8_t>(kMax);
  voff_ = r.vec<uint64_t>(kMax);
  states_ = r.vec<State, HugePageAllocator<State>>(kMax);
  gslots_ = r.vec<GSlot, HugePageAllocator<GSlot>>(kMax);
  validate(n_entries);
  place_slots();
  // Derived data is rebuilt rather than trusted, so it can never disagree with the tables.
  sync_slots();
  build_filter();
  build_vfilter();
}

// Every index that the hot loop follows is checked once here, so that a file that passes the
// checksum but was written by a buggy or hostile producer still cannot cause an out-of-bounds
// read or an endless loop.
void TokenEngine::validate(int64_t n_entries) {
  auto bad = [](const char* what) { throw FormatError(std::string("matcher file is inconsistent: ") + what); };
  if (vslots_.size() < 2 || (vslots_.size() & (vslots_.size() - 1)) != 0 || vmask_ != vslots_.size() - 1) bad("vocabulary table size");
  if (gslots_.empty() || (gslots_.size() & (gslots_.size() - 1)) != 0 || gmask_ != gslots_.size() - 1) bad("transition table size");
  if (voff_.empty() || voff_[0] != 0 || voff_.back() != varena_.size()) bad("token offsets");
  const size_t n_tok = voff_.size() - 1;
  if (n_tok > static_cast<size_t>(INT32_MAX) / 2 || static_cast<size_t>(n_tok_) != n_tok) bad("token count");
  for (size_t i = 0; i < n_tok; ++i) {
    if (voff_[i + 1] < voff_[i]) bad("token offsets");
  }
  if (empty_tok_ < -1 || empty_tok_ >= static_cast<int64_t>(n_tok)) bad("empty token");
  size_t free_slots = 0;
  for (const VSlot& s : vslots_) {
    if (s.tok < 0) {
      ++free_slots;
      continue;
    }
    if (static_cast<size_t>(s.tok) >= n_tok) bad("vocabulary token id");
    if (voff_[static_cast<size_t>(s.tok) + 1] - voff_[static_cast<size_t>(s.tok)] != s.len) bad("vocabulary length");
  }
  if (free_slots == 0) bad("vocabulary table is full");
  // Loading places every token again (place_slots): they must fit with a slot to spare.
  if (n_tok >= vslots_.size()) bad("vocabulary table is too small");
  const size_t n_states = states_.size();
  if (n_states < n_tok + 1 || n_states > static_cast<size_t>(INT32_MAX)) bad("state count");
  for (const State& s : states_) {
    if (s.fail < 0 || static_cast<size_t>(s.fail) >= n_states) bad("failure link");
    if (s.dict < -1 || (s.dict >= 0 && static_cast<size_t>(s.dict) >= n_states)) bad("output link");
    if (s.dict >= 0 && states_[static_cast<size_t>(s.dict)].out < 0) bad("output link target");
    if (s.out < -1 || s.out >= n_entries) bad("entry id");
  }
  size_t free_g = 0;
  for (const GSlot& g : gslots_) {
    if (g.key == kEmptyKey) {
      ++free_g;
      continue;
    }
    if ((g.key >> 32) == 0 || (g.key >> 32) >= n_states || (g.key & 0xffffffffu) >= n_tok) bad("transition key");
    if (g.next <= n_tok_ || static_cast<size_t>(g.next) >= n_states) bad("transition target");
  }
  if (free_g == 0) bad("transition table is full");
  // A parent always has a smaller id than its child, so one pass gives every depth. Failure and
  // output links must point strictly shallower, so no chain that the hot loop follows can cycle.
  std::vector<int32_t> parent(n_states, -1);
  std::vector<int32_t> nchild(n_states, 0);
  for (const GSlot& g : gslots_) {
    if (g.key == kEmptyKey) continue;
    const size_t v = static_cast<size_t>(g.next);
    if (parent[v] != -1) bad("state reached twice");
    parent[v] = static_cast<int32_t>(g.key >> 32);
    ++nchild[static_cast<size_t>(g.key >> 32)];
  }
  std::vector<int32_t> depth(n_states, 0);
  int32_t max_depth = 1;
  for (size_t s = 1; s < n_states; ++s) {
    if (s <= n_tok) {
      depth[s] = 1;
      if (parent[s] != -1) bad("depth-1 state with a parent");
      continue;
    }
    if (parent[s] < 1 || static_cast<size_t>(parent[s]) >= s) bad("unreachable state");
    depth[s] = depth[static_cast<size_t>(parent[s])] + 1;
    max_depth = std::max(max_depth, depth[s]);
  }
  for (size_t s = 1; s < n_states; ++s) {
    const State& st = states_[s];
    if (st.nchild != nchild[s]) bad("child count");
    if (depth[static_cast<size_t>(st.fail)] >= depth[s]) bad("failure link depth");
    if (st.dict >= 0 && depth[static_cast<size_t>(st.dict)] >= depth[s]) bad("output link depth");
  }
  if (states_[0].out != -1 || states_[0].dict != -1 || states_[0].nchild != 0) bad("root state");
  max_out_ = std::max<size_t>(2, static_cast<size_t>(max_depth));
}

size_t TokenEngine::memory_bytes() const {
  return vslots_.capacity() * sizeof(VSlot) + varena_.capacity() + voff_.capacity() * sizeof(uint64_t) +
         states_.capacity() * sizeof(State) + gslots_.capacity() * sizeof(GSlot) + filter_.capacity() * sizeof(uint64_t) +
         vfilter_.capacity() * sizeof(uint64_t);
}

}  // namespace detail
}  // namespace fastcurate
