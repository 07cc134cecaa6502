// MetaCLIP counting and balanced sampling kernels (see balance.hpp and docs/curate.md).
#include "fastcurate/balance.hpp"
#include "fastcurate/bytes.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace fastcurate {
namespace {

constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ULL;
// Texts per work block. Fixed (not derived from the thread count) so that block-wise sums, and
// hence expected_size, are identical whatever the number of threads.
constexpr std::size_t kBlock = 16384;

using bytes::mix64;  // the splitmix64 finalizer

inline std::uint64_t load_le(const std::uint8_t* p, std::size_t n) {
    // Little-endian load: the same value on any host. A whole word on a little-endian host is one
    // unaligned load (GCC 12 does not fuse the byte loop below into one: measured, the byte loop
    // made the key hash ~2x slower).
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (n == 8) {
        std::uint64_t v;
        std::memcpy(&v, p, 8);
        return v;
    }
#endif
    std::uint64_t w = 0;
    for (std::size_t i = 0; i < n; ++i) w |= static_cast<std::uint64_t>(p[i]) << (8 * i);
    return w;
}

unsigned resolve_threads(unsigned threads, std::size_t n_blocks) {
    if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
    return static_cast<unsigned>(std::min<std::size_t>(threads, std::max<std::size_t>(1, n_blocks)));
}

// Runs fn(block_index) for every block on `threads` threads; the first exception thrown by any
// worker stops the others from taking new blocks and is rethrown here after all are joined.
template <typename Fn>
void parallel_blocks(std::size_t n_blocks, unsigned threads, Fn&& fn) {
    threads = resolve_threads(threads, n_blocks);
    if (threads <= 1) {
        for (std::size_t b = 0; b < n_blocks; ++b) fn(b);
        return;
    }
    std::atomic<std::size_t> next{0};
    std::atomic<bool> failed{false};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto worker = [&]() {
        try {
            for (;;) {
                if (failed.load(std::memory_order_relaxed)) return;
                const std::size_t b = next.fetch_add(1, std::memory_order_relaxed);
                if (b >= n_blocks) return;
                fn(b);
            }
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!error) error = std::current_exception();
            failed.store(true);
        }
    };
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (unsigned t = 0; t < threads; ++t) pool.emplace_back(worker);
    for (auto& th : pool) th.join();
    if (error) std::rethrow_exception(error);
}

// Checks text i's slice and ids; cheap enough to run inline in every kernel so that a bad CSR
// raises instead of reading out of bounds.
inline void check_text(const CsrView& csr, std::size_t i, std::size_t n_entries) {
    const std::int64_t b = csr.offsets[i], e = csr.offsets[i + 1];
    if (b < 0 || e < b) {
        throw BalanceError("offsets must be non-negative and non-decreasing; offsets[" + std::to_string(i) +
                           "]=" + std::to_string(b) + ", offsets[" + std::to_string(i + 1) + "]=" + std::to_string(e));
    }
    std::int32_t prev = -1;
    for (std::int64_t k = b; k < e; ++k) {
        const std::int32_t id = csr.ids[k];
        if (id <= prev) {
            // Sorted and unique is what the matcher returns; a repeated id would count a text twice.
            throw BalanceError("the entry ids of text " + std::to_string(i) +
                               " are not sorted and unique (id " + std::to_string(id) + " after " +
                               std::to_string(prev) + "); pass a match result, or sort and deduplicate each row");
        }
        prev = id;
        if (static_cast<std::size_t>(id) >= n_entries) {
            throw BalanceError("entry id " + std::to_string(id) + " of text " + std::to_string(i) +
                               " is outside [0, " + std::to_string(n_entries) +
                               "); the counts/probs array must come from the same metadata as the match result");
        }
    }
}

}  // namespace

void validate_csr(const CsrView& csr, std::size_t ids_len, std::size_t n_entries) {
    if (csr.n_texts > 0 && static_cast<std::uint64_t>(csr.offsets[csr.n_texts]) > ids_len) {
        throw BalanceError("offsets[-1]=" + std::to_string(csr.offsets[csr.n_texts]) + " exceeds len(ids)=" +
                           std::to_string(ids_len));
    }
    for (std::size_t i = 0; i < csr.n_texts; ++i) check_text(csr, i, n_entries);
}

