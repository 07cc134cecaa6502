// Minimal valid headers of every format image_size() reads, built byte by byte, for the C++ tests
// and as seeds of the image fuzz driver. Each builder returns the bytes and the size it encodes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace samples {

using Bytes = std::vector<uint8_t>;

inline void put16be(Bytes& b, uint32_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}
inline void put16le(Bytes& b, uint32_t v) {
  b.push_back(static_cast<uint8_t>(v));
  b.push_back(static_cast<uint8_t>(v >> 8));
}
inline void put32be(Bytes& b, uint32_t v) {
  put16be(b, v >> 16);
  put16be(b, v & 0xFFFF);
}
inline void put32le(Bytes& b, uint32_t v) {
  put16le(b, v & 0xFFFF);
  put16le(b, v >> 16);
}
inline void put(Bytes& b, const std::string& s) { b.insert(b.end(), s.begin(), s.end()); }

// SOI, APP0 (JFIF), an APP1 holding a fake 0xFFC0 inside its payload (must be skipped by
// length), DQT, then SOF `sof` with the given size, then SOS.
inline Bytes jpeg(uint32_t w, uint32_t h, uint8_t sof = 0xC0, int components = 3) {
  Bytes b = {0xFF, 0xD8};
  b.insert(b.end(), {0xFF, 0xE0});
  put16be(b, 16);
  put(b, std::string("JFIF\0\x01\x01\x00\x00\x01\x00\x01\x00\x00", 14));
  b.insert(b.end(), {0xFF, 0xE1});
  put16be(b, 12);
  b.insert(b.end(), {0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00, 0x05, 0x00, 0x07, 0x03});  // decoy SOF
  b.insert(b.end(), {0xFF, 0xDB});
  put16be(b, 67);
  b.push_back(0);
  for (int i = 0; i < 64; ++i) b.push_back(1);
  b.insert(b.end(), {0xFF, sof});
  put16be(b, static_cast<uint32_t>(8 + 3 * components));
  b.push_back(8);
  put16be(b, h);
  put16be(b, w);
  b.push_back(static_cast<uint8_t>(components));
  for (int c = 0; c < components; ++c) b.insert(b.end(), {static_cast<uint8_t>(c + 1), 0x11, 0x00});
  b.insert(b.end(), {0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00});
  return b;
}

inline Bytes png(uint32_t w, uint32_t h) {
  Bytes b;
  put(b, std::string("\x89PNG\r\n\x1A\n", 8));
  put32be(b, 13);
  put(b, "IHDR");
  put32be(b, w);
  put32be(b, h);
  b.insert(b.end(), {8, 2, 0, 0, 0});
  put32be(b, 0);  // CRC (not checked)
  put32be(b, 0);
  put(b, "IEND");
  put32be(b, 0);
  return b;
}

// Logical screen sw x sh with a global colour table, a graphics control extension, then a frame at
// (x0, y0) of fw x fh.
inline Bytes gif(uint32_t sw, uint32_t sh, uint32_t x0 = 0, uint32_t y0 = 0, uint32_t fw = 1, uint32_t fh = 1) {
  Bytes b;
  put(b, "GIF89a");
  put16le(b, sw);
  put16le(b, sh);
  b.insert(b.end(), {0x80, 0, 0});                       // GCT of 2 entries
  b.insert(b.end(), {0, 0, 0, 255, 255, 255});            // the table
  b.insert(b.end(), {0x21, 0xF9, 4, 0, 0, 0, 0, 0});      // graphics control extension
  b.push_back(0x2C);
  put16le(b, x0);
  put16le(b, y0);
  put16le(b, fw);
  put16le(b, fh);
  b.push_back(0);
  b.insert(b.end(), {2, 2, 0x4C, 0x01, 0, 0x3B});
  return b;
}

inline Bytes webp_riff(const std::string& fourcc, const Bytes& payload) {
  Bytes b;
  put(b, "RIFF");
  put32le(b, static_cast<uint32_t>(12 + payload.size()));
  put(b, "WEBP");
  put(b, fourcc);
  put32le(b, static_cast<uint32_t>(payload.size()));
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

inline Bytes webp_lossy(uint32_t w, uint32_t h) {
  Bytes p = {0x50, 0x01, 0x00, 0x9D, 0x01, 0x2A};  // key frame tag, start code
  put16le(p, w);
  put16le(p, h);
  p.insert(p.end(), {0, 0, 0, 0});
  return webp_riff("VP8 ", p);
}

inline Bytes webp_lossless(uint32_t w, uint32_t h) {
  Bytes p = {0x2F};
  put32le(p, (w - 1) | ((h - 1) << 14));
  p.insert(p.end(), {0, 0, 0});
  return webp_riff("VP8L", p);
}

inline Bytes webp_extended(uint32_t w, uint32_t h) {
  Bytes p = {0x10, 0, 0, 0};
  p.push_back(static_cast<uint8_t>(w - 1));
  p.push_back(static_cast<uint8_t>((w - 1) >> 8));
  p.push_back(static_cast<uint8_t>((w - 1) >> 16));
  p.push_back(static_cast<uint8_t>(h - 1));
  p.push_back(static_cast<uint8_t>((h - 1) >> 8));
  p.push_back(static_cast<uint8_t>((h - 1) >> 16));
  return webp_riff("VP8X", p);
}

inline Bytes bmp(int32_t w, int32_t h, uint32_t header_size = 40) {
  Bytes b;
  put(b, "BM");
  put32le(b, 0);
  put32le(b, 0);
  put32le(b, 14 + header_size);
  put32le(b, header_size);
  if (header_size == 12) {
    put16le(b, static_cast<uint32_t>(w));
    put16le(b, static_cast<uint32_t>(h));
  } else {
    put32le(b, static_cast<uint32_t>(w));
    put32le(b, static_cast<uint32_t>(h));
  }
  put16le(b, 1);
  put16le(b, 24);
  return b;
}

}  // namespace samples
