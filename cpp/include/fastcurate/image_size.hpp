// Width and height of encoded images read from their headers, without decoding a pixel.
//
// Supported containers: JPEG (the first SOF segment), PNG (IHDR), GIF (logical screen, enlarged
// by the first frame's extent as Pillow does), WebP (VP8, VP8L, VP8X) and BMP. The size is the
// *stored* size: EXIF orientation is not applied, which is what DataComp's basic filter sees
// (img2dataset records original_width/height from cv2.imdecode(..., IMREAD_UNCHANGED), which
// ignores EXIF orientation) and what PIL's Image.open(...).size reports.
//
// The parser reads only inside [data, data + size): truncated or garbage input gets a status,
// never an out-of-bounds read (fuzzed under ASan/UBSan: cpp/fuzz/fuzz_image.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "fastcurate/common.hpp"
#include "fastcurate/text_column.hpp"

namespace fastcurate {

// Stable numeric codes: they cross into Python and may be stored in drop logs.
enum class SizeStatus : uint8_t {
  Ok = 0,             // width and height are valid (both >= 1)
  Null = 1,           // the row is null
  Empty = 2,          // zero bytes
  UnknownFormat = 3,  // no JPEG/PNG/GIF/WebP/BMP signature (e.g. HTML error page, TIFF, AVIF, SVG)
  Truncated = 4,      // the bytes end before the size fields
  Corrupt = 5,        // a known signature but a malformed header (bad marker or chunk, zero size)
};
constexpr int kSizeStatusCount = 6;

enum class ImageFormat : uint8_t { Unknown = 0, Jpeg = 1, Png = 2, Gif = 3, Webp = 4, Bmp = 5 };
constexpr int kImageFormatCount = 6;

// Every supported format stores sizes below 2^31 (PNG's limit is 2^31 - 1), so int32 holds them.
struct ImageSize {
  int32_t width = 0;
  int32_t height = 0;
  SizeStatus status = SizeStatus::UnknownFormat;
  ImageFormat format = ImageFormat::Unknown;
};

// Size of one encoded image. Thread-safe, allocation-free.
ImageSize image_size(const uint8_t* data, size_t size);

struct ImageSizeResult {
  std::vector<int32_t> width, height;  // 0 where status != Ok
  std::vector<uint8_t> status, format;
};

// Sizes of every row of the columns (binary blobs in the TextColumn layout), in order.
ImageSizeResult image_sizes(const std::vector<TextColumn>& cols, int threads, const CancelToken* cancel = nullptr);

}  // namespace fastcurate
