// Header-only image sizes (see image_size.hpp). Every read goes through `Reader`, which checks the
// bounds first, so no input can make the parser read outside the blob.
#include "fastcurate/image_size.hpp"

#include <algorithm>
#include <cstring>

#include "fastcurate/parallel.hpp"

namespace fastcurate {
namespace {

struct Reader {
  const uint8_t* p;
  size_t n;
  bool has(size_t pos, size_t len) const { return pos <= n && len <= n - pos; }
  uint32_t be16(size_t pos) const { return (uint32_t{p[pos]} << 8) | p[pos + 1]; }
  uint32_t le16(size_t pos) const { return uint32_t{p[pos]} | (uint32_t{p[pos + 1]} << 8); }
  uint32_t le24(size_t pos) const { return le16(pos) | (uint32_t{p[pos + 2]} << 16); }
  uint32_t be32(size_t pos) const { return (be16(pos) << 16) | be16(pos + 2); }
  uint32_t le32(size_t pos) const { return le16(pos) | (le16(pos + 2) << 16); }
  bool eq(size_t pos, const char* s, size_t len) const { return has(pos, len) && std::memcmp(p + pos, s, len) == 0; }
};

ImageSize make(SizeStatus st, ImageFormat f, int64_t w = 0, int64_t h = 0) {
  ImageSize r;
  r.format = f;
  // A zero or out-of-range dimension is a malformed header whatever the format says.
  if (st == SizeStatus::Ok && (w < 1 || h < 1 || w > INT32_MAX || h > INT32_MAX)) st = SizeStatus::Corrupt;
  r.status = st;
  if (st == SizeStatus::Ok) {
    r.width = static_cast<int32_t>(w);
    r.height = static_cast<int32_t>(h);
  }
  return r;
}

bool is_sof(uint8_t m) {
  // SOF0-3, 5-7, 9-11, 13-15. C4 (DHT), C8 (JPG, reserved) and CC (DAC) are not frame headers.
  return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
}

// Walks the marker segments up to the first start-of-frame. Like libjpeg and Pillow, bytes that
// are not 0xFF between segments are skipped as junk, and 0xFF fill bytes before a marker too.
ImageSize jpeg(const Reader& r) {
  const ImageFormat F = ImageFormat::Jpeg;
  size_t pos = 2;  // after SOI (FF D8)
  for (;;) {
    while (pos < r.n && r.p[pos] != 0xFF) ++pos;
    while (pos < r.n && r.p[pos] == 0xFF) ++pos;
    if (pos >= r.n) return make(SizeStatus::Truncated, F);
    const uint8_t m = r.p[pos++];
    if (m == 0x00) continue;                               // an escaped 0xFF in junk data
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD8)) continue;   // TEM, RSTn, SOI: no length field
    if (m == 0xD9 || m == 0xDA || m < 0xC0) return make(SizeStatus::Corrupt, F);  // EOI/SOS before SOF, reserved
    if (!r.has(pos, 2)) return make(SizeStatus::Truncated, F);
    const uint32_t len = r.be16(pos);  // counts itself
    if (len < 2) return make(SizeStatus::Corrupt, F);
    if (is_sof(m)) {
      if (len < 8) return make(SizeStatus::Corrupt, F);  // precision, height, width, components
      if (!r.has(pos, 7)) return make(SizeStatus::Truncated, F);
      // Height 0 means "defined later by a DNL marker": not a size we can report (Pillow cannot
      // decode such files either), so it is a malformed header for our purposes.
      return make(SizeStatus::Ok, F, r.be16(pos + 5), r.be16(pos + 3));
    }
    pos += len;
  }
}

// IHDR must be the first chunk by the spec; like Pillow we skip other chunks before it (Apple's
// CgBI PNGs put one there) but give up at image data.
ImageSize png(const Reader& r) {
  const ImageFormat F = ImageFormat::Png;
  size_t pos = 8;
  for (;;) {
    if (!r.has(pos, 8)) return make(SizeStatus::Truncated, F);
    const uint32_t len = r.be32(pos);
    if (len > 0x7FFFFFFFu) return make(SizeStatus::Corrupt, F);
    if (r.eq(pos + 4, "IHDR", 4)) {
      if (len < 13) return make(SizeStatus::Corrupt, F);
      if (!r.has(pos + 8, 8)) return make(SizeStatus::Truncated, F);
      const uint32_t w = r.be32(pos + 8), h = r.be32(pos + 12);
      if (w > 0x7FFFFFFFu || h > 0x7FFFFFFFu) return make(SizeStatus::Corrupt, F);
      return make(SizeStatus::Ok, F, w, h);
    }
    if (r.eq(pos + 4, "IDAT", 4) || r.eq(pos + 4, "IEND", 4)) return make(SizeStatus::Corrupt, F);
    pos += 12 + size_t{len};  // length, type, data, CRC
  }
}

