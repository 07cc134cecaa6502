"""Counting and balancing kernels against MetaCLIP's numpy formulas and per-text loop."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from fastcurate.kernels.balance import (
    balance,
    count_entries,
    entry_probs,
    expected_size,
    hash_keys,
    keep_probabilities,
    p_to_t,
    t_for_target_size,
    t_to_p,
    uniform_draws,
)
from fastcurate.errors import InputError, InputTypeError


# ---- MetaCLIP's numpy code (metaclip/curation/curate.py), as the oracle
def mc_p_to_t(entry_counts, p):
    counts = np.sort(entry_counts)
    cumsum_counts = np.cumsum(counts)
    portion = cumsum_counts / counts.sum()
    return counts[(np.abs(portion - p)).argmin()]


def mc_t_to_p(entry_counts, t):
    return float(entry_counts[entry_counts < t].sum() / entry_counts.sum())


def mc_count_to_prob(entry_count, t):
    c = np.array(entry_count)
    c[c < t] = t
    return t / c


def random_csr(n_texts, n_entries, rng, max_ids=6, zipf=1.3, empty_share=0.2):
    """A CSR with Zipf-distributed entries, sorted unique ids per row, some empty rows."""
    lens = rng.integers(1, max_ids + 1, size=n_texts)
    lens[rng.random(n_texts) < empty_share] = 0
    raw = (rng.zipf(zipf, size=int(lens.sum())) - 1) % n_entries
    offsets = [0]
    ids = []
    pos = 0
    for ln in lens:
        row = np.unique(raw[pos:pos + ln])
        pos += ln
        ids.append(row)
        offsets.append(offsets[-1] + len(row))
    return np.asarray(offsets, np.int64), np.concatenate(ids).astype(np.int32)


def naive_counts(offsets, ids, n):
    c = np.zeros(n, np.uint64)
    for i in range(len(offsets) - 1):
        for e in ids[offsets[i]:offsets[i + 1]]:
            c[e] += 1
    return c


@pytest.fixture(scope="module")
def pool():
    rng = np.random.default_rng(1234)
    offsets, ids = random_csr(20000, 300, rng)
    return offsets, ids, 300


def test_count_entries_matches_naive_and_adds_across_shards(pool):
    offsets, ids, n = pool
    c = count_entries((offsets, ids), n)
    assert c.dtype == np.uint64
    assert np.array_equal(c, naive_counts(offsets, ids, n))
    # two shards add up to the whole
    h = 7000
    a = (offsets[: h + 1], ids[: offsets[h]])
    b = (offsets[h:] - offsets[h], ids[offsets[h]:])
    acc = count_entries(a, n)
    count_entries(b, n, out=acc)
    assert np.array_equal(acc, c)
    # a sliced offsets array (offsets[0] != 0) indexes the full ids without rebasing
    assert np.array_equal(count_entries((offsets[h:], ids), n), naive_counts(offsets[h:], ids, n))


@pytest.mark.parametrize("t", [1, 2, 5, 37, 100, 10**9])
def test_t_to_p_and_entry_probs_equal_metaclip(pool, t):
    offsets, ids, n = pool
    c = count_entries((offsets, ids), n)
    assert t_to_p(c, t) == mc_t_to_p(c, t)
    assert np.array_equal(entry_probs(c, t), mc_count_to_prob(c, t))


@pytest.mark.parametrize("p", [0.0, 0.01, 0.1, 0.25, 0.5, 0.9, 1.0])
def test_p_to_t_equals_metaclip(pool, p):
    offsets, ids, n = pool
    c = count_entries((offsets, ids), n)
    assert p_to_t(c, p) == int(mc_p_to_t(c, p))
    rng = np.random.default_rng(int(p * 100))
    c2 = rng.integers(0, 50, size=1000).astype(np.uint64)  # many ties
    assert p_to_t(c2, p) == int(mc_p_to_t(c2, p))


def test_t_p_errors():
    z = np.zeros(3, np.uint64)
    with pytest.raises(InputError, match="zero"):
        t_to_p(z, 5)
    with pytest.raises(InputError, match="zero"):
        p_to_t(z, 0.1)
    with pytest.raises(InputError):
        p_to_t(np.ones(3, np.uint64), 1.5)
    with pytest.raises(InputError, match="t must be"):
        entry_probs(np.ones(3, np.uint64), 0)
    with pytest.raises(InputTypeError, match="uint64"):
        t_to_p(np.ones(3, np.int64), 5)


def test_keep_probability_and_expected_size(pool):
    offsets, ids, n = pool
    c = count_entries((offsets, ids), n)
    t = 40.0
    probs = entry_probs(c, t)
    naive = np.array([1 - np.prod(1 - probs[ids[offsets[i]:offsets[i + 1]]]) if offsets[i + 1] > offsets[i] else 0.0
                      for i in range(len(offsets) - 1)])
    kp = keep_probabilities((offsets, ids), probs)
    assert np.allclose(kp, naive, rtol=0, atol=1e-12)
    es = expected_size((offsets, ids), c, t)
    assert es == pytest.approx(naive.sum(), rel=1e-12)
    # a list of shards gives the same total
    h = 5000
    shards = [(offsets[: h + 1], ids), (offsets[h:], ids)]
    assert expected_size(shards, c, t) == pytest.approx(es, rel=1e-12)
    assert expected_size((offsets, ids), c, t, threads=1) == expected_size((offsets, ids), c, t, threads=2)


def test_t_for_target_size_inverts_expected_size(pool):
    offsets, ids, n = pool
    c = count_entries((offsets, ids), n)
    matched = int(np.count_nonzero(np.diff(offsets)))
    for target in (100, 2500, 9000, matched * 0.999):
        t = t_for_target_size((offsets, ids), c, target)
        assert expected_size((offsets, ids), c, t) == pytest.approx(target, rel=1e-6, abs=1e-6)
    with pytest.raises(InputError, match="exceeds"):
        t_for_target_size((offsets, ids), c, matched + 1)


def test_balance_statistical_4_sigma():
    """Large synthetic pool, fixed seed: kept count within 4 sigma of expected_size."""
    rng = np.random.default_rng(7)
    offsets, ids = random_csr(400_000, 5000, rng, max_ids=5, zipf=1.2)
    c = count_entries((offsets, ids), 5000)
    keys = np.arange(len(offsets) - 1, dtype=np.int64)
    for t in (3.0, 50.0, 1000.0):
        probs = entry_probs(c, t)
        kp = keep_probabilities((offsets, ids), probs)
        mu = expected_size((offsets, ids), c, t)
        sigma = float(np.sqrt(np.sum(kp * (1 - kp))))
        keep = balance((offsets, ids), probs, keys, seed=0)
        assert abs(int(keep.sum()) - mu) < 4 * sigma, (t, int(keep.sum()), mu, sigma)
        # texts with no match are never kept; texts with keep prob 1 always are
        lens = np.diff(offsets)
        assert not keep[lens == 0].any()
        assert keep[kp == 1.0].all()
        # per-entry: the kept counts of head entries sit near t (MetaCLIP's goal), within 4 sigma
        kept_c = count_entries(_subset(offsets, ids, keep), 5000)
        head = np.flatnonzero(c >= 20 * t)[:5]
        for e in head:
            rows = _rows_with(offsets, ids, e)
            mu_e, var_e = kp[rows].sum(), (kp[rows] * (1 - kp[rows])).sum()
            assert abs(int(kept_c[e]) - mu_e) < 4 * np.sqrt(var_e) + 1


def _subset(offsets, ids, keep):
    lens = np.diff(offsets)
    o = np.zeros(len(keep) + 1, np.int64)
    np.cumsum(np.where(keep, lens, 0), out=o[1:])
    return o, np.ascontiguousarray(ids[offsets[0]:offsets[-1]][np.repeat(keep, lens)])


def _rows_with(offsets, ids, e):
    row_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    return row_of[ids == e]


def test_balance_same_law_as_metaclip_per_text_loop():
    """MetaCLIP's loop (one uniform per entry, keep if any fires) and ours (one uniform per sample
    against 1 - prod(1 - p)) keep the same expected number: both within 4 sigma of sum(keep prob)."""
    rng = np.random.default_rng(99)
    offsets, ids = random_csr(60_000, 800, rng, zipf=1.25)
    c = count_entries((offsets, ids), 800)
    probs = entry_probs(c, 25.0)
    kp = keep_probabilities((offsets, ids), probs)
    mu, sigma = kp.sum(), np.sqrt((kp * (1 - kp)).sum())
    r = random.Random(0)
    mc = sum(metaclip_keep(ids[offsets[i]:offsets[i + 1]], probs, r) for i in range(len(offsets) - 1))
    ours = int(balance((offsets, ids), probs, np.arange(len(offsets) - 1), seed=5).sum())
    assert abs(mc - mu) < 4 * sigma and abs(ours - mu) < 4 * sigma


def metaclip_keep(matched, entry_prob, r):
    for e in matched:
        if r.random() < entry_prob[e]:
            return True
    return False


def test_balance_is_a_pure_function_of_seed_and_key(pool):
    offsets, ids, n = pool
    c = count_entries((offsets, ids), n)
    probs = entry_probs(c, 30.0)
    keys = [f"{i:032x}" for i in range(len(offsets) - 1)]
    a = balance((offsets, ids), probs, keys, seed=3, threads=1)
    b = balance((offsets, ids), probs, pa.array(keys, pa.large_string()), seed=3, threads=2)
    assert np.array_equal(a, b)
    # reversing the rows (another shard order) keeps the same samples
    rev_o = np.concatenate([[0], np.cumsum(np.diff(offsets)[::-1])]).astype(np.int64)
    rev_ids = np.concatenate([ids[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 2, -1, -1)]).astype(np.int32)
    c2 = balance((rev_o, rev_ids), probs, keys[::-1], seed=3)
    assert np.array_equal(c2[::-1], a)
    # another seed gives another subset
    assert not np.array_equal(balance((offsets, ids), probs, keys, seed=4), a)


def test_hash_keys_layouts_agree():
    keys = [f"{i:032x}" for i in range(1000)] + ["", "é", "a" * 100]
    h = hash_keys(keys)
    assert h.dtype == np.uint64 and len(np.unique(h)) == len(keys)
    assert np.array_equal(hash_keys(pa.array(keys)), h)
    assert np.array_equal(hash_keys(pa.array(keys, pa.large_string())), h)
    assert np.array_equal(hash_keys(np.array(keys)), h)
    ch = pa.chunked_array([keys[:10], keys[10:500], keys[500:]])
    assert np.array_equal(hash_keys(ch), h)
    assert np.array_equal(hash_keys(pa.array(keys).slice(17, 300)), h[17:317])
    assert np.array_equal(hash_keys(pa.array(keys).dictionary_encode()), h)
    ints = np.arange(-5, 1000, dtype=np.int64)
    hi = hash_keys(ints)
    assert np.array_equal(hash_keys(pa.array(ints, pa.int32())), hi)
    assert np.array_equal(hash_keys(ints.tolist()), hi)
    # fixed values: the draw of a uid must never change between versions or machines
    assert int(hash_keys(["abc"])[0]) == int(hash_keys(["abc"])[0])
    u = uniform_draws(["0" * 32, "f" * 32], seed=0)
    assert ((u >= 0) & (u < 1)).all()


def test_pinned_draw_values():
    """Golden values: a change to the hash or the draw silently changes every curated subset."""
    got = [float(x) for x in uniform_draws(["a", "000000000000000000000000000000ff", "uid-12345"], seed=0)]
    got += [float(x) for x in uniform_draws(np.array([0, 1, 2**40], np.int64), seed=17)]
    assert got == pytest.approx(GOLDEN, rel=0, abs=0)


# Computed once with the first implementation (x86-64); the hash reads bytes little-endian
# explicitly, so these hold on every platform.
GOLDEN = [0.8430195579257377, 0.5572518755924963, 0.2764507459684513,
          0.5551603254101187, 0.37084266255819576, 0.6997423221415539]


def test_input_validation(pool):
    offsets, ids, n = pool
    with pytest.raises(InputTypeError, match="int32"):
        count_entries((offsets, ids.astype(np.int64)), n)
    with pytest.raises(InputError, match="contiguous"):
        count_entries((offsets, np.ascontiguousarray(np.repeat(ids, 2))[::2]), n)
    with pytest.raises(InputError, match="outside"):
        count_entries((offsets, ids), 10)
    with pytest.raises(InputError, match="sorted and unique"):
        count_entries((np.array([0, 2], np.int64), np.array([3, 1], np.int32)), 5)
    with pytest.raises(InputError, match="null"):
        balance((np.array([0, 1], np.int64), np.array([0], np.int32)), np.ones(1), pa.array([None], pa.string()))
    with pytest.raises(InputError, match="len"):
        balance((offsets, ids), np.ones(n), list(range(5)))
    with pytest.raises(InputTypeError):
        count_entries("nope", 3)


from hypothesis import given, settings, strategies as st


@st.composite
def csr_and_probs(draw):
    n_entries = draw(st.integers(1, 12))
    rows = draw(st.lists(st.sets(st.integers(0, n_entries - 1), max_size=n_entries), max_size=40))
    offsets = np.zeros(len(rows) + 1, np.int64)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    ids = np.array([e for r in rows for e in sorted(r)], dtype=np.int32)
    probs = np.array(draw(st.lists(st.sampled_from([0.0, 0.1, 0.5, 0.999, 1.0]), min_size=n_entries,
                                   max_size=n_entries)), dtype=np.float64)
    keys = draw(st.lists(st.text(max_size=12), min_size=len(rows), max_size=len(rows)))
    return offsets, ids, probs, keys, n_entries


@settings(max_examples=200, deadline=None)
@given(csr_and_probs(), st.integers(0, 2**64 - 1))
def test_balance_equals_its_definition(data, seed):
    """keep[i] == (draw(seed, key_i) < 1 - prod(1 - p_e)), computed independently in numpy."""
    offsets, ids, probs, keys, n_entries = data
    r = (offsets, ids)
    keep = balance(r, probs, keys, seed=seed, threads=2)
    u = uniform_draws(keys, seed=seed) if keys else np.zeros(0)
    for i in range(len(keys)):
        row = ids[offsets[i]:offsets[i + 1]]
        prob = 1.0 - np.prod(1.0 - probs[row]) if len(row) else 0.0
        assert keep[i] == (len(row) > 0 and u[i] < prob)
    assert np.array_equal(count_entries(r, n_entries), naive_counts(offsets, ids, n_entries))


# ---- the key hash against a plain Python reference (the C++ runs four equal-length strings as
# four chains in lockstep; that must not change a single hash)

_M = (1 << 64) - 1
_GOLD = 0x9E3779B97F4A7C15


def _mix64(x: int) -> int:
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _M
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _M
    return x ^ (x >> 31)


def ref_hash_bytes(b: bytes) -> int:
    """docs/curate.md's key hash, written out: one splitmix64 round per 8 little-endian bytes."""
    h = _mix64(_GOLD ^ ((len(b) * 0xD6E8FEB86659FD93) & _M))
    for i in range(0, len(b), 8):
        h = (_mix64(h ^ int.from_bytes(b[i:i + 8], "little")) + _GOLD) & _M
    return _mix64(h)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 9)), max_size=12), st.randoms(use_true_random=False))
