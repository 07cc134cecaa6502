// Rows of a list of text chunks cut into blocks for parallel_for_blocks: each block is a range
// of one chunk, and knows the global index of its first row so that results land in place.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "fastcurate/text_column.hpp"

namespace fastcurate {
namespace detail {

struct RowBlock {
  size_t chunk;
  int64_t begin;   // first row within the chunk
  int64_t end;     // one past the last row within the chunk
  int64_t global;  // global index of `begin`
};

inline std::vector<RowBlock> make_row_blocks(const std::vector<TextColumn>& chunks, int64_t block_rows,
                                             int64_t& total_rows) {
  std::vector<RowBlock> blocks;
  total_rows = 0;
  for (size_t c = 0; c < chunks.size(); ++c) {
    for (int64_t b = 0; b < chunks[c].length; b += block_rows) {
      blocks.push_back(RowBlock{c, b, std::min(chunks[c].length, b + block_rows), total_rows + b});
    }
    total_rows += chunks[c].length;
  }
  return blocks;
}

}  // namespace detail
}  // namespace fastcurate
