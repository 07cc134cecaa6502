"""Text tokenisers for the ONNX text towers, without torch.

:class:`ClipTokenizer` reproduces open_clip's ``SimpleTokenizer`` (ids, truncation, padding) exactly.
The BPE itself runs in Hugging Face ``tokenizers`` (Rust, multi-threaded); the text cleaning that
open_clip applies before BPE (ftfy, HTML unescaping, whitespace collapsing, lower-casing) is done
here in Python with the very same functions, because re-implementing ``ftfy`` or Python's notion of
whitespace and lower case in another engine is where silent mismatches come from.

:class:`HFTokenizer` wraps any ``tokenizer.json`` (e.g. all-MiniLM-L6-v2's WordPiece) for text-only
encoders.

Thread safety: both classes are safe to call from several threads; ``tokenizers`` releases the GIL.
"""

from __future__ import annotations

import gzip
import html
import json
import re
from itertools import chain
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import InputError, InputTypeError, ModelError

__all__ = ["ClipTokenizer", "HFTokenizer", "build_clip_tokenizer_json", "clean_caption"]

SOT = "<start_of_text>"
EOT = "<end_of_text>"
# open_clip compiles this with the `regex` module and re.IGNORECASE; Oniguruma's (?i) gives the same
# case folding (e.g. "'ſ" matches 's in both), which plain lower-casing alone would not.
CLIP_SPLIT_PATTERN = r"""(?i)'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""

# A caption needs ftfy / html.unescape only if it has a non-ASCII character, an '&' (HTML entity),
# or an ASCII control character other than tab and newline (ftfy removes or rewrites those). Plain
# printable ASCII is a fixed point of both, which the test suite checks with hypothesis; skipping
# them is what makes cleaning cheap for the bulk of web captions.
_NEEDS_FTFY = re.compile(r"[^\x20-\x7e\t\n]|&")
# The same test over a whole joined batch, whose separators are NULs (checked separately).
_NEEDS_FTFY_BATCH = re.compile(r"[^\x00\x20-\x7e\t\n]|&")
_NUL = re.compile("\x00")


def _bytes_to_unicode() -> Dict[int, str]:
    # Same table as open_clip / GPT-2: printable bytes map to themselves, the rest to U+0100 onwards.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _clean_nolower(text: str) -> str:
    if _NEEDS_FTFY.search(text) is not None:
        import ftfy  # imported lazily: pure-ASCII pools never need it

        text = ftfy.fix_text(text)
        text = html.unescape(html.unescape(text))
    # str.split() with no argument uses Python's own whitespace set, exactly as open_clip does.
    return " ".join(text.split())


def clean_caption(text: str) -> str:
    """open_clip's ``clean='lower'`` cleaning: ftfy, double HTML unescape, whitespace collapse, lower."""
    return _clean_nolower(text).lower()


def build_clip_tokenizer_json(bpe_path: Union[str, Path], out_path: Union[str, Path]) -> Path:
    """Convert open_clip's ``bpe_simple_vocab_16e6.txt.gz`` into a ``tokenizers`` JSON file.

    The vocabulary and merge ranks are built exactly as ``open_clip.tokenizer.SimpleTokenizer`` does.
    Cleaning is not part of the JSON (see :func:`clean_caption`).
    """
    from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers, processors, decoders

    bpe_path = Path(bpe_path)
    opener = gzip.open if bpe_path.suffix == ".gz" else open
    with opener(bpe_path, "rb") as f:
        lines = f.read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    byte_chars = list(_bytes_to_unicode().values())
    vocab_list = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges] + [SOT, EOT]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    bpe = models.BPE(vocab=vocab, merges=merges, end_of_word_suffix="</w>", fuse_unk=False)
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CLIP_SPLIT_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    # open_clip's split pattern lists the two special strings first, so they become their own ids
    # wherever they occur in a caption; added tokens reproduce that.
    tok.add_special_tokens([AddedToken(SOT, normalized=False), AddedToken(EOT, normalized=False)])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SOT} $A {EOT}", special_tokens=[(SOT, vocab[SOT]), (EOT, vocab[EOT])]
    )
    tok.decoder = decoders.BPEDecoder(suffix="</w>")
    out_path = Path(out_path)
    tok.save(str(out_path))
    return out_path


def _check_texts(texts: Sequence[str]) -> List[str]:
    if isinstance(texts, str):
        raise InputTypeError("texts must be a sequence of str, got a single str; wrap it in a list")
    out = list(texts) if not isinstance(texts, list) else texts
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise InputTypeError(
                f"texts[{i}] is {type(t).__name__}, not str; convert or drop it (None captions: use '')"
            )
    return out


