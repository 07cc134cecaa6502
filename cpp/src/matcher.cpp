#include "fastcurate/matcher.hpp"

#include <cstring>
#include <stdexcept>
#include <string>

#include "byte_engine.hpp"
#include "fastcurate/bytes.hpp"
#include "fastcurate/parallel.hpp"
#include "serial.hpp"
#include "token_engine.hpp"

namespace fastcurate {

namespace {
constexpr char kMagic[8] = {'F', 'C', 'M', 'A', 'T', 'C', 'H', '\0'};
// Version 2 (this build) places the vocabulary and transition tables with new hash functions;
// the layout is that of version 1. Loading places every token and edge again with this build's
// hashes, so version 1 files still load; version 1 readers refuse version 2 files (they would
// look tokens up where the old hashes put them).
constexpr uint32_t kVersion = 2;
constexpr uint32_t kOldestVersion = 1;
constexpr size_t kHeaderSize = 32;  // magic, version, flags, payload size, checksum
// Rows per unit of parallel work: small enough to balance load and to notice a cancel within
// milliseconds, large enough that scheduling costs nothing.
constexpr int64_t kBlockRows = 2048;

struct Block {
  size_t chunk;
  int64_t begin;
  int64_t end;
};

std::vector<Block> make_blocks(const std::vector<TextColumn>& chunks, int64_t& total_rows) {
  std::vector<Block> blocks;
  total_rows = 0;
  for (size_t c = 0; c < chunks.size(); ++c) {
    for (int64_t b = 0; b < chunks[c].length; b += kBlockRows) {
      blocks.push_back(Block{c, b, std::min(chunks[c].length, b + kBlockRows)});
    }
    total_rows += chunks[c].length;
  }
  return blocks;
}
}  // namespace

struct Matcher::Impl {
  MatcherOptions opt;
  std::vector<uint8_t> entry_bytes;
  std::vector<int64_t> entry_off{0};
  BuildReport report;
  detail::TokenEngine tok;
  detail::ByteEngine byte;
};

Matcher::Matcher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Matcher::~Matcher() = default;
Matcher::Matcher(Matcher&&) noexcept = default;
Matcher& Matcher::operator=(Matcher&&) noexcept = default;

Matcher::Matcher(const std::vector<std::string_view>& entries, MatcherOptions options) : impl_(new Impl) {
  if (entries.empty()) throw InputError("the entry list is empty: give at least one metadata entry");
  if (entries.size() > static_cast<size_t>(INT32_MAX)) throw InputError("more than 2^31 - 1 entries");
  impl_->opt = options;
  size_t total = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].empty()) {
      throw InputError("entry " + std::to_string(i) +
                       " is an empty string; remove it (an empty key would match every caption that contains a double space)");
    }
    total += entries[i].size();
  }
  impl_->entry_bytes.reserve(total);
  impl_->entry_off.reserve(entries.size() + 1);
  for (const auto& e : entries) {
    impl_->entry_bytes.insert(impl_->entry_bytes.end(), e.begin(), e.end());
    impl_->entry_off.push_back(static_cast<int64_t>(impl_->entry_bytes.size()));
  }
  if (options.mode == MatchMode::MetaClip) {
    impl_->tok.build(entries, !options.case_sensitive, impl_->report);
  } else {
    impl_->byte.build(entries, !options.case_sensitive);
  }
}

