// 32 hex digits -> two uint64, for DataComp's subset file. A table maps each byte to its nibble
// (0xFF when not a hex digit); 16 nibbles fold into a word, and one OR over all of them tells
// whether any byte was not a digit, so the loop has no data-dependent branch per character.
#include "fastcurate/hex_uid.hpp"

#include <array>
#include <string>

namespace fastcurate {
namespace {

constexpr std::array<std::uint8_t, 256> make_nibbles() {
    std::array<std::uint8_t, 256> t{};
    for (int c = 0; c < 256; ++c) {
        t[static_cast<std::size_t>(c)] = 0xFF;
        if (c >= '0' && c <= '9') t[static_cast<std::size_t>(c)] = static_cast<std::uint8_t>(c - '0');
        if (c >= 'a' && c <= 'f') t[static_cast<std::size_t>(c)] = static_cast<std::uint8_t>(c - 'a' + 10);
        if (c >= 'A' && c <= 'F') t[static_cast<std::size_t>(c)] = static_cast<std::uint8_t>(c - 'A' + 10);
    }
    return t;
}
constexpr std::array<std::uint8_t, 256> kNibble = make_nibbles();

// 16 hex digits at p, most significant first; `bad` collects the high bits of non-digits.
inline std::uint64_t parse16(const std::uint8_t* p, std::uint8_t& bad) {
    std::uint64_t v = 0;
    for (int i = 0; i < 16; ++i) {
        const std::uint8_t d = kNibble[p[i]];
        bad |= d;
        v = (v << 4) | (d & 0x0F);
    }
    return v;
}

}  // namespace

template <typename O>
std::size_t hex128_pairs(const O* offsets, const std::uint8_t* data, std::size_t n, const std::uint8_t* keep,
                         std::uint64_t* out) {
    std::size_t j = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const O b = offsets[i], e = offsets[i + 1];
        // every row, kept or not: with the ends in the buffer, this keeps every read inside it
        if (e < b) throw HexUidError("string offsets must be non-decreasing; they decrease at row " + std::to_string(i));
        if (keep != nullptr && keep[i] == 0) continue;
        if (e - b != 32) {
            throw HexUidError("uid at row " + std::to_string(i) + " is " + std::to_string(static_cast<long long>(e - b)) +
                              " bytes long, not 32 hex digits");
        }
        std::uint8_t bad = 0;
        const std::uint64_t hi = parse16(data + b, bad);
        const std::uint64_t lo = parse16(data + b + 16, bad);
        if (bad & 0xF0) throw HexUidError("uid at row " + std::to_string(i) + " holds a character that is not a hex digit");
        out[2 * j] = hi;
        out[2 * j + 1] = lo;
        ++j;
    }
    return j;
}

template std::size_t hex128_pairs<std::int32_t>(const std::int32_t*, const std::uint8_t*, std::size_t,
                                                const std::uint8_t*, std::uint64_t*);
template std::size_t hex128_pairs<std::int64_t>(const std::int64_t*, const std::uint8_t*, std::size_t,
                                                const std::uint8_t*, std::uint64_t*);

}  // namespace fastcurate