class ClipTokenizer:
    """Exact, torch-free equivalent of ``open_clip.get_tokenizer(<a CLIP model>)``.

    ``tok(texts)`` returns int64 ids ``[n, context_length]`` zero-padded like open_clip;
    ``tok(texts, pad_to="longest")`` pads only to the longest row (for variable-length text towers;
    the ids of each row are unchanged).

    Why it is fast: web captions are made of a small vocabulary of whitespace-separated chunks
    ("dog,", "photo"), so ids are cached per chunk. A batch is joined into one string and split with
    ``str.split`` (one C call); only unseen chunks go through open_clip's regex and the BPE (Rust).
    Tokens never span whitespace, so a chunk's ids do not depend on its neighbours.
    """

    _SEP = "\x00"  # a chunk of its own between captions; cleaned captions never contain it
    _MAX_CACHE = 2_000_000

    def __init__(self, tokenizer_json: Union[str, Path], context_length: int = 77) -> None:
        import regex
        from tokenizers import Tokenizer, pre_tokenizers

        path = Path(tokenizer_json)
        if not path.is_file():
            raise ModelError(f"tokenizer file {path} does not exist; re-export the bundle")
        self._tok = Tokenizer.from_file(str(path))
        self.context_length = int(context_length)
        if self.context_length < 2:
            raise ModelError(f"context_length must be >= 2, got {context_length}")
        self.sot_token_id = self._tok.token_to_id(SOT)
        self.eot_token_id = self._tok.token_to_id(EOT)
        if self.sot_token_id is None or self.eot_token_id is None:
            raise ModelError(f"{path} is not a CLIP tokenizer (no {SOT}/{EOT} tokens)")
        # BPE of single pre-split tokens: the split itself is done by open_clip's own regex below.
        self._bpe = Tokenizer.from_file(str(path))
        self._bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        self._bpe.post_processor = None
        self._bpe.no_truncation()
        self._bpe.no_padding()
        # The pattern and flags of open_clip.tokenizer.SimpleTokenizer, verbatim.
        self._pat = regex.compile(
            SOT + "|" + EOT + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )
        self._cache: Dict[str, Tuple[int, ...]] = {}
        self._reset_cache()

    def _reset_cache(self) -> None:
        self._cache.clear()
        self._cache[self._SEP] = (-1,)

    def _fill(self, chunks: List[str]) -> None:
        new = [c for c in dict.fromkeys(chunks) if c not in self._cache]
        if len(self._cache) + len(new) > self._MAX_CACHE:
            self._reset_cache()  # bounded memory on endless pools; refilling costs little
        findall = self._pat.findall
        words = [findall(c) for c in new]
        uniq = list(dict.fromkeys(w for ws in words for w in ws))
        ids: Dict[str, Tuple[int, ...]] = {}
        if uniq:
            # One pre-tokenised call for all new words: per-call overhead, not BPE, dominates otherwise.
            enc = self._bpe.encode(uniq, is_pretokenized=True, add_special_tokens=False)
            flat = enc.ids
            wid = np.asarray([-1 if w is None else w for w in enc.word_ids], dtype=np.int64)
            counts = np.bincount(wid, minlength=len(uniq)) if len(wid) else np.zeros(len(uniq), np.int64)
            if (wid < 0).any() or (counts == 0).any():
                raise RuntimeError("internal tokenizer error: a word produced no token")
            ends = np.cumsum(counts).tolist()
            starts = [0] + ends[:-1]
            ids = {w: tuple(flat[a:b]) for w, a, b in zip(uniq, starts, ends)}
        cache = self._cache
        for c, ws in zip(new, words):
            cache[c] = ids[ws[0]] if len(ws) == 1 else tuple(i for w in ws for i in ids[w])

    def _joined(self, texts: List[str]) -> Tuple[str, List[int]]:
        """The cleaned, lower-cased batch joined by separators; plus the captions kept out of it."""
        sep = " " + self._SEP + " "
        n = len(texts)
        joined = sep.join(texts)
        if joined.count(self._SEP) == n - 1 and _NEEDS_FTFY_BATCH.search(joined) is None:
            # Plain printable ASCII everywhere (the common case): nothing to clean per caption.
            return joined.lower(), []
        # Locate the captions that need cleaning from the match positions in the joined string,
        # rather than testing every caption: usually only a few percent of a pool are non-ASCII.
        ends = np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=n) + len(sep))
        pos = [m.start() for m in _NEEDS_FTFY_BATCH.finditer(joined)]
        if joined.count(self._SEP) != n - 1:  # a caption holds a NUL itself
            nul = np.asarray([m.start() for m in _NUL.finditer(joined)], dtype=np.int64)
            pos += np.setdiff1d(nul, ends[:-1] - 2).tolist()  # the separators' NULs sit at end - 2
        parts = list(texts)
        odd: List[int] = []
        for i in np.unique(np.searchsorted(ends, np.asarray(pos, dtype=np.int64), side="right")).tolist():
            if i >= n:
                continue
            p = _clean_nolower(texts[i])
            if self._SEP in p:  # a NUL survived cleaning: encoded alone (see __call__)
                odd.append(i)
                p = ""
            parts[i] = p
        # Lower-casing the joined string equals lower-casing each caption: the separator is neither
        # cased nor case-ignorable, so no context-dependent mapping (final sigma) crosses it.
        return sep.join(parts).lower(), odd

    def __call__(self, texts: Sequence[str], pad_to: Union[str, int, None] = None) -> np.ndarray:
        """Tokenise ``texts`` to an int64 array; ``pad_to`` is None (context length), "longest" or an int.

        Rows longer than the context are truncated as open_clip does (the last kept id becomes the
        end token); ``pad_to`` narrower than that is an error.
        """
        texts = _check_texts(texts)
        n = len(texts)
        L = self.context_length
        if n == 0:
            return np.zeros((0, L if pad_to is None else 2), dtype=np.int64)
        joined, odd = self._joined(texts)
        chunks = joined.split()
        get = self._cache.get
        lists = list(map(get, chunks))
        if None in lists:
            self._fill(chunks)
            get = self._cache.get
            lists = list(map(get, chunks))
        flat = np.fromiter(chain.from_iterable(lists), dtype=np.int64)
        seps = np.flatnonzero(flat == -1)
        if len(seps) != n - 1:  # cannot happen unless the invariants above are broken
            raise RuntimeError("internal tokenizer error: caption separators lost")
        starts = np.empty(n, np.int64)
        starts[0] = 0
        starts[1:] = seps + 1
        ends = np.empty(n, np.int64)
        ends[:-1] = seps
        ends[-1] = len(flat)
        lens = np.minimum(ends - starts, L - 2)
        if odd:
            slow = {i: self._encode_one(parts_i) for i, parts_i in zip(odd, (clean_caption(texts[i]) for i in odd))}
            for i, ids in slow.items():
                lens[i] = min(len(ids), L - 2)
        if pad_to is None:
            width = L
        elif pad_to == "longest":
            width = int(lens.max()) + 2
        else:
            width = int(pad_to)
            if width < int(lens.max()) + 2:
                raise InputError(f"pad_to={width} is shorter than the longest tokenised text ({int(lens.max()) + 2})")
        out = np.zeros((n, width), dtype=np.int64)
        out[:, 0] = self.sot_token_id
        rows = np.repeat(np.arange(n), lens)
        cols = np.arange(len(rows)) - np.repeat(np.cumsum(lens) - lens, lens)
        if odd:
            keep = ~np.isin(rows, odd)
            rows, cols = rows[keep], cols[keep]
        out[rows, cols + 1] = flat[starts[rows] + cols]
        out[np.arange(n), lens + 1] = self.eot_token_id
        if odd:
            for i, ids in slow.items():
                out[i, 1 : lens[i] + 1] = ids[: lens[i]]
        return out

    def _encode_one(self, cleaned: str) -> List[int]:
        words = self._pat.findall(cleaned)
        if not words:
            return []
        return [i for e in self._bpe.encode_batch(words, add_special_tokens=False) for i in e.ids]

    def encode_ids(self, texts: Sequence[str]) -> List[List[int]]:
        """Token ids of each text, with start/end tokens and truncation, unpadded."""
        arr = self(texts, pad_to="longest")
        lens = (arr != 0).sum(axis=1)
        return [row[:k].tolist() for row, k in zip(arr, lens)]