MatchResult Matcher::match(const std::vector<TextColumn>& chunks, int threads, const CancelToken* cancel) const {
  int64_t total_rows = 0;
  const std::vector<Block> blocks = make_blocks(chunks, total_rows);
  const int64_t n_blocks = static_cast<int64_t>(blocks.size());
  const Impl& im = *impl_;
  // Each worker appends the ids of the blocks it takes to its own buffers, reused across blocks
  // (no allocation per block, no memory shared between workers while they match); `where`
  // records which worker holds each block and where, for the merge below.
  struct Worker {
    detail::IdBuffer ids;
    result_vector<int64_t> ends{0};  // 0, then per row the end of its ids within `ids`
    std::unique_ptr<detail::TokenEngine::Scratch> scratch;
  };
  struct Where {
    int worker = 0;
    size_t ids_begin = 0, ids_end = 0, ends_begin = 0;
  };
  const int n_workers = worker_count(n_blocks, threads);
  std::vector<Worker> workers(static_cast<size_t>(n_workers));
  for (size_t wi = 0; wi < workers.size(); ++wi) {
    // Address space only: pages are touched as ids are written. 24 ids per row covers dense
    // captions against a large metadata; beyond that a buffer grows by doubling. Worker 0's
    // buffers become the result (see below), so they are reserved for all rows.
    const size_t rows = static_cast<size_t>(wi == 0 ? total_rows : total_rows / n_workers + kBlockRows);
    workers[wi].ids.reserve(rows * 24);
    workers[wi].ends.reserve(wi == 0 ? rows + 1 : rows * 5 / 4);
  }
  std::vector<Where> where(blocks.size());
  parallel_for_blocks_indexed(n_blocks, n_workers, cancel, [&](int64_t bi, int wi) {
    const Block& b = blocks[static_cast<size_t>(bi)];
    const TextColumn& col = chunks[b.chunk];
    Worker& w = workers[static_cast<size_t>(wi)];
    Where& at = where[static_cast<size_t>(bi)];
    at.worker = wi;
    at.ids_begin = w.ids.size();
    at.ends_begin = w.ends.size();  // where this block's row ends will go
    if (im.opt.mode == MatchMode::MetaClip) {
      if (!w.scratch) w.scratch.reset(new detail::TokenEngine::Scratch);
      im.tok.match_rows(col, b.begin, b.end, w.ids, w.ends, *w.scratch);
    } else {
      std::vector<int32_t> row_ids;
      for (int64_t i = b.begin; i < b.end; ++i) {
        const uint8_t* p;
        int64_t n;
        if (col.get(i, p, n) && n > 0) {
          row_ids.clear();
          im.byte.scan(p, n, [&](int32_t id, int64_t, int64_t) { row_ids.push_back(id); });
          std::sort(row_ids.begin(), row_ids.end());
          row_ids.erase(std::unique(row_ids.begin(), row_ids.end()), row_ids.end());
          int32_t* o = w.ids.room(row_ids.size());
          if (!row_ids.empty()) std::memcpy(o, row_ids.data(), row_ids.size() * sizeof(int32_t));
          w.ids.commit(o + row_ids.size());
        }
        w.ends.push_back(static_cast<int64_t>(w.ids.size()));
      }
    }
    at.ids_end = w.ids.size();
  }, /*front_back=*/true);
  // Worker 0 took blocks 0, 1, 2, ... in order (front_back): its buffers hold the result's
  // prefix and become the result, so only the other workers' blocks are copied (in parallel,
  // placed by prefix sums), into the address space reserved after it. With one worker nothing is
  // copied. (Copying everything into a new result cost, here, as much again as writing the
  // buffers: the first touch of fresh pages is not cheap.)
  size_t prefix = 0;  // blocks [0, prefix) are worker 0's
  while (prefix < blocks.size() && where[prefix].worker == 0) ++prefix;
  std::vector<int64_t> ids_at(blocks.size() + 1, 0);
  std::vector<int64_t> rows_at(blocks.size() + 1, 0);
  for (size_t bi = 0; bi < blocks.size(); ++bi) {
    ids_at[bi + 1] = ids_at[bi] + static_cast<int64_t>(where[bi].ids_end - where[bi].ids_begin);
    rows_at[bi + 1] = rows_at[bi] + (blocks[bi].end - blocks[bi].begin);
  }
  Worker& w0 = workers[0];
  if (w0.ids.size() != static_cast<size_t>(ids_at[prefix]) || w0.ends.size() != static_cast<size_t>(rows_at[prefix]) + 1) {
    throw std::logic_error("matcher: worker 0 holds more than the result's prefix");  // cannot happen
  }
  int32_t* ids = w0.ids.room(static_cast<size_t>(ids_at.back() - ids_at[prefix])) - ids_at[prefix];
  w0.ends.resize(static_cast<size_t>(total_rows) + 1);  // uninitialised: filled below
  int64_t* offsets = w0.ends.data();
  const int64_t n_rest = n_blocks - static_cast<int64_t>(prefix);
  parallel_for_blocks(n_rest, n_workers, nullptr, [&](int64_t k) {
    const size_t bi = prefix + static_cast<size_t>(k);
    const Where& at = where[bi];
    const Worker& w = workers[static_cast<size_t>(at.worker)];
    const int64_t base = ids_at[bi];
    const size_t n = at.ids_end - at.ids_begin;
    if (n != 0) std::memcpy(ids + base, w.ids.data() + at.ids_begin, n * sizeof(int32_t));
    const int64_t rows = rows_at[bi + 1] - rows_at[bi];
    int64_t* off = offsets + rows_at[bi] + 1;
    const int64_t* e = w.ends.data() + at.ends_begin;
    const int64_t shift = base - static_cast<int64_t>(at.ids_begin);
    for (int64_t r = 0; r < rows; ++r) off[r] = e[r] + shift;
  });
  w0.ids.commit(ids + ids_at.back());
  MatchResult r;
  r.ids = w0.ids.take();
  r.offsets = std::move(w0.ends);
  return r;
}

