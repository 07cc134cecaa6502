// fastText supervised-model inference (top-1 label), reading fastText's own .bin / .ftz files.
//
// Why our own: DataComp's language filter is fastText's `predict(text.replace("\n", " "))`, top-1
// label. Calling the fasttext Python module costs a Python string per row and runs on one core
// with the GIL held; this reads Arrow string buffers in place, runs on all cores with the GIL
// released, and gives the same label and the same float32 probability as fastText's predict on
// the same model (the tests compare them on real captions, random Unicode, and synthetic models
// that cover dense, quantized, pruned and unpruned inputs).
//
// Supported: supervised models (`-loss hs`, as lid.176 is trained), any wordNgrams, char n-grams,
// dense or product-quantized input matrix (with or without norm quantization, pruned or not), a
// dense output matrix. Anything else is rejected with a FormatError naming what is unsupported.
//
// Thread safety: immutable after construction; predict() may run from many threads at once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fastcurate/common.hpp"
#include "fastcurate/text_column.hpp"

namespace fastcurate {

struct LangPredictions {
  std::vector<int32_t> label;  // index into FastTextModel::labels(); -1 = no prediction (null, skipped, no input)
  std::vector<float> prob;     // fastText's probability of that label (exp of its log-score); NaN when label < 0
};

class FastTextModel {
 public:
  // Parses a model file held in memory (the bytes are copied into the model's own tables).
  // Throws FormatError for anything truncated, inconsistent or unsupported.
  static FastTextModel from_bytes(const uint8_t* data, size_t size);

  FastTextModel(FastTextModel&&) noexcept;
  FastTextModel& operator=(FastTextModel&&) noexcept;
  FastTextModel(const FastTextModel&) = delete;
  FastTextModel& operator=(const FastTextModel&) = delete;
  ~FastTextModel();

  // Top-1 prediction for every row, as fastText's predict(text.replace("\n", " ")) with k=1 and
  // threshold 0. Rows whose `skip` byte is non-zero (skip may be null) are not evaluated.
  LangPredictions predict(const std::vector<TextColumn>& cols, const uint8_t* skip, int threads,
                          const CancelToken* cancel = nullptr) const;

  // One text; returns false when fastText would return no prediction.
  bool predict_one(const uint8_t* p, int64_t n, int32_t& label, float& prob) const;

  const std::vector<std::string>& labels() const;
  int32_t dim() const;
  int64_t words() const;
  bool quantized() const;
  int64_t memory_bytes() const;

  struct Impl;

 private:
  explicit FastTextModel(Impl* impl) : impl_(impl) {}
  Impl* impl_;
};

}  // namespace fastcurate
