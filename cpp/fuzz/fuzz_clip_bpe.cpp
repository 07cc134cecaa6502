// Fuzz target of the CLIP BPE kernel: captions are untrusted bytes. The input is cut into rows at
// 0xFF bytes (byte 0 chooses the context length and the cache size). For every row:
//   * tokenize (raw and precleaned) must not crash, and a row it does must equal the plain
//     reference (clip_bpe_reference.hpp), before and after the cache is warm;
//   * ftfy_noop must not crash on any bytes;
//   * the loop and heap BPE must agree on the row taken as one word.
//
// Build with clang: cmake -DFASTCURATE_BUILD_TESTS=ON -DFASTCURATE_LIBFUZZER=ON
//   -DCMAKE_CXX_COMPILER=clang++ ... && ./fuzz_clip_bpe -max_total_time=60
// Without clang, the standalone driver (standalone_driver.cpp) feeds it random inputs.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "../tests/clip_bpe_reference.hpp"
#include "fastcurate/clip_bpe.hpp"

using namespace fastcurate;

static void fail(const char* what) {
  std::fprintf(stderr, "fuzz_clip_bpe: mismatch: %s\n", what);
  std::abort();
}

static const clip_ref::Tables& ref_tables() {
  static const clip_ref::Tables t = clip_ref::make_tables(2026, 700);
  return t;
}

static FtfyTables ftfy_tables() {
  FtfyTables t;
  t.cps = {0xA9, 0xC3, 0xE9, 0x301, 0x316, 0x346};
  t.unsafe = {0, 0, 0, 1, 0, 0};
  t.ccc = {0, 0, 0, 230, 220, 230};
  t.masks = {1, 2, 1, 0, 0, 0};
  t.alt_offsets = {0, 2, 3};
  t.alt_items = {2, 1, 2};
  return t;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int64_t ctx = 2 + (data[0] & 31);
  const size_t cache = (data[0] & 32) ? 4 : 0;
  std::vector<std::string> rows(1);
  for (size_t i = 1; i < size; ++i) {
    if (data[i] == 0xFF) {
      rows.emplace_back();
    } else {
      rows.back().push_back(static_cast<char>(data[i]));
    }
  }
  const clip_ref::Tables& tb = ref_tables();
  ClipBpe bpe(tb.t, cache);
  if (data[0] & 64) bpe.set_ftfy_tables(ftfy_tables());
  std::vector<std::string_view> views(rows.begin(), rows.end());
  TextColumn col;
  col.views = views.data();
  col.length = static_cast<int64_t>(views.size());
  for (bool precleaned : {false, true}) {
    for (int pass = 0; pass < 2; ++pass) {
      std::vector<int64_t> ids(rows.size() * static_cast<size_t>(ctx), 0);
      std::vector<int32_t> lengths(rows.size());
      std::vector<uint8_t> status(rows.size());
      bpe.tokenize({col}, ctx, precleaned, ids.data(), lengths.data(), status.data());
      for (size_t i = 0; i < rows.size(); ++i) {
        if (status[i] != kRowDone) {
          if (status[i] != kRowNeedsPython && status[i] != kRowFtfyNoop) fail("unexpected status");
          if (status[i] == kRowFtfyNoop && (precleaned || !(data[0] & 64))) fail("ftfy status without tables");
          continue;
        }
        if (lengths[i] < 2 || lengths[i] > ctx) fail("length out of range");
        const auto b = ids.begin() + static_cast<std::ptrdiff_t>(i) * ctx;
        const std::vector<int64_t> got(b, b + lengths[i]);
        // The reference's whitespace is the raw mode's; precleaned rows never hold tab or newline.
        if (got != clip_ref::tokenize(tb, rows[i], ctx)) fail("tokenize differs from the reference");
      }
    }
  }
  for (const std::string& r : rows) {
    bpe.ftfy_noop(reinterpret_cast<const uint8_t*>(r.data()), static_cast<int64_t>(r.size()));
    if (!r.empty() && r.size() < 400 && r != "<start_of_text>" && r != "<end_of_text>") {
      const auto want = clip_ref::bpe(tb, r);
      if (bpe.bpe_uncached(r, false) != want || bpe.bpe_uncached(r, true) != want) fail("bpe differs");
    }
  }
  return 0;
}