// The logical screen, enlarged to the first frame's extent when that frame reaches beyond it
// (Pillow's GifImageFile does the same, so sizes agree with Image.open(...).size).
ImageSize gif(const Reader& r) {
  const ImageFormat F = ImageFormat::Gif;
  if (!r.has(0, 13)) return make(SizeStatus::Truncated, F);
  int64_t w = r.le16(6), h = r.le16(8);
  const uint8_t flags = r.p[10];
  size_t pos = 13;
  if (flags & 0x80) pos += size_t{3} << ((flags & 7) + 1);  // global colour table
  for (;;) {
    if (pos >= r.n) return make(SizeStatus::Truncated, F);
    const uint8_t tag = r.p[pos++];
    if (tag == 0x2C) {  // image descriptor: left, top, width, height
      if (!r.has(pos, 8)) return make(SizeStatus::Truncated, F);
      const int64_t x1 = int64_t{r.le16(pos)} + r.le16(pos + 4);
      const int64_t y1 = int64_t{r.le16(pos + 2)} + r.le16(pos + 6);
      return make(SizeStatus::Ok, F, std::max(w, x1), std::max(h, y1));
    }
    if (tag == 0x3B) return make(SizeStatus::Corrupt, F);  // trailer before any frame
    if (tag == 0x21) {                                      // extension: label, then sub-blocks
      ++pos;
      for (;;) {
        if (pos >= r.n) return make(SizeStatus::Truncated, F);
        const uint8_t len = r.p[pos++];
        if (len == 0) break;
        pos += len;
      }
    }
    // Any other byte is skipped, as Pillow does.
  }
}

ImageSize webp(const Reader& r) {
  const ImageFormat F = ImageFormat::Webp;
  if (!r.has(12, 8)) return make(SizeStatus::Truncated, F);
  const size_t d = 20;  // first chunk's payload
  if (r.eq(12, "VP8 ", 4)) {
    if (!r.has(d, 10)) return make(SizeStatus::Truncated, F);
    if ((r.p[d] & 1) != 0) return make(SizeStatus::Corrupt, F);  // not a key frame
    if (r.p[d + 3] != 0x9D || r.p[d + 4] != 0x01 || r.p[d + 5] != 0x2A) return make(SizeStatus::Corrupt, F);
    return make(SizeStatus::Ok, F, r.le16(d + 6) & 0x3FFF, r.le16(d + 8) & 0x3FFF);
  }
  if (r.eq(12, "VP8L", 4)) {
    if (!r.has(d, 5)) return make(SizeStatus::Truncated, F);
    if (r.p[d] != 0x2F) return make(SizeStatus::Corrupt, F);
    const uint32_t bits = r.le32(d + 1);
    if ((bits >> 29) != 0) return make(SizeStatus::Corrupt, F);  // version must be 0
    return make(SizeStatus::Ok, F, int64_t{bits & 0x3FFF} + 1, int64_t{(bits >> 14) & 0x3FFF} + 1);
  }
  if (r.eq(12, "VP8X", 4)) {
    if (!r.has(d, 10)) return make(SizeStatus::Truncated, F);
    return make(SizeStatus::Ok, F, int64_t{r.le24(d + 4)} + 1, int64_t{r.le24(d + 7)} + 1);
  }
  return make(SizeStatus::Corrupt, F);
}

// BITMAPCOREHEADER (12 bytes: 16-bit sizes) or the BITMAPINFOHEADER family (signed 32-bit sizes;
// a negative height means top-down rows). Other header sizes are rejected, as Pillow does.
ImageSize bmp(const Reader& r) {
  const ImageFormat F = ImageFormat::Bmp;
  if (!r.has(14, 4)) return make(SizeStatus::Truncated, F);
  const uint32_t hs = r.le32(14);
  if (hs == 12) {
    if (!r.has(18, 4)) return make(SizeStatus::Truncated, F);
    return make(SizeStatus::Ok, F, r.le16(18), r.le16(20));
  }
  if (hs == 40 || hs == 52 || hs == 56 || hs == 64 || hs == 108 || hs == 124) {
    if (!r.has(18, 8)) return make(SizeStatus::Truncated, F);
    const int64_t w = static_cast<int32_t>(r.le32(18));
    const int64_t h = static_cast<int32_t>(r.le32(22));
    return make(SizeStatus::Ok, F, w, h < 0 ? -h : h);
  }
  return make(SizeStatus::Corrupt, F);
}