void count_entries(const CsrView& csr, std::uint64_t* counts, std::size_t n_entries, const std::uint8_t* keep) {
    // Single-threaded on purpose: it is a memory-bound scatter that finishes in a fraction of the
    // matching time, and per-thread partial arrays of n_entries would cost more than they save.
    for (std::size_t i = 0; i < csr.n_texts; ++i) {
        check_text(csr, i, n_entries);
        if (keep != nullptr && keep[i] == 0) continue;
        for (std::int64_t k = csr.offsets[i]; k < csr.offsets[i + 1]; ++k) ++counts[csr.ids[k]];
    }
}

double t_to_p(const std::uint64_t* counts, std::size_t n, double t) {
    std::uint64_t total = 0, tail = 0;
    for (std::size_t i = 0; i < n; ++i) {
        total += counts[i];
        if (static_cast<double>(counts[i]) < t) tail += counts[i];
    }
    if (total == 0) throw BalanceError("t_to_p: all entry counts are zero (no text matched any entry)");
    return static_cast<double>(tail) / static_cast<double>(total);
}

std::uint64_t p_to_t(const std::uint64_t* counts, std::size_t n, double p) {
    if (n == 0) throw BalanceError("p_to_t: empty counts");
    std::vector<std::uint64_t> sorted(counts, counts + n);
    std::sort(sorted.begin(), sorted.end());
    std::uint64_t total = 0;
    for (auto c : sorted) total += c;
    if (total == 0) throw BalanceError("p_to_t: all entry counts are zero (no text matched any entry)");
    // Same arithmetic as MetaCLIP's numpy code: uint64 cumsum, then float64 cumsum / sum, then
    // argmin(|share - p|) which takes the first index among ties.
    const double dtotal = static_cast<double>(total);
    std::uint64_t cum = 0;
    std::size_t best = 0;
    double best_d = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
        cum += sorted[i];
        const double d = std::fabs(static_cast<double>(cum) / dtotal - p);
        if (i == 0 || d < best_d) {
            best_d = d;
            best = i;
        }
    }
    return sorted[best];
}

void entry_probs(const std::uint64_t* counts, std::size_t n, double t, double* out) {
    if (!(t > 0.0) || !std::isfinite(t)) throw BalanceError("t must be a finite number > 0, got " + std::to_string(t));
    for (std::size_t i = 0; i < n; ++i) {
        const double c = static_cast<double>(counts[i]);
        out[i] = c < t ? 1.0 : t / c;
    }
}

std::uint64_t hash_bytes(const std::uint8_t* data, std::size_t len) {
    // Word-at-a-time: one splitmix64 round per 8 bytes. The length is folded into the seed so that
    // zero padding of the tail cannot make two different strings collide trivially.
    std::uint64_t h = mix64(kGolden ^ (static_cast<std::uint64_t>(len) * 0xD6E8FEB86659FD93ULL));
    std::size_t i = 0;
    for (; i + 8 <= len; i += 8) h = mix64(h ^ load_le(data + i, 8)) + kGolden;
    if (i < len) h = mix64(h ^ load_le(data + i, len - i)) + kGolden;
    return mix64(h);
}

std::uint64_t hash_int64(std::int64_t v) {
    // A different domain constant than strings, so the integer 49 and the string "1" (byte 49) differ.
    return mix64(mix64(static_cast<std::uint64_t>(v) ^ 0xA0761D6478BD642FULL) + kGolden);
}

template <typename O>
void hash_strings(const O* offsets, const std::uint8_t* data, std::size_t n, std::uint64_t* out) {
    // hash_bytes is one chain of dependent multiplies per string, so one string at a time runs at
    // the multiplier's latency. Four strings of the same length (ids are usually fixed-width:
    // DataComp's 32 hex digits) run as four chains in lockstep, which the core overlaps: the
    // same arithmetic, hence the same hashes, about 3x faster on 32-byte uids.
    std::size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const O o0 = offsets[i], o1 = offsets[i + 1], o2 = offsets[i + 2], o3 = offsets[i + 3], o4 = offsets[i + 4];
        if (o1 < o0 || o2 < o1 || o3 < o2 || o4 < o3) break;  // the scalar loop below names the index
        const std::size_t len = static_cast<std::size_t>(o1 - o0);
        if (static_cast<std::size_t>(o2 - o1) != len || static_cast<std::size_t>(o3 - o2) != len ||
            static_cast<std::size_t>(o4 - o3) != len) {
            for (std::size_t j = 0; j < 4; ++j) {
                out[i + j] = hash_bytes(data + offsets[i + j], static_cast<std::size_t>(offsets[i + j + 1] - offsets[i + j]));
            }
            continue;
        }
        const std::uint8_t* p[4] = {data + o0, data + o1, data + o2, data + o3};
        std::uint64_t h[4];
        const std::uint64_t h0 = mix64(kGolden ^ (static_cast<std::uint64_t>(len) * 0xD6E8FEB86659FD93ULL));
        for (std::uint64_t& v : h) v = h0;
        std::size_t k = 0;
        for (; k + 8 <= len; k += 8) {
            for (std::size_t j = 0; j < 4; ++j) h[j] = mix64(h[j] ^ load_le(p[j] + k, 8)) + kGolden;
        }
        if (k < len) {
            for (std::size_t j = 0; j < 4; ++j) h[j] = mix64(h[j] ^ load_le(p[j] + k, len - k)) + kGolden;
        }
        for (std::size_t j = 0; j < 4; ++j) out[i + j] = mix64(h[j]);
    }
    for (; i < n; ++i) {
        const O b = offsets[i], e = offsets[i + 1];
        if (e < b) throw BalanceError("string offsets must be non-decreasing at index " + std::to_string(i));
        out[i] = hash_bytes(data + b, static_cast<std::size_t>(e - b));
    }
}
template void hash_strings<std::int32_t>(const std::int32_t*, const std::uint8_t*, std::size_t, std::uint64_t*);
template void hash_strings<std::int64_t>(const std::int64_t*, const std::uint8_t*, std::size_t, std::uint64_t*);

