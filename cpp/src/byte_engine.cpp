#include "byte_engine.hpp"

#include <algorithm>
#include <numeric>
#include <string>

namespace fastcurate {
namespace detail {

void ByteEngine::build(const std::vector<std::string_view>& entries, bool case_insensitive) {
  ci_ = case_insensitive;
  const size_t n = entries.size();
  std::vector<std::string> folded;
  std::vector<std::string_view> keys(entries);
  if (ci_) {
    folded.resize(n);
    for (size_t i = 0; i < n; ++i) {
      folded[i].assign(entries[i].begin(), entries[i].end());
      for (char& c : folded[i]) c = static_cast<char>(bytes::fold_ascii(static_cast<uint8_t>(c)));
      keys[i] = folded[i];
    }
  }
  pat_len_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    if (keys[i].size() > UINT32_MAX) throw InputError("entry " + std::to_string(i) + " is longer than 4 GiB");
    pat_len_[i] = static_cast<uint32_t>(keys[i].size());
  }
  // Insert in sorted order: a node's children are then created in increasing byte order, and the
  // trie is built with a stack of the previous key's path instead of a map per node.
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return keys[static_cast<size_t>(a)] < keys[static_cast<size_t>(b)];
  });
  std::vector<int32_t> parent{-1};
  std::vector<uint8_t> byte{0};
  std::vector<int32_t> path{0};
  std::vector<int32_t> term_node;  // node of each sorted pattern
  term_node.reserve(n);
  std::string_view prev;
  for (int32_t id : order) {
    std::string_view k = keys[static_cast<size_t>(id)];
    size_t l = 0;
    const size_t lim = std::min(prev.size(), k.size());
    while (l < lim && prev[l] == k[l]) ++l;
    path.resize(l + 1);
    for (size_t d = l; d < k.size(); ++d) {
      const int32_t node = static_cast<int32_t>(parent.size());
      parent.push_back(path[d]);
      byte.push_back(static_cast<uint8_t>(k[d]));
      path.push_back(node);
    }
    term_node.push_back(path[k.size()]);
    prev = k;
    if (parent.size() > static_cast<size_t>(INT32_MAX)) throw InputError("the patterns need more than 2^31 states");
  }
  const size_t n_states = parent.size();
  term_beg_.assign(n_states, 0);
  term_cnt_.assign(n_states, 0);
  term_ids_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    // Equal keys are adjacent in sorted order, so each node's patterns form one run.
    const size_t node = static_cast<size_t>(term_node[i]);
    if (term_cnt_[node] == 0) term_beg_[node] = static_cast<uint32_t>(i);
    ++term_cnt_[node];
    term_ids_[i] = order[i];
  }
  cbeg_.assign(n_states + 1, 0);
  root_.assign(256, 0);
  for (size_t v = 1; v < n_states; ++v) {
    if (parent[v] == 0) {
      root_[byte[v]] = static_cast<int32_t>(v);
    }
    ++cbeg_[static_cast<size_t>(parent[v]) + 1];
  }
  for (size_t i = 0; i < n_states; ++i) cbeg_[i + 1] += cbeg_[i];
  cbyte_.resize(n_states - 1);
  cnext_.resize(n_states - 1);
  {
    std::vector<uint32_t> fill(cbeg_.begin(), cbeg_.end() - 1);
    for (size_t v = 1; v < n_states; ++v) {
      const uint32_t at = fill[static_cast<size_t>(parent[v])]++;
      cbyte_[at] = byte[v];
      cnext_[at] = static_cast<int32_t>(v);
    }
  }
  fail_.assign(n_states, 0);
  dict_.assign(n_states, 0);
  std::vector<int32_t> queue;
  queue.reserve(n_states);
  for (uint32_t c = cbeg_[0]; c < cbeg_[1]; ++c) queue.push_back(cnext_[c]);
  for (size_t qi = 0; qi < queue.size(); ++qi) {
    const int32_t u = queue[qi];
    for (uint32_t c = cbeg_[static_cast<size_t>(u)]; c < cbeg_[static_cast<size_t>(u) + 1]; ++c) {
      const int32_t v = cnext_[c];
      const uint8_t b = cbyte_[c];
      int32_t f = fail_[static_cast<size_t>(u)];
      int32_t target = 0;
      for (;;) {
        const int32_t nx = go(f, b);
        if (nx > 0) {
          target = nx;
          break;
        }
        if (f == 0) break;
        f = fail_[static_cast<size_t>(f)];
      }
      fail_[static_cast<size_t>(v)] = target;
      dict_[static_cast<size_t>(v)] = term_cnt_[static_cast<size_t>(target)] ? target : dict_[static_cast<size_t>(target)];
      queue.push_back(v);
    }
  }
}