class HFTokenizer:
    """Any Hugging Face ``tokenizer.json`` (e.g. BERT WordPiece), returning the arrays ONNX needs."""

    def __init__(self, tokenizer_json: Union[str, Path], max_length: int = 256) -> None:
        from tokenizers import Tokenizer

        path = Path(tokenizer_json)
        if not path.is_file():
            raise ModelError(f"tokenizer file {path} does not exist")
        self._tok = Tokenizer.from_file(str(path))
        self.max_length = int(max_length)
        self._tok.enable_truncation(max_length=self.max_length)
        pad_id = 0
        pad_tok = "[PAD]"
        cfg = json.loads(self._tok.to_str()).get("padding") or {}
        if cfg:
            pad_id = int(cfg.get("pad_id", 0))
            pad_tok = cfg.get("pad_token", pad_tok)
        self._tok.enable_padding(pad_id=pad_id, pad_token=pad_tok)

    def __call__(self, texts: Sequence[str]) -> Dict[str, np.ndarray]:
        """Return ``input_ids``, ``attention_mask`` and ``token_type_ids`` (int64, padded to the longest)."""
        texts = _check_texts(texts)
        encs = self._tok.encode_batch(texts, add_special_tokens=True)
        return {
            "input_ids": np.array([e.ids for e in encs], dtype=np.int64).reshape(len(encs), -1),
            "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64).reshape(len(encs), -1),
            "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64).reshape(len(encs), -1),
        }
