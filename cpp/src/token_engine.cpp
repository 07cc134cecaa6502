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
  uint64_t prefix;
  uint64_t i = piece_hash<false>(p, n, p + n, prefix) & vmask_;
  while (vslots_[i].tok >= 0) i = (i + 1) & vmask_;
  vslots_[i] = VSlot{prefix, static_cast<uint32_t>(n), tok};
}

void TokenEngine::grow_vocab() {
  const uint64_t cap = vslots_.empty() ? 1024 : vslots_.size() * 2;
  vslots_.assign(cap, VSlot{0, 0, -1});
  vmask_ = cap - 1;
  const int32_t n_tok = static_cast<int32_t>(voff_.size() - 1);
  for (int32_t t = 0; t < n_tok; ++t) {
    if (t != empty_tok_) vocab_insert_slot(t);
  }
}

int32_t TokenEngine::intern(const uint8_t* p, size_t n) {
  // The piece is already folded when ci_, so the case-sensitive lookup finds folded tokens.
  if (n == 0) {
    if (empty_tok_ < 0) {
      empty_tok_ = static_cast<int32_t>(voff_.size() - 1);
      voff_.push_back(varena_.size());
    }
    return empty_tok_;
  }
  const int32_t found = lookup<false>(p, n, p + n);
  if (found >= 0) return found;
  const int32_t tok = static_cast<int32_t>(voff_.size() - 1);
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

void TokenEngine::goto_insert(uint64_t key, int32_t next) {
  uint64_t i = ghash(key) & gmask_;
  while (gslots_[i].key != kEmptyKey) i = (i + 1) & gmask_;
  gslots_[i] = GSlot{key, next, 0};
}

void TokenEngine::build(const std::vector<std::string_view>& entries, bool case_insensitive, BuildReport& report) {
  ci_ = case_insensitive;
  grow_vocab();  // allocate the table even if no entry can match: lookups need a free slot
  states_.clear();
  states_.push_back(State{0, -1, -1, 0});
  std::vector<uint64_t> edge_keys;   // (parent << 32 | token) of every non-root edge, in creation order
  std::vector<int32_t> edge_child;
  std::vector<int32_t> root_edges;   // tokens with a root transition, in creation order
  // Build-time trie transitions; the final table is an open-addressing array sized once.
  std::vector<int32_t> tokens;
  std::string folded;
  struct BuildMap {
    std::vector<GSlot> slots;
    uint64_t mask = 0;
    size_t used = 0;
  } bm;
  bm.slots.assign(1024, GSlot{kEmptyKey, 0, 0});
  bm.mask = 1023;
  auto bm_find = [&](uint64_t key) -> int32_t {
    uint64_t i = ghash(key) & bm.mask;
    for (;;) {
      if (bm.slots[i].key == key) return bm.slots[i].next;
      if (bm.slots[i].key == kEmptyKey) return 0;
      i = (i + 1) & bm.mask;
    }
  };
  auto bm_insert = [&](uint64_t key, int32_t next) {
    if ((bm.used + 1) * 2 > bm.slots.size()) {
      std::vector<GSlot> old;
      old.swap(bm.slots);
      bm.slots.assign(old.size() * 2, GSlot{kEmptyKey, 0, 0});
      bm.mask = bm.slots.size() - 1;
      for (const GSlot& g : old) {
        if (g.key == kEmptyKey) continue;
        uint64_t i = ghash(g.key) & bm.mask;
        while (bm.slots[i].key != kEmptyKey) i = (i + 1) & bm.mask;
        bm.slots[i] = g;
      }
    }
    uint64_t i = ghash(key) & bm.mask;
    while (bm.slots[i].key != kEmptyKey) i = (i + 1) & bm.mask;
    bm.slots[i] = GSlot{key, next, 0};
    ++bm.used;
  };

  for (size_t e = 0; e < entries.size(); ++e) {
    std::string_view entry = entries[e];
    tokens.clear();
    bool ok = true;
    size_t start = 0;
    for (;;) {
      size_t sp = entry.find(' ', start);
      std::string_view piece = entry.substr(start, sp == std::string_view::npos ? std::string_view::npos : sp - start);
      if (!piece_can_match(piece)) {
        ok = false;
        break;
      }
      const uint8_t* pp = reinterpret_cast<const uint8_t*>(piece.data());
      if (ci_) {
        folded.assign(piece.begin(), piece.end());
        for (char& c : folded) c = static_cast<char>(bytes::fold_ascii(static_cast<uint8_t>(c)));
        pp = reinterpret_cast<const uint8_t*>(folded.data());
      }
      tokens.push_back(intern(pp, piece.size()));
      if (sp == std::string_view::npos) break;
      start = sp + 1;
    }
    if (!ok) {
      if (report.never_match == 0) report.first_never_match = static_cast<int64_t>(e);
      ++report.never_match;
      continue;
    }
    if (root_next_.size() < voff_.size() - 1) root_next_.resize(voff_.size() - 1, 0);
    int32_t s = 0;
    for (int32_t t : tokens) {
      int32_t nx = s == 0 ? root_next_[static_cast<size_t>(t)] : bm_find(gkey(s, t));
      if (nx == 0) {
        nx = static_cast<int32_t>(states_.size());
        states_.push_back(State{0, -1, -1, 0});
        if (s == 0) {
          root_next_[static_cast<size_t>(t)] = nx;
          root_edges.push_back(t);
        } else {
          bm_insert(gkey(s, t), nx);
          edge_keys.push_back(gkey(s, t));
          edge_child.push_back(nx);
          ++states_[static_cast<size_t>(s)].nchild;
        }
      }
      s = nx;
    }
    State& st = states_[static_cast<size_t>(s)];
    if (st.out >= 0) {  // the same key again: MetaCLIP's automaton keeps the last id
      if (report.shadowed == 0) report.first_shadowed = st.out;
      ++report.shadowed;
    }
    st.out = static_cast<int32_t>(e);
  }
  if (states_.size() > static_cast<size_t>(INT32_MAX) || voff_.size() > static_cast<size_t>(INT32_MAX)) {
    throw InputError("the metadata is too large: more than 2^31 automaton states or distinct words");
  }
  root_next_.resize(voff_.size() - 1, 0);

  // The final goto table, at load factor <= 1/2.
  const uint64_t gcap = pow2_at_least(edge_keys.size() * 2 + 2);
  gslots_.assign(gcap, GSlot{kEmptyKey, 0, 0});
  gmask_ = gcap - 1;
  for (size_t i = 0; i < edge_keys.size(); ++i) goto_insert(edge_keys[i], edge_child[i]);

  // Children lists (CSR by parent) for the breadth-first computation of failure links.
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
  for (int32_t t : root_edges) {
    const int32_t v = root_next_[static_cast<size_t>(t)];
    states_[static_cast<size_t>(v)].fail = 0;
    states_[static_cast<size_t>(v)].dict = -1;
    queue.push_back(v);
  }
  for (size_t qi = 0; qi < queue.size(); ++qi) {
    const int32_t u = queue[qi];
    for (uint32_t c = cbeg[static_cast<size_t>(u)]; c < cbeg[static_cast<size_t>(u) + 1]; ++c) {
      const int32_t t = children[c].first;
      const int32_t v = children[c].second;
      int32_t f = states_[static_cast<size_t>(u)].fail;
      int32_t target = 0;
      for (;;) {
        const int32_t nx = go(f, t);
        if (nx > 0) {
          target = nx;
          break;
        }
        if (f == 0) break;
        f = states_[static_cast<size_t>(f)].fail;
      }
      State& sv = states_[static_cast<size_t>(v)];
      sv.fail = target;
      const State& sf = states_[static_cast<size_t>(target)];
      sv.dict = target == 0 ? -1 : (sf.out >= 0 ? target : sf.dict);
      queue.push_back(v);
    }
  }
}

void TokenEngine::write(serial::Writer& w) const {
  w.pod<uint64_t>(ci_ ? 1 : 0);
  w.pod<int64_t>(empty_tok_);
  w.pod<uint64_t>(vmask_);
  w.pod<uint64_t>(gmask_);
  w.vec(vslots_);
  w.vec(varena_);
  w.vec(voff_);
  w.vec(states_);
  w.vec(root_next_);
  w.vec(gslots_);
}

void TokenEngine::read(serial::Reader& r, int64_t n_entries) {
  const uint64_t kMax = uint64_t{1} << 40;
  ci_ = r.pod<uint64_t>() != 0;
  empty_tok_ = static_cast<int32_t>(r.pod<int64_t>());
  vmask_ = r.pod<uint64_t>();
  gmask_ = r.pod<uint64_t>();
  vslots_ = r.vec<VSlot>(kMax);
  varena_ = r.vec<uint8_t>(kMax);
  voff_ = r.vec<uint64_t>(kMax);
  states_ = r.vec<State>(kMax);
  root_next_ = r.vec<int32_t>(kMax);
  gslots_ = r.vec<GSlot>(kMax);
  validate(n_entries);
}

// Every index that the hot loop follows is checked once here, so that a file that passes the
// checksum but was written by a buggy or hostile producer still cannot cause an out-of-bounds read.
void TokenEngine::validate(int64_t n_entries) const {
  auto bad = [](const char* what) { throw FormatError(std::string("matcher file is inconsistent: ") + what); };
  if (vslots_.empty() || (vslots_.size() & (vslots_.size() - 1)) != 0 || vmask_ != vslots_.size() - 1) bad("vocabulary table size");
  if (gslots_.empty() || (gslots_.size() & (gslots_.size() - 1)) != 0 || gmask_ != gslots_.size() - 1) bad("transition table size");
  if (voff_.empty() || voff_[0] != 0 || voff_.back() != varena_.size()) bad("token offsets");
  const size_t n_tok = voff_.size() - 1;
  if (n_tok > static_cast<size_t>(INT32_MAX)) bad("token count");
  for (size_t i = 0; i < n_tok; ++i) {
    if (voff_[i + 1] < voff_[i]) bad("token offsets");
  }
  if (empty_tok_ < -1 || empty_tok_ >= static_cast<int64_t>(n_tok)) bad("empty token");
  if (root_next_.size() != n_tok) bad("root transitions");
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
  const size_t n_states = states_.size();
  if (n_states == 0 || n_states > static_cast<size_t>(INT32_MAX)) bad("state count");
  for (const State& s : states_) {
    if (s.fail < 0 || static_cast<size_t>(s.fail) >= n_states) bad("failure link");
    if (s.dict < -1 || (s.dict >= 0 && static_cast<size_t>(s.dict) >= n_states)) bad("output link");
    if (s.dict >= 0 && states_[static_cast<size_t>(s.dict)].out < 0) bad("output link target");
    if (s.out < -1 || s.out >= n_entries) bad("entry id");
  }
  for (const int32_t t : root_next_) {
    if (t < 0 || static_cast<size_t>(t) >= n_states) bad("root transition target");
  }
  size_t free_g = 0;
  for (const GSlot& g : gslots_) {
    if (g.key == kEmptyKey) {
      ++free_g;
      continue;
    }
    if ((g.key >> 32) >= n_states || (g.key & 0xffffffffu) >= n_tok) bad("transition key");
    if (g.next <= 0 || static_cast<size_t>(g.next) >= n_states) bad("transition target");
  }
  if (free_g == 0) bad("transition table is full");
  // States are numbered in creation order, so a parent always has a smaller id than its child:
  // one pass gives every depth. Failure and output links must then point strictly shallower, so
  // no chain followed by the hot loop can cycle.
  std::vector<int32_t> parent(n_states, -1);
  std::vector<int32_t> nchild(n_states, 0);
  for (const int32_t v : root_next_) {
    if (v == 0) continue;
    if (parent[static_cast<size_t>(v)] != -1) bad("state reached twice");
    parent[static_cast<size_t>(v)] = 0;
  }
  for (const GSlot& g : gslots_) {
    if (g.key == kEmptyKey) continue;
    const size_t v = static_cast<size_t>(g.next);
    if (parent[v] != -1) bad("state reached twice");
    parent[v] = static_cast<int32_t>(g.key >> 32);
    ++nchild[static_cast<size_t>(g.key >> 32)];
  }
  std::vector<int32_t> depth(n_states, 0);
  for (size_t s = 1; s < n_states; ++s) {
    if (parent[s] < 0 || static_cast<size_t>(parent[s]) >= s) bad("unreachable state");
    depth[s] = depth[static_cast<size_t>(parent[s])] + 1;
  }
  for (size_t s = 1; s < n_states; ++s) {
    const State& st = states_[s];
    if (st.nchild != nchild[s]) bad("child count");
    if (depth[static_cast<size_t>(st.fail)] >= depth[s]) bad("failure link depth");
    if (st.dict >= 0 && depth[static_cast<size_t>(st.dict)] >= depth[s]) bad("output link depth");
  }
  if (states_[0].out != -1 || states_[0].dict != -1) bad("root state");
}

size_t TokenEngine::memory_bytes() const {
  return vslots_.capacity() * sizeof(VSlot) + varena_.capacity() + voff_.capacity() * sizeof(uint64_t) +
         states_.capacity() * sizeof(State) + root_next_.capacity() * sizeof(int32_t) +
         gslots_.capacity() * sizeof(GSlot);
}

}  // namespace detail
}  // namespace fastcurate
