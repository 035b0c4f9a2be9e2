"""WordNet 3.0 through NLTK: wnid → synset, names, Wu-Palmer similarity.

ImageNet wnids are WordNet 3.0 noun offsets: ``"n01518878"`` is
``synset_from_pos_and_offset("n", 1518878)`` (ostrich). The corpus is found, in order:

1. NLTK's own data (``nltk.data.find("corpora/wordnet")``), when it is WordNet 3.0;
2. the copy of the system dictionary that an earlier process made loadable (step 4);
3. ``nltk.download("wordnet")`` (skipped when ``SBD_WORDNET_DOWNLOAD=0``; fails fast offline);
4. the system WordNet 3.0 dictionary (Debian ``wordnet-base`` + ``wordnet-sense-index``,
   ``/usr/share/wordnet``, or ``$WNSEARCHDIR``), copied once into
   ``$SBD_CACHE/nltk_data/corpora/wordnet`` (default ``~/.cache/sbd``) with the
   ``lexnames`` file NLTK needs and Debian lacks;
5. else :class:`WordNetNotFoundError` saying what to install.

The reader is loaded once per process (:func:`get_wordnet`).
"""

from __future__ import annotations

import functools
import io
import os
import re
import shutil
import socket
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = [
    "WordNetNotFoundError",
    "get_wordnet",
    "is_wnid",
    "synset",
    "wnid_of",
    "name",
    "lemmas",
    "wup",
    "wup_matrix",
    "cache_root",
]

WORDNET_VERSION = "3.0"
INSTALL_HINT = (
    "Install WordNet 3.0: `apt-get install wordnet-base wordnet-sense-index` (Debian/Ubuntu), "
    "or `python -m nltk.downloader wordnet` (needs internet)."
)

# The 45 lexicographer files of WordNet 3.0 (lexnames(5WN)): number, name, syntactic category.
_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_LEX_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}

# Files NLTK's WordNetCorpusReader opens (its _FILES, less lexnames, which we write).
_SYSTEM_FILES = (
    "data.noun", "data.verb", "data.adj", "data.adv",
    "index.noun", "index.verb", "index.adj", "index.adv",
    "noun.exc", "verb.exc", "adj.exc", "adv.exc",
    "index.sense", "cntlist.rev",
)
_SYSTEM_DIRS = ("/usr/share/wordnet", "/usr/local/share/wordnet", "/usr/share/wordnet/dict")

_WNID_RE = re.compile(r"^n\d{8}$")
_VERSION_RE = re.compile(r"Word[nN]et (\d+\.\d+) Copyright")

_LOCK = threading.RLock()  # NLTK's reader seeks shared file handles: one caller at a time
_READER = None


class WordNetNotFoundError(LookupError):
    """No WordNet 3.0 corpus could be found or made loadable."""


def cache_root() -> Path:
    """Root of sbd's NLTK data copy: ``$SBD_CACHE/nltk_data`` (default ``~/.cache/sbd``)."""
    base = os.environ.get("SBD_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sbd"
    )
    return Path(base) / "nltk_data"


def _lexnames_text() -> str:
    return "".join(
        f"{i:02d}\t{lex}\t{_LEX_CATEGORY[lex.split('.')[0]]}\n" for i, lex in enumerate(_LEXNAMES)
    )


def _version_of(data_adj_lines) -> str | None:
    """The WordNet version named in the licence header of ``data.adj``."""
    for i, line in enumerate(data_adj_lines):
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        match = _VERSION_RE.search(line)
        if match:
            return match.group(1)
        if i > 40:  # header is ~30 lines
            break
    return None


