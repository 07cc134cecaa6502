"""Text tokenisers for the ONNX text towers, without torch.

:class:`ClipTokenizer` reproduces open_clip's ``SimpleTokenizer`` (ids, truncation, padding) exactly.
A C++ kernel (``fastcurate._core.ClipBpe``) does the whole job for captions that are plain
printable ASCII without HTML entities, where every cleaning step is provably trivial; the others
are cleaned here with open_clip's very own functions (ftfy, ``html.unescape``, ``str.split``,
``str.lower``) and split with its own regex, because re-implementing ``ftfy`` or Python's notion
of whitespace and lower case for all of Unicode is where silent mismatches come from. Their
pieces then go through the same C++ BPE.

:class:`HFTokenizer` wraps any ``tokenizer.json`` (e.g. all-MiniLM-L6-v2's WordPiece) for text-only
encoders.

Thread safety: both classes are safe to call from several threads.
"""

from __future__ import annotations

import gzip
import html
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

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
    merges: List[Tuple[str, str]] = [(a, b) for a, b in (m.split() for m in lines[1 : 49152 - 256 - 2 + 1])]
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


def _load_bpe_tables(path: Path) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int, int, int]:
    """Byte symbols, merges (left, right, result ids in rank order) and specials of a CLIP tokenizer.json."""
    try:
        model = json.loads(path.read_text(encoding="utf-8"))["model"]
        vocab: Dict[str, int] = model["vocab"]
        raw_merges = model["merges"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{path} is not a tokenizers JSON file with a BPE model ({e}); re-export the bundle") from None
    if SOT not in vocab or EOT not in vocab:
        raise ModelError(f"{path} is not a CLIP tokenizer (no {SOT}/{EOT} tokens)")
    byte_chars = _bytes_to_unicode()
    try:
        byte_ids = np.array([vocab[byte_chars[b]] for b in range(256)], dtype=np.int32)
        byte_end_ids = np.array([vocab[byte_chars[b] + "</w>"] for b in range(256)], dtype=np.int32)
        # tokenizers writes a merge as "a b" (older versions) or ["a", "b"].
        pairs = [m.split(" ") if isinstance(m, str) else m for m in raw_merges]
        merges = np.array([(vocab[a], vocab[b], vocab[a + b]) for a, b in pairs], dtype=np.int32).reshape(-1, 3)
    except (KeyError, ValueError) as e:
        raise ModelError(f"{path}: the BPE merges use a token missing from the vocabulary ({e}); re-export the bundle") from None
    return byte_ids, byte_end_ids, merges, vocab[SOT], vocab[EOT], max(vocab.values()) + 1


def _texts_payload(texts: Any) -> Tuple[str, Any, int, Any]:
    """``(kind, payload, n, arrow)`` for the kernel: a list of str as is, Arrow string arrays zero-copy."""
    import pyarrow as pa

    from ..kernels._texts import _chunk_spec

    if isinstance(texts, str):
        raise InputTypeError("texts must be a sequence of str, got a single str; wrap it in a list")
    if isinstance(texts, (pa.Array, pa.ChunkedArray)):
        if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
            raise InputTypeError(
                f"texts is an Arrow array of type {texts.type}, expected string or large_string; "
                "cast it with arr.cast(pyarrow.string())"
            )
        chunks = texts.chunks if isinstance(texts, pa.ChunkedArray) else [texts]
        return "arrow", [_chunk_spec(c) for c in chunks], len(texts), texts
    if isinstance(texts, np.ndarray):
        if texts.ndim != 1:
            raise InputTypeError(f"texts must be one-dimensional, got a numpy array of shape {texts.shape}")
        texts = texts.tolist()
    elif not isinstance(texts, (list, tuple)):
        try:
            texts = list(texts)
        except TypeError:
            raise InputTypeError(f"texts is a {type(texts).__name__}; expected a sequence of str") from None
    return "list", texts, len(texts), None


class ClipTokenizer:
    """Exact, torch-free equivalent of ``open_clip.get_tokenizer(<a CLIP model>)``.

    ``tok(texts)`` returns int64 ids ``[n, context_length]`` zero-padded like open_clip;
    ``tok(texts, pad_to="longest")`` pads only to the longest row (for variable-length text towers;
    the ids of each row are unchanged). ``texts`` is a sequence of str or a pyarrow string array
    (read in place, without a copy).

    How: a C++ kernel (``fastcurate._core.ClipBpe``) tokenises every caption that is printable
    ASCII (tab and newline allowed) with no HTML entity, which ftfy and ``html.unescape`` provably
    leave alone: whitespace collapse, lower case, open_clip's split regex and the BPE merges, with a
    cache of each piece's ids. For the other captions the kernel also decides whether ftfy and
    ``html.unescape`` would change them (tables from :mod:`._ftfy_noop`); those they would not
    change skip ftfy. The rest are cleaned here with open_clip's own functions (ftfy,
    ``html.unescape``, ``str.split``, ``str.lower``) and split with its own regex; their pieces
    then go through the same C++ BPE and cache. See docs/embed.md for why each shortcut is exact.

    ``max_cache_words`` bounds the cache of BPE ids per piece (it is emptied when full, so memory
    stays bounded on endless streams; refilling costs one BPE per piece).

    Thread safety: safe to call from several threads (the kernel serialises calls on its cache).
    """

    def __init__(self, tokenizer_json: Union[str, Path], context_length: int = 77,
                 max_cache_words: int = 2_000_000) -> None:
        import regex

        from .. import _core

        path = Path(tokenizer_json)
        if not path.is_file():
            raise ModelError(f"tokenizer file {path} does not exist; re-export the bundle")
        self.context_length = int(context_length)
        if self.context_length < 2:
            raise ModelError(f"context_length must be >= 2, got {context_length}")
        byte_ids, byte_end_ids, merges, sot, eot, vocab_size = _load_bpe_tables(path)
        self._bpe = _core.ClipBpe(byte_ids, byte_end_ids, merges, sot, eot, vocab_size, max_cache_words)
        # Lets the kernel tell which non-ASCII captions ftfy would leave alone (built once per
        # process from the installed ftfy and unicodedata; None if ftfy is not a version it covers).
        from . import _ftfy_noop

        ft = _ftfy_noop.build()
        if ft is not None:
            self._bpe.set_ftfy_tables(ft.code_points, ft.unsafe, ft.ccc, ft.masks, ft.alt_offsets, ft.alt_items)
        self.sot_token_id = int(sot)
        self.eot_token_id = int(eot)
        # The pattern and flags of open_clip.tokenizer.SimpleTokenizer, verbatim.
        self._pat = regex.compile(
            SOT + "|" + EOT + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )

    @property
    def cache_words(self) -> int:
        """Number of pieces whose ids are cached."""
        return int(self._bpe.cache_words)

    def __call__(self, texts: Sequence[str], pad_to: Union[str, int, None] = None) -> np.ndarray:
        """Tokenise ``texts`` to an int64 array; ``pad_to`` is None (context length), "longest" or an int.

        Rows longer than the context are truncated as open_clip does (the last kept id becomes the
        end token); ``pad_to`` narrower than that is an error.
        """
        out, lengths = self._encode(texts)
        L = self.context_length
        if len(out) == 0:
            return out if pad_to is None else np.zeros((0, 2), dtype=np.int64)
        if pad_to is None:
            return out
        longest = int(lengths.max())
        if pad_to == "longest":
            return np.ascontiguousarray(out[:, :longest])
        width = int(pad_to)
        if width < longest:
            raise InputError(f"pad_to={width} is shorter than the longest tokenised text ({longest})")
        if width <= L:
            return np.ascontiguousarray(out[:, :width])
        return np.pad(out, ((0, 0), (0, width - L)))

    def _encode(self, texts: Any) -> Tuple[np.ndarray, np.ndarray]:
        """The [n, context_length] ids and each row's length (start and end tokens included)."""
        kind, payload, n, arrow = _texts_payload(texts)
        out = np.zeros((n, self.context_length), dtype=np.int64)
        if n == 0:
            return out, np.zeros(0, dtype=np.int32)
        lengths, status = self._bpe.tokenize(kind, payload, out, False)
        slow = np.flatnonzero(status)
        if slow.size:
            self._python_rows(slow, status, payload if arrow is None else arrow, out, lengths)
        return out, lengths

    def _python_rows(self, rows: np.ndarray, status: np.ndarray, source: Any, out: np.ndarray,
                     lengths: np.ndarray) -> None:
        """Rows the kernel left: open_clip's own cleaning and split here, then the kernel's BPE."""
        texts: List[str] = []
        for i in rows.tolist():
            if status[i] == 2:  # an Arrow null
                raise InputError(f"texts[{i}] is null; open_clip cannot tokenise None (fill nulls with '')")
            t = source[i]
            if not isinstance(t, str):  # an Arrow scalar
                try:
                    t = t.as_py()
                except UnicodeDecodeError as e:
                    raise InputError(f"texts[{i}] is not valid UTF-8 ({e}); repair the column first") from None
            if status[i] == 3:  # ftfy and html.unescape would return it unchanged
                texts.append(" ".join(t.split()).lower())
            else:
                texts.append(_clean_nolower(t).lower())
        L = self.context_length
        # Cleaning often leaves plain ASCII ("&amp;" -> "&"): the kernel finishes those rows.
        ascii_idx = [k for k, t in enumerate(texts) if t.isascii()]
        rest = set(range(len(texts)))
        if ascii_idx:
            sub = np.zeros((len(ascii_idx), L), dtype=np.int64)
            sub_len, sub_status = self._bpe.tokenize("list", [texts[k] for k in ascii_idx], sub, True)
            ok = sub_status == 0
            dst = rows[np.asarray(ascii_idx)[ok]]
            out[dst] = sub[ok]
            lengths[dst] = sub_len[ok]
            rest.difference_update(np.asarray(ascii_idx)[ok].tolist())
        if not rest:
            return
        order = sorted(rest)
        findall = self._pat.findall
        pieces = [findall(texts[k]) for k in order]
        offsets, ids = self._bpe.encode_words([w for ws in pieces for w in ws])
        w = 0
        cap = L - 2
        for k, ws in zip(order, pieces):
            a, b = int(offsets[w]), int(offsets[w + len(ws)])
            w += len(ws)
            take = min(b - a, cap)
            r = int(rows[k])
            out[r, 0] = self.sot_token_id
            out[r, 1 : 1 + take] = ids[a : a + take]
            out[r, 1 + take] = self.eot_token_id
            out[r, 2 + take :] = 0
            lengths[r] = take + 2

    def tokenize_with_lengths(self, texts: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
        """``(ids [n, context_length] int64, lengths [n] int32)``: each row's token count, start and end
        tokens included. Use the lengths, not a count of non-zero ids: id 0 is a real token."""
        return self._encode(texts)

    def encode_ids(self, texts: Sequence[str]) -> List[List[int]]:
        """Token ids of each text, with start/end tokens and truncation, unpadded."""
        out, lengths = self._encode(texts)
        # Lengths, not "ids != 0": id 0 is a real token (the byte "!" inside a piece).
        return [row[:k].tolist() for row, k in zip(out, lengths.tolist())]


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