SpanResult Matcher::find_all(const std::vector<TextColumn>& chunks, int threads, const CancelToken* cancel) const {
  if (impl_->opt.mode != MatchMode::Substring) {
    throw InputError("find_all needs a matcher built with mode='substring'; mode='metaclip' reports sets of ids with match()");
  }
  int64_t total_rows = 0;
  const std::vector<Block> blocks = make_blocks(chunks, total_rows);
  struct Part {
    std::vector<int32_t> ids;
    std::vector<int64_t> starts, ends, row_ends;
  };
  std::vector<Part> parts(blocks.size());
  const Impl& im = *impl_;
  parallel_for_blocks(static_cast<int64_t>(blocks.size()), threads, cancel, [&](int64_t bi) {
    const Block& b = blocks[static_cast<size_t>(bi)];
    const TextColumn& col = chunks[b.chunk];
    Part& part = parts[static_cast<size_t>(bi)];
    for (int64_t i = b.begin; i < b.end; ++i) {
      const uint8_t* p;
      int64_t n;
      if (col.get(i, p, n)) {
        im.byte.scan(p, n, [&](int32_t id, int64_t s, int64_t e) {
          part.ids.push_back(id);
          part.starts.push_back(s);
          part.ends.push_back(e);
        });
      }
      part.row_ends.push_back(static_cast<int64_t>(part.ids.size()));
    }
  });
  SpanResult r;
  size_t total = 0;
  for (const Part& p : parts) total += p.ids.size();
  r.offsets.resize(static_cast<size_t>(total_rows) + 1);
  r.offsets[0] = 0;
  r.ids.reserve(total);
  r.starts.reserve(total);
  r.ends.reserve(total);
  size_t row = 1;
  for (Part& p : parts) {
    const int64_t at = static_cast<int64_t>(r.ids.size());
    r.ids.insert(r.ids.end(), p.ids.begin(), p.ids.end());
    r.starts.insert(r.starts.end(), p.starts.begin(), p.starts.end());
    r.ends.insert(r.ends.end(), p.ends.begin(), p.ends.end());
    for (int64_t e : p.row_ends) r.offsets[row++] = at + e;
    p = Part();
  }
  return r;
}

std::vector<uint8_t> Matcher::to_bytes() const {
  serial::Writer w;
  const Impl& im = *impl_;
  w.pod<uint64_t>(static_cast<uint64_t>(im.opt.mode));
  w.pod<uint64_t>(im.opt.case_sensitive ? 1 : 0);
  w.pod(im.report);
  w.vec(im.entry_off);
  w.vec(im.entry_bytes);
  if (im.opt.mode == MatchMode::MetaClip) {
    im.tok.write(w);
  } else {
    im.byte.write(w);
  }
  const std::vector<uint8_t>& payload = w.buffer();
  std::vector<uint8_t> out(kHeaderSize + payload.size());
  std::memcpy(out.data(), kMagic, 8);
  const uint32_t version = kVersion, flags = 0;
  const uint64_t size = payload.size();
  const uint64_t sum = bytes::checksum64(payload.data(), payload.size());
  std::memcpy(out.data() + 8, &version, 4);
  std::memcpy(out.data() + 12, &flags, 4);
  std::memcpy(out.data() + 16, &size, 8);
  std::memcpy(out.data() + 24, &sum, 8);
  if (!payload.empty()) std::memcpy(out.data() + kHeaderSize, payload.data(), payload.size());
  return out;
}