def _nltk_find():
    """NLTK's path pointer to ``corpora/wordnet`` if it holds WordNet 3.0, else None."""
    import nltk

    try:
        pointer = nltk.data.find("corpora/wordnet")
    except LookupError:
        return None
    try:
        with pointer.join("data.adj").open() as fh:
            version = _version_of(fh)
    except Exception:  # unreadable/incomplete corpus: treat as absent
        return None
    if version != WORDNET_VERSION:
        warnings.warn(
            f"NLTK's corpora/wordnet at {pointer} is WordNet {version}, not {WORDNET_VERSION}; "
            "ImageNet wnids are WordNet 3.0 offsets, so it is not used.",
            stacklevel=3,
        )
        return None
    return pointer


def _add_to_nltk_path(root: Path) -> None:
    import nltk

    root_s = str(root)
    if root_s not in nltk.data.path:
        nltk.data.path.insert(0, root_s)


def _cached_copy_ok(target: Path) -> bool:
    return all((target / f).is_file() for f in (*_SYSTEM_FILES, "lexnames"))


def _try_download(timeout: float = 10.0) -> bool:
    """``nltk.download("wordnet")``; False on any failure (offline, refused, slow)."""
    if os.environ.get("SBD_WORDNET_DOWNLOAD", "1").strip().lower() in ("0", "false", "no"):
        return False
    import nltk

    old = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(timeout)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(
                nltk.download(
                    "wordnet", quiet=True, raise_on_error=False, print_error_to=io.StringIO()
                )
            )
    except BaseException as exc:  # noqa: BLE001 - any failure means "not available"
        if isinstance(exc, KeyboardInterrupt):
            raise
        return False
    finally:
        socket.setdefaulttimeout(old)


def _system_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("WNSEARCHDIR"):
        dirs.append(Path(os.environ["WNSEARCHDIR"]))
    dirs.extend(Path(d) for d in _SYSTEM_DIRS)
    return dirs


def _find_system_dict() -> tuple[Path | None, list[str]]:
    """A system WordNet 3.0 dictionary folder, and notes on the folders rejected."""
    notes = []
    for d in _system_dirs():
        if not (d / "data.adj").is_file():
            continue
        with open(d / "data.adj", "rb") as fh:
            version = _version_of(fh)
        if version != WORDNET_VERSION:
            notes.append(f"{d} is WordNet {version}, not {WORDNET_VERSION}")
            continue
        missing = [f for f in _SYSTEM_FILES if not (d / f).is_file()]
        if missing:
            notes.append(f"{d} lacks {', '.join(missing)}")
            continue
        return d, notes
    return None, notes


def _install_system_copy(source: Path, root: Path) -> Path:
    """Copy ``source`` into ``root/corpora/wordnet`` (temp folder, then rename) + lexnames."""
    corpora = root / "corpora"
    target = corpora / "wordnet"
    corpora.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=corpora))
    try:
        for f in _SYSTEM_FILES:
            shutil.copyfile(source / f, tmp / f)
        (tmp / "lexnames").write_text(_lexnames_text())
        (tmp / "SOURCE").write_text(f"copied by sbd from {source}\n")
        os.chmod(tmp, 0o755)
        if target.exists() and not _cached_copy_ok(target):
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not _cached_copy_ok(target):  # not a concurrent copy that won the race
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _locate():
    """NLTK path pointer to a WordNet 3.0 corpus, resolving as the module docstring says."""
    pointer = _nltk_find()
    if pointer is not None:
        return pointer
    root = cache_root()
    if _cached_copy_ok(root / "corpora" / "wordnet"):
        _add_to_nltk_path(root)
        pointer = _nltk_find()
        if pointer is not None:
            return pointer
    if _try_download():
        pointer = _nltk_find()
        if pointer is not None:
            return pointer
    source, notes = _find_system_dict()
    if source is not None:
        try:
            _install_system_copy(source, root)
        except OSError as exc:
            raise WordNetNotFoundError(
                f"Found the system WordNet 3.0 in {source} but could not copy it to {root} "
                f"({exc}); set SBD_CACHE to a writable folder."
            ) from exc
        _add_to_nltk_path(root)
        pointer = _nltk_find()
        if pointer is not None:
            return pointer
        notes.append(f"the copy in {root / 'corpora' / 'wordnet'} did not load")
    searched = ", ".join(str(d) for d in _system_dirs())
    detail = ("; ".join(notes) + ". ") if notes else ""
    raise WordNetNotFoundError(
        "WordNet 3.0 not found: not in NLTK's data path, not downloadable, "
        f"not in {searched}. {detail}{INSTALL_HINT}"
    )