def test_hash_keys_equal_the_reference_for_runs_of_equal_lengths(runs, rnd):
    # runs of equal-length strings (the lockstep path), broken by other lengths (the scalar path)
    keys = ["".join(rnd.choice("0123456789abcdefé") for _ in range(length)) for length, count in runs for _ in range(count)]
    ref = [ref_hash_bytes(k.encode("utf-8")) for k in keys]
    for arr in (pa.array(keys, pa.string()), pa.array(keys, pa.large_string())):
        assert hash_keys(arr).tolist() == ref
        if len(keys) > 3:
            assert hash_keys(arr.slice(3)).tolist() == ref[3:]


def test_hash_keys_of_datacomp_uids_are_pinned():
    uids = [f"{i * 0x9E3779B97F4A7C15 & _M:016x}{i:016x}" for i in range(9)]
    assert hash_keys(uids).tolist() == [ref_hash_bytes(u.encode()) for u in uids]


def test_count_entries_with_keep_counts_only_kept_texts(pool):
    offsets, ids, n = pool
    keep = np.random.default_rng(3).random(len(offsets) - 1) < 0.4
    lens = np.diff(offsets)
    sub_off = np.zeros(len(lens) + 1, np.int64)
    np.cumsum(np.where(keep, lens, 0), out=sub_off[1:])
    sub_ids = ids[offsets[0]:offsets[-1]][np.repeat(keep, lens)]
    assert np.array_equal(count_entries((offsets, ids), n, keep=keep), naive_counts(sub_off, sub_ids, n))
    assert not count_entries((offsets, ids), n, keep=np.zeros(len(keep), bool)).any()
    with pytest.raises(InputError, match="keep"):
        count_entries((offsets, ids), n, keep=keep[:-1])
    # every text is still checked, kept or not
    with pytest.raises(InputError, match="outside"):
        count_entries((np.array([0, 1, 2], np.int64), np.array([0, 99], np.int32)), 5, keep=np.array([True, False]))