// True when the blob is a proper prefix of the signature (a truncated file of that format).
bool prefix_of(const Reader& r, const char* sig, size_t len) {
  return r.n < len && std::memcmp(r.p, sig, r.n) == 0;
}

}  // namespace

ImageSize image_size(const uint8_t* data, size_t size) {
  const Reader r{data, size};
  if (size == 0) return make(SizeStatus::Empty, ImageFormat::Unknown);
  if (r.eq(0, "\xFF\xD8\xFF", 3)) return jpeg(r);
  if (r.eq(0, "\x89PNG\r\n\x1A\n", 8)) return png(r);
  if (r.eq(0, "GIF87a", 6) || r.eq(0, "GIF89a", 6)) return gif(r);
  if (r.eq(0, "RIFF", 4) && r.eq(8, "WEBP", 4)) return webp(r);
  if (r.eq(0, "BM", 2)) return bmp(r);
  if (prefix_of(r, "\xFF\xD8\xFF", 3)) return make(SizeStatus::Truncated, ImageFormat::Jpeg);
  if (prefix_of(r, "\x89PNG\r\n\x1A\n", 8)) return make(SizeStatus::Truncated, ImageFormat::Png);
  if (prefix_of(r, "GIF87a", 6) || prefix_of(r, "GIF89a", 6)) return make(SizeStatus::Truncated, ImageFormat::Gif);
  if (prefix_of(r, "BM", 2)) return make(SizeStatus::Truncated, ImageFormat::Bmp);
  if (r.eq(0, "RIFF", 4) && size < 12) {
    // "RIFF" + 4 size bytes + "WEBP": whatever part of the form type is present must match.
    if (size <= 8 || std::memcmp(data + 8, "WEBP", size - 8) == 0) return make(SizeStatus::Truncated, ImageFormat::Webp);
  } else if (size < 4 && std::memcmp(data, "RIFF", size) == 0) {
    return make(SizeStatus::Truncated, ImageFormat::Webp);
  }
  return make(SizeStatus::UnknownFormat, ImageFormat::Unknown);
}

ImageSizeResult image_sizes(const std::vector<TextColumn>& cols, int threads, const CancelToken* cancel) {
  std::vector<int64_t> starts;  // first global row of each column
  int64_t total = 0;
  for (const TextColumn& c : cols) {
    starts.push_back(total);
    total += c.length;
  }
  ImageSizeResult out;
  const size_t n = static_cast<size_t>(total);
  out.width.assign(n, 0);
  out.height.assign(n, 0);
  out.status.assign(n, 0);
  out.format.assign(n, 0);
  // Fixed blocks (not per thread): the result never depends on the thread count.
  constexpr int64_t kBlock = 8192;
  std::vector<std::pair<size_t, int64_t>> blocks;  // (column, first row in it)
  for (size_t c = 0; c < cols.size(); ++c) {
    for (int64_t b = 0; b < cols[c].length; b += kBlock) blocks.emplace_back(c, b);
  }
  parallel_for_blocks(static_cast<int64_t>(blocks.size()), threads, cancel, [&](int64_t bi) {
    const auto [c, first] = blocks[static_cast<size_t>(bi)];
    const TextColumn& col = cols[c];
    const int64_t last = std::min(col.length, first + kBlock);
    for (int64_t i = first; i < last; ++i) {
      const size_t g = static_cast<size_t>(starts[c] + i);
      const uint8_t* p = nullptr;
      int64_t len = 0;
      ImageSize s;
      if (!col.get(i, p, len)) {
        s = make(SizeStatus::Null, ImageFormat::Unknown);
      } else {
        s = image_size(p, static_cast<size_t>(len));
      }
      out.width[g] = s.width;
      out.height[g] = s.height;
      out.status[g] = static_cast<uint8_t>(s.status);
      out.format[g] = static_cast<uint8_t>(s.format);
    }
  });
  return out;
}

}  // namespace fastcurate