def _reader_class():
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class _WordNet30Reader(WordNetCorpusReader):
        """NLTK's reader; the WordNet 3.0 → 3.0 map for OMW data is the identity.

        NLTK builds that map from two passes over ``index.sense`` (~10 s): skipped.
        """

        def map_wn(self, version="wordnet"):
            if self.get_version() == WORDNET_VERSION:
                return None
            return super().map_wn(version)

    return _WordNet30Reader


def get_wordnet():
    """The WordNet 3.0 ``WordNetCorpusReader``, loaded once per process.

    Raises
    ------
    WordNetNotFoundError
        When no WordNet 3.0 is available; the message says what to install.
    """
    global _READER
    if _READER is None:
        with _LOCK:
            if _READER is None:
                pointer = _locate()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "multilingual functions not available"
                    reader = _reader_class()(pointer, None)
                version = reader.get_version()
                if version != WORDNET_VERSION:
                    raise WordNetNotFoundError(
                        f"{pointer} is WordNet {version}, not {WORDNET_VERSION}. {INSTALL_HINT}"
                    )
                _READER = reader
    return _READER


def is_wnid(s: object) -> bool:
    """True when ``s`` is a well-formed noun wnid: ``"n"`` + 8 digits (not checked to exist)."""
    return isinstance(s, str) and _WNID_RE.match(s) is not None


@functools.lru_cache(maxsize=None)
def _synset_cached(wnid: str):
    wn = get_wordnet()
    with _LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NLTK warns and returns None for unknown offsets
        ss = wn.synset_from_pos_and_offset("n", int(wnid[1:]))
    if ss is None:
        raise ValueError(f"Unknown wnid={wnid!r}: no WordNet 3.0 noun synset at that offset.")
    return ss


def synset(wnid: str):
    """The NLTK ``Synset`` of a wnid (``"n02084071"`` → ``Synset('dog.n.01')``).

    Raises
    ------
    ValueError
        When ``wnid`` is malformed or names no WordNet 3.0 noun synset.
    """
    if not is_wnid(wnid):
        raise ValueError(
            f"Malformed wnid={wnid!r}; expected 'n' followed by 8 digits, e.g. 'n01518878'."
        )
    return _synset_cached(wnid)


def wnid_of(ss) -> str:
    """The wnid of a noun synset, given as a ``Synset`` or a name like ``"dog.n.01"``."""
    if isinstance(ss, str):
        wn = get_wordnet()
        try:
            with _LOCK:
                ss = wn.synset(ss)
        except Exception as exc:  # nltk raises WordNetError / ValueError
            raise ValueError(f"Unknown synset name={ss!r}: {exc}") from exc
    try:
        pos, offset = ss.pos(), ss.offset()
    except AttributeError:
        raise ValueError(f"Not a synset: {ss!r}.") from None
    if pos != "n":
        raise ValueError(f"Synset {ss.name()!r} is not a noun (pos={pos!r}); wnids are nouns.")
    return f"n{offset:08d}"


def lemmas(wnid: str) -> list[str]:
    """The lemma names of a wnid, underscores replaced by spaces (``"domestic dog"``)."""
    ss = synset(wnid)
    with _LOCK:
        names = ss.lemma_names()
    return [n.replace("_", " ") for n in names]


def name(wnid: str) -> str:
    """The first lemma of a wnid, underscores replaced by spaces (``"n02084071"`` → ``"dog"``)."""
    return lemmas(wnid)[0]