Matcher Matcher::from_bytes(const uint8_t* data, size_t size) {
  if (size < 8 || std::memcmp(data, kMagic, 8) != 0) {
    throw FormatError("not a fastcurate matcher file (bad magic bytes); create one with Matcher.save()");
  }
  if (size < kHeaderSize) throw FormatError("matcher file is truncated (incomplete header)");
  uint32_t version, flags;
  uint64_t payload_size, sum;
  std::memcpy(&version, data + 8, 4);
  std::memcpy(&flags, data + 12, 4);
  std::memcpy(&payload_size, data + 16, 8);
  std::memcpy(&sum, data + 24, 8);
  if (version < kOldestVersion || version > kVersion) {
    throw FormatError("matcher file has format version " + std::to_string(version) + ", this fastcurate reads versions " +
                      std::to_string(kOldestVersion) + " to " + std::to_string(kVersion) +
                      "; rebuild it from the metadata with this version");
  }
  if (payload_size != size - kHeaderSize) {
    throw FormatError("matcher file is truncated or has trailing bytes: header says " + std::to_string(payload_size) +
                      " payload bytes, file has " + std::to_string(size - kHeaderSize));
  }
  if (bytes::checksum64(data + kHeaderSize, payload_size) != sum) {
    throw FormatError("matcher file is corrupted (checksum mismatch); rebuild it from the metadata");
  }
  serial::Reader r(data + kHeaderSize, payload_size, "matcher file");
  std::unique_ptr<Impl> im(new Impl);
  const uint64_t mode = r.pod<uint64_t>();
  if (mode > 1) r.fail("unknown mode");
  im->opt.mode = static_cast<MatchMode>(mode);
  im->opt.case_sensitive = r.pod<uint64_t>() != 0;
  im->report = r.pod<BuildReport>();
  im->entry_off = r.vec<int64_t>(uint64_t{1} << 40);
  im->entry_bytes = r.vec<uint8_t>(uint64_t{1} << 40);
  const auto& off = im->entry_off;
  if (off.size() < 2 || off[0] != 0 || static_cast<uint64_t>(off.back()) != im->entry_bytes.size()) r.fail("entry offsets");
  for (size_t i = 0; i + 1 < off.size(); ++i) {
    if (off[i + 1] <= off[i]) r.fail("entry offsets");
  }
  const int64_t n_entries = static_cast<int64_t>(off.size() - 1);
  if (im->opt.mode == MatchMode::MetaClip) {
    im->tok.read(r, n_entries);
  } else {
    im->byte.read(r, n_entries);
  }
  if (!r.at_end()) r.fail("trailing data");
  return Matcher(std::move(im));
}

int64_t Matcher::size() const { return static_cast<int64_t>(impl_->entry_off.size() - 1); }

std::string_view Matcher::entry(int64_t i) const {
  if (i < 0 || i >= size()) throw InputError("entry index " + std::to_string(i) + " out of range");
  const auto b = impl_->entry_off[static_cast<size_t>(i)];
  const auto e = impl_->entry_off[static_cast<size_t>(i) + 1];
  return std::string_view(reinterpret_cast<const char*>(impl_->entry_bytes.data()) + b, static_cast<size_t>(e - b));
}

MatcherOptions Matcher::options() const { return impl_->opt; }
const BuildReport& Matcher::report() const { return impl_->report; }

size_t Matcher::memory_bytes() const {
  const Impl& im = *impl_;
  return im.entry_bytes.capacity() + im.entry_off.capacity() * sizeof(int64_t) + im.tok.memory_bytes() +
         im.byte.memory_bytes();
}

}  // namespace fastcurate