void ByteEngine::write(serial::Writer& w) const {
  w.pod<uint64_t>(ci_ ? 1 : 0);
  w.vec(root_);
  w.vec(cbeg_);
  w.vec(cbyte_);
  w.vec(cnext_);
  w.vec(fail_);
  w.vec(dict_);
  w.vec(term_beg_);
  w.vec(term_cnt_);
  w.vec(term_ids_);
  w.vec(pat_len_);
}

void ByteEngine::read(serial::Reader& r, int64_t n_entries) {
  const uint64_t kMax = uint64_t{1} << 40;
  ci_ = r.pod<uint64_t>() != 0;
  root_ = r.vec<int32_t>(256);
  cbeg_ = r.vec<uint32_t>(kMax);
  cbyte_ = r.vec<uint8_t>(kMax);
  cnext_ = r.vec<int32_t>(kMax);
  fail_ = r.vec<int32_t>(kMax);
  dict_ = r.vec<int32_t>(kMax);
  term_beg_ = r.vec<uint32_t>(kMax);
  term_cnt_ = r.vec<uint32_t>(kMax);
  term_ids_ = r.vec<int32_t>(kMax);
  pat_len_ = r.vec<uint32_t>(kMax);
  validate(n_entries);
}

// Checks every index the scan follows; see TokenEngine::validate.
void ByteEngine::validate(int64_t n_entries) const {
  auto bad = [](const char* what) { throw FormatError(std::string("matcher file is inconsistent: ") + what); };
  const size_t n_states = fail_.size();
  if (n_states == 0 || n_states > static_cast<size_t>(INT32_MAX)) bad("state count");
  if (root_.size() != 256 || cbeg_.size() != n_states + 1 || dict_.size() != n_states ||
      term_beg_.size() != n_states || term_cnt_.size() != n_states)
    bad("array sizes");
  if (cbyte_.size() != n_states - 1 || cnext_.size() != n_states - 1) bad("child arrays");
  if (pat_len_.size() != static_cast<size_t>(n_entries) || term_ids_.size() != static_cast<size_t>(n_entries)) bad("pattern arrays");
  if (cbeg_[0] != 0 || cbeg_[n_states] != cbyte_.size()) bad("child offsets");
  for (size_t s = 0; s < n_states; ++s) {
    if (cbeg_[s + 1] < cbeg_[s]) bad("child offsets");
    for (uint32_t c = cbeg_[s]; c < cbeg_[s + 1]; ++c) {
      // Children are numbered after their parent (sorted insertion), and sorted by byte.
      if (cnext_[c] <= static_cast<int32_t>(s) || static_cast<size_t>(cnext_[c]) >= n_states) bad("child target");
      if (c > cbeg_[s] && cbyte_[c] <= cbyte_[c - 1]) bad("child order");
    }
  }
  std::vector<int32_t> depth(n_states, -1);
  depth[0] = 0;
  for (size_t s = 0; s < n_states; ++s) {
    if (depth[s] < 0) bad("unreachable state");
    for (uint32_t c = cbeg_[s]; c < cbeg_[s + 1]; ++c) {
      if (depth[static_cast<size_t>(cnext_[c])] != -1) bad("state reached twice");
      depth[static_cast<size_t>(cnext_[c])] = depth[s] + 1;
    }
  }
  for (int c = 0; c < 256; ++c) {
    const int32_t v = root_[static_cast<size_t>(c)];
    if (v < 0 || static_cast<size_t>(v) >= n_states || (v != 0 && depth[static_cast<size_t>(v)] != 1)) bad("root table");
  }
  for (size_t s = 1; s < n_states; ++s) {
    const int32_t f = fail_[s], d = dict_[s];
    if (f < 0 || static_cast<size_t>(f) >= n_states || depth[static_cast<size_t>(f)] >= depth[s]) bad("failure link");
    if (d < 0 || static_cast<size_t>(d) >= n_states || (d != 0 && depth[static_cast<size_t>(d)] >= depth[s])) bad("output link");
    if (static_cast<uint64_t>(term_beg_[s]) + term_cnt_[s] > term_ids_.size()) bad("pattern run");
    for (uint32_t k = term_beg_[s]; k < term_beg_[s] + term_cnt_[s]; ++k) {
      const int32_t id = term_ids_[k];
      if (id < 0 || id >= n_entries || pat_len_[static_cast<size_t>(id)] != static_cast<uint32_t>(depth[s])) bad("pattern length");
    }
  }
  if (term_cnt_[0] != 0) bad("root patterns");
  for (int32_t id : term_ids_) {
    if (id < 0 || id >= n_entries) bad("pattern id");
  }
}

size_t ByteEngine::memory_bytes() const {
  return root_.capacity() * 4 + cbeg_.capacity() * 4 + cbyte_.capacity() + cnext_.capacity() * 4 +
         fail_.capacity() * 4 + dict_.capacity() * 4 + term_beg_.capacity() * 4 + term_cnt_.capacity() * 4 +
         term_ids_.capacity() * 4 + pat_len_.capacity() * 4;
}

}  // namespace detail
}  // namespace fastcurate