@functools.lru_cache(maxsize=None)
def _ancestors(wnid: str) -> dict:
    """``{ancestor offset: shortest number of hypernym edges}`` of a noun, itself included."""
    ss = synset(wnid)
    out: dict = {}
    queue = [(ss, 0)]
    with _LOCK:
        while queue:  # breadth first, as NLTK's Synset._shortest_hypernym_paths
            nxt = []
            for s, d in queue:
                if s.offset() in out:
                    continue
                out[s.offset()] = d
                nxt.extend((h, d + 1) for h in s.hypernyms() + s.instance_hypernyms())
            queue = nxt
    return out


@functools.lru_cache(maxsize=None)
def _depths(offset: int) -> tuple[int, int, str]:
    """``(min_depth, max_depth, name)`` of the noun synset at ``offset``."""
    ss = _synset_cached(f"n{offset:08d}")
    with _LOCK:
        return ss.min_depth(), ss.max_depth(), ss.name()


def _path_len(anc_a: dict, anc_s: dict) -> int:
    """NLTK's ``shortest_path_distance`` of two nouns from their ancestor maps."""
    return min(da + anc_s[o] for o, da in anc_a.items() if o in anc_s)


@functools.lru_cache(maxsize=1 << 20)
def _wup_cached(a: str, b: str) -> float:
    """NLTK's ``Synset.wup_similarity`` of two nouns (no simulated root), from cached maps.

    Same steps as NLTK: the common hypernyms of greatest *min* depth, the name-sorted first
    (or ``a`` itself) as subsumer, depth = its max depth + 1, path lengths to it.
    """
    anc_a, anc_b = _ancestors(a), _ancestors(b)
    common = anc_a.keys() & anc_b.keys()
    if not common:
        return 0.0  # unreachable for WordNet 3.0 nouns (single root entity.n.01)
    deepest = max(_depths(o)[0] for o in common)
    subsumers = sorted((o for o in common if _depths(o)[0] == deepest), key=lambda o: _depths(o)[2])
    off_a, off_b = int(a[1:]), int(b[1:])
    sub = off_a if off_a in subsumers else subsumers[0]
    depth = _depths(sub)[1] + 1
    anc_sub = _ancestors(f"n{sub:08d}")
    len1 = 0 if off_a == sub else _path_len(anc_a, anc_sub)
    len2 = 0 if off_b == sub else _path_len(anc_b, anc_sub)
    return (2.0 * depth) / (len1 + len2 + 2 * depth)


def wup(wnid_a: str, wnid_b: str) -> float:
    """Wu-Palmer similarity of two wnids, equal to NLTK's ``Synset.wup_similarity``.

    Computed from per-synset cached hypernym maps (~20x faster than NLTK's, same values).
    Like NLTK (which picks the subsumer by *minimum* depth, as NLTK 2 did), a wnid compared
    with itself can score below 1: ``wup("n02084071", "n02084071")`` is 0.9286 (dog).

    Returns
    -------
    float
        In (0, 1].

    Raises
    ------
    ValueError
        When either wnid is malformed or unknown.
    """
    synset(wnid_a)
    synset(wnid_b)  # validate both before the cache sees them
    return _wup_cached(wnid_a, wnid_b)


def wup_matrix(wnids_a: Sequence[str], wnids_b: Sequence[str]) -> np.ndarray:
    """Wu-Palmer similarity of every pair.

    Parameters
    ----------
    wnids_a, wnids_b : sequence of str, lengths n and m

    Returns
    -------
    ndarray, shape (n, m), float64
    """
    for w in (*wnids_a, *wnids_b):
        synset(w)
    out = np.empty((len(wnids_a), len(wnids_b)), dtype=np.float64)
    for i, a in enumerate(wnids_a):
        for j, b in enumerate(wnids_b):
            out[i, j] = _wup_cached(a, b)
    return out