double uniform_draw(std::uint64_t seed, std::uint64_t key_hash) {
    const std::uint64_t x = mix64(mix64(key_hash ^ mix64(seed + kGolden)) + kGolden);
    return static_cast<double>(x >> 11) * 0x1.0p-53;  // 53 bits: every value exact in a double
}

std::size_t balance(const CsrView& csr, const double* probs, std::size_t n_entries,
                    const std::uint64_t* key_hashes, std::uint64_t seed, std::uint8_t* keep,
                    unsigned threads) {
    const std::size_t n_blocks = (csr.n_texts + kBlock - 1) / kBlock;
    std::vector<std::size_t> kept(n_blocks, 0);
    parallel_blocks(n_blocks, threads, [&](std::size_t blk) {
        const std::size_t lo = blk * kBlock, hi = std::min(csr.n_texts, lo + kBlock);
        std::size_t k = 0;
        for (std::size_t i = lo; i < hi; ++i) {
            check_text(csr, i, n_entries);
            const double prob = keep_probability(csr, probs, i);
            // One uniform per sample against 1 - prod(1 - p_e): the same Bernoulli law as MetaCLIP's
            // one uniform per (sample, entry) with "keep if any fires", but a pure function of the key.
            const bool kp = prob > 0.0 && uniform_draw(seed, key_hashes[i]) < prob;
            keep[i] = kp ? 1 : 0;
            k += kp ? 1 : 0;
        }
        kept[blk] = k;
    });
    std::size_t total = 0;
    for (auto k : kept) total += k;
    return total;
}

namespace {
template <typename ProbFn>
double expected_size_impl(const CsrView& csr, std::size_t n_entries, unsigned threads, ProbFn&& prob_of) {
    const std::size_t n_blocks = (csr.n_texts + kBlock - 1) / kBlock;
    std::vector<double> sums(n_blocks, 0.0);
    parallel_blocks(n_blocks, threads, [&](std::size_t blk) {
        const std::size_t lo = blk * kBlock, hi = std::min(csr.n_texts, lo + kBlock);
        double s = 0.0;
        for (std::size_t i = lo; i < hi; ++i) {
            check_text(csr, i, n_entries);
            const std::int64_t b = csr.offsets[i], e = csr.offsets[i + 1];
            if (b == e) continue;
            double q = 1.0;
            for (std::int64_t k = b; k < e; ++k) q *= 1.0 - prob_of(csr.ids[k]);
            s += 1.0 - q;
        }
        sums[blk] = s;
    });
    double total = 0.0;
    for (double s : sums) total += s;
    return total;
}
}  // namespace

double expected_size(const CsrView& csr, const double* probs, std::size_t n_entries, unsigned threads) {
    return expected_size_impl(csr, n_entries, threads, [probs](std::int32_t id) { return probs[id]; });
}

double expected_size_for_t(const CsrView& csr, const std::uint64_t* counts, std::size_t n_entries,
                           double t, unsigned threads) {
    // The table first: a division per matched id cost twice the time of the whole gather pass
    // (measured 15.9 vs 8.7 ms for 500k captions); the table is n_entries doubles, hot in cache.
    std::vector<double> probs(n_entries);
    entry_probs(counts, n_entries, t, probs.data());
    return expected_size(csr, probs.data(), n_entries, threads);
}

}  // namespace fastcurate
