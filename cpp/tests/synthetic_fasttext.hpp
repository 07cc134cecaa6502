// A tiny fastText supervised model written in fastText's file format, for the C++ tests and the
// fuzz target (the Python tests compare against the fasttext module with models like this one).
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace fc_test {

inline void put_bytes(std::vector<uint8_t>& out, const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  out.insert(out.end(), b, b + n);
}
template <class T>
void put(std::vector<uint8_t>& out, T v) {
  put_bytes(out, &v, sizeof(T));
}

// dim 4, char n-grams 2..3 over 31 buckets, quantized (dsub 2, with norms) when `quant`.
inline std::vector<uint8_t> synthetic_fasttext(bool quant, uint32_t seed = 7) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int32_t dim = 4, bucket = 31;
  const std::vector<std::string> words = {"</s>", "the", "chat", "hund"};
  const std::vector<std::pair<std::string, int64_t>> labels = {{"__label__en", 50}, {"__label__fr", 20}, {"__label__de", 5}};
  std::vector<uint8_t> out;
  put<int32_t>(out, 793712314);
  put<int32_t>(out, 12);
  const int32_t args[12] = {dim, 5, 5, 1, 5, 1, 1, 3, bucket, 2, 3, 100};
  for (int32_t a : args) put(out, a);
  put<double>(out, 1e-4);
  put<int32_t>(out, static_cast<int32_t>(words.size() + labels.size()));
  put<int32_t>(out, static_cast<int32_t>(words.size()));
  put<int32_t>(out, static_cast<int32_t>(labels.size()));
  put<int64_t>(out, 100);
  put<int64_t>(out, quant ? 5 : -1);
  for (const auto& w : words) {
    put_bytes(out, w.data(), w.size() + 1);
    put<int64_t>(out, 10);
    put<int8_t>(out, 0);
  }
  for (const auto& l : labels) {
    put_bytes(out, l.first.data(), l.first.size() + 1);
    put<int64_t>(out, l.second);
    put<int8_t>(out, 1);
  }
  const int64_t rows = static_cast<int64_t>(words.size()) + (quant ? 5 : bucket);
  if (quant) {
    for (int32_t k = 0; k < 5; ++k) {
      put<int32_t>(out, k * 6);  // bucket
      put<int32_t>(out, k);      // row offset
    }
  }
  put<uint8_t>(out, quant ? 1 : 0);
  if (quant) {
    put<uint8_t>(out, 1);  // qnorm
    put<int64_t>(out, rows);
    put<int64_t>(out, dim);
    put<int32_t>(out, static_cast<int32_t>(rows * 2));
    for (int64_t i = 0; i < rows * 2; ++i) put<uint8_t>(out, static_cast<uint8_t>(rng()));
    const int32_t pq[4] = {dim, 2, 2, 2};
    for (int32_t v : pq) put(out, v);
    for (int32_t i = 0; i < dim * 256; ++i) put(out, nd(rng));
    for (int64_t i = 0; i < rows; ++i) put<uint8_t>(out, static_cast<uint8_t>(rng()));
    const int32_t npq[4] = {1, 1, 1, 1};
    for (int32_t v : npq) put(out, v);
    for (int32_t i = 0; i < 256; ++i) put(out, 0.5f + static_cast<float>(i) / 256.0f);
  } else {
    put<int64_t>(out, rows);
    put<int64_t>(out, dim);
    for (int64_t i = 0; i < rows * dim; ++i) put(out, nd(rng));
  }
  put<uint8_t>(out, 0);
  put<int64_t>(out, static_cast<int64_t>(labels.size()));
  put<int64_t>(out, dim);
  for (size_t i = 0; i < labels.size() * static_cast<size_t>(dim); ++i) put(out, nd(rng));
  return out;
}

}  // namespace fc_test
