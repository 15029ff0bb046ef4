"""Hybrid retrieval over the knowledge base's passages: BM25 and MiniLM, fused.

The index (passage and article vectors, the passages' token vectors, two BM25 indexes)
is built from the database and cached per process; it is rebuilt only when the cheap
signature query (count, max updated_at, max embedded_at of the retrievable articles)
changes, and in a server that query runs at most every ``KNOWLEDGE_REFRESH_SECONDS``,
not per question. Searching (``knowledge_search``) does no database access.

Ranking a question (``knowledge_search``):

1. candidates: the best ``CANDIDATES`` passages by MiniLM cosine and by BM25 (stemmed,
   English stop words), together;
2. five signals per candidate, each standardised over the candidates (z-score) and
   summed: the passage's cosine, the passage's BM25, its article's cosine, its
   article's BM25, and late interaction (each question token matched with its closest
   token of the passage, MiniLM's contextual token vectors, averaged); plus
   ``CODE_BOOST`` when the question names an error code its article's title names;
3. passages in that order, at most ``PER_ARTICLE`` per article: the first one is the
   passage that answers, its article the one cited first.

Whether the knowledge base answers at all is a separate, calibrated decision
(``RetrievalCalibration``): a logistic model over absolute signals (the best cosine,
BM25 and late-interaction scores, how many signals agree on the article, the fused
margin) fitted on the dev questions by ``manage.py assistant_eval --calibrate``.
"""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import Stemmer
from bm25s.stopwords import STOPWORDS_EN
from django.conf import settings

from chat.assistant.contract import (
    BAND_CONFIDENT,
    BAND_DONT_KNOW,
    BAND_HEDGED,
    Passage,
    Retrieval,
)
from chat.assistant.embeddings import Encoding, blas_threads_limit
from chat.assistant.passages import passage_document
from chat.assistant.refreshing import Refreshed
from chat.models import Article
from chat.selectors import (
    article_passages_retrievable,
    articles_retrievable,
    articles_retrievable_signature,
)

CANDIDATES = 20
# Later passages are cited only when their fused score is at least this share of the
# first's (on the dev questions: 1.9 sources per answer instead of 3, the right article
# among them 90.5% instead of 93.1%, wrong extra sources 137 instead of 464).
CITE_RELATIVE = 0.7
# Weights of the standardised signals: passage cosine, passage BM25, article cosine,
# article BM25, late interaction.
SIGNAL_WEIGHTS = (0.5, 1.0, 1.0, 1.0, 1.5)
PER_ARTICLE = 2
CODE_BOOST = 4.0  # in z-score units of the fused score: a code named in both decides
CALIBRATION_PATH = Path(__file__).with_name("retrieval_calibration.json")


def labels_text(labels: str | list[str]) -> str:
    """Search labels (one per line in the database, a list in the demo JSON) as one line."""
    items = labels.splitlines() if isinstance(labels, str) else labels
    return "; ".join(item.strip() for item in items if item.strip())


def article_text(*, title: str, body: str, labels: str | list[str] = "") -> str:
    """The text an article is embedded and BM25-indexed as: title, body, and the search
    labels (customer words the article does not use) last."""
    extra = labels_text(labels)
    return f"{title}\n\n{body}" + (f"\n\n{extra}" if extra else "")


def article_document(article: Article) -> str:
    """The text an article is embedded as."""
    return article_text(title=article.title, body=article.body, labels=article.search_labels)


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    return Stemmer.Stemmer("english")


# bm25s.tokenize's defaults, applied the same way to documents (by bm25s when indexing)
# and to questions (here, without building a vocabulary per question).
_WORD = re.compile(r"(?u)\b\w\w+\b")


def bm25_tokens(texts: list[str]) -> list[list[str]]:
    """Lower-cased, stemmed words without English stop words (codes like e21 kept), as
    ``bm25s.tokenize`` splits documents."""
    stemmer = _stemmer()
    return [
        stemmer.stemWords([w for w in _WORD.findall(text.lower()) if w not in STOPWORDS_EN])
        for text in texts
    ]


def _bm25(documents: list[str]) -> bm25s.BM25 | None:
    if not documents:
        return None
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize(documents, stopwords="en", stemmer=_stemmer(), show_progress=False),
        show_progress=False,
    )
    return retriever


def bm25_scores(retriever: bm25s.BM25 | None, tokens: list[str], size: int) -> np.ndarray:
    """BM25 of ``tokens`` (``bm25_tokens``) against every document of ``retriever``, zeros
    when it knows none of them."""
    known = [t for t in tokens if retriever is not None and t in retriever.vocab_dict]
    if retriever is None or not known:
        return np.zeros(size, dtype=np.float32)
    return np.asarray(retriever.get_scores(known), dtype=np.float32)


@dataclass(frozen=True)
class KnowledgeIndex:
    signature: tuple[Any, ...]
    # Articles.
    slugs: list[str]
    titles: list[str]
    article_matrix: np.ndarray  # (m, dim), unit rows
    article_bm25: bm25s.BM25 | None
    # Passages, article by article in reading order.
    passage_article: np.ndarray  # (n,) row of the passage's article
    anchors: list[str]
    texts: list[str]
    passage_matrix: np.ndarray  # (n, dim), unit rows
    passage_bm25: bm25s.BM25 | None
    tokens: np.ndarray  # (t, dim) float32, the passages' token vectors one after another
    token_offsets: np.ndarray  # (n + 1,) passage i's tokens are tokens[off[i]:off[i+1]]
    token_passage: np.ndarray  # (t,) the passage of each token
    article_codes: list[frozenset[str]] = field(default_factory=list)
    # Error codes named anywhere in the knowledge base (titles, bodies, labels), and their
    # letter prefixes ("e" for E11 ... E52): a question naming another code of a known
    # family asks about something no article covers.
    known_codes: frozenset[str] = frozenset()
    code_families: frozenset[str] = frozenset()
    # Each word of the articles (stemmed as BM25 reads them: titles, bodies, search
    # labels) and its inverse document frequency over the articles (``_unseen``).
    term_idf: dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.anchors)


_indexes: dict[str, KnowledgeIndex] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class IndexedArticle:
    slug: str
    title: str
    body: str
    vector: list[float] | np.ndarray
    labels: str | list[str] = ""


@dataclass(frozen=True)
class IndexedPassage:
    slug: str  # its article's
    anchor: str
    heading: str
    text: str
    vector: list[float] | np.ndarray
    tokens: bytes | memoryview | np.ndarray  # float16 bytes as stored, or an array


def index_build(
    *, signature: tuple[Any, ...], articles: list[IndexedArticle], passages: list[IndexedPassage]
) -> KnowledgeIndex:
    """An index from articles and their passages (passages of unknown articles, and
    vectors of another size than the articles', are left out)."""
    blas_threads_limit()
    dims = {len(a.vector) for a in articles}
    dim = max(dims) if dims else 0
    articles = [a for a in articles if len(a.vector) == dim]
    row_of = {a.slug: i for i, a in enumerate(articles)}
    passages = [p for p in passages if p.slug in row_of and len(p.vector) == dim]
    token_blocks = [
        (
            np.frombuffer(bytes(p.tokens), dtype=np.float16)
            if isinstance(p.tokens, bytes | memoryview)
            else np.asarray(p.tokens, dtype=np.float16)
        ).reshape(-1, dim)
        if dim
        else np.zeros((0, 0), dtype=np.float16)
        for p in passages
    ]
    titles = [a.title for a in articles]
    labels = [labels_text(a.labels) for a in articles]
    article_documents = [
        article_text(title=a.title, body=a.body, labels=a.labels) for a in articles
    ]
    known = {
        code
        for a, extra in zip(articles, labels, strict=True)
        for code in error_codes(f"{a.title} {a.body} {extra}")
    }
    return KnowledgeIndex(
        signature=signature,
        slugs=[a.slug for a in articles],
        titles=titles,
        article_matrix=np.asarray([a.vector for a in articles], dtype=np.float32).reshape(
            len(articles), dim
        ),
        article_bm25=_bm25(article_documents),
        passage_article=np.asarray([row_of[p.slug] for p in passages], dtype=np.int64),
        anchors=[p.anchor for p in passages],
        texts=[p.text for p in passages],
        passage_matrix=np.asarray([p.vector for p in passages], dtype=np.float32).reshape(
            len(passages), dim
        ),
        # A passage's BM25 text carries its article's search labels too: a customer's word
        # for the subject ("thermostat") then finds the passage that answers (on the dev
        # questions the ranking's top 1 went from 84.9% to 86.7% with this).
        passage_bm25=_bm25(
            [
                passage_document(title=titles[row_of[p.slug]], heading=p.heading, text=p.text)
                + (f"\n{labels[row_of[p.slug]]}" if labels[row_of[p.slug]] else "")
                for p in passages
            ]
        ),
        tokens=(
            np.concatenate(token_blocks).astype(np.float32)
            if token_blocks
            else np.zeros((0, dim), dtype=np.float32)
        ),
        token_offsets=np.cumsum([0, *(len(block) for block in token_blocks)]),
        token_passage=np.repeat(
            np.arange(len(token_blocks)), [len(block) for block in token_blocks]
        ).astype(np.int64),
        article_codes=[frozenset(code_words(title)) for title in titles],
        known_codes=frozenset(known),
        code_families=frozenset(code.rstrip("0123456789") for code in known),
        term_idf=_idf([frozenset(t) for t in bm25_tokens(article_documents)]),
    )


def _idf(documents: list[frozenset[str]]) -> dict[str, float]:
    """Each word's inverse document frequency over ``documents`` (BM25's, Lucene form)."""
    frequency: dict[str, int] = {}
    for terms in documents:
        for term in terms:
            frequency[term] = frequency.get(term, 0) + 1
    n = len(documents)
    return {t: math.log(1 + (n - df + 0.5) / (df + 0.5)) for t, df in frequency.items()}


def knowledge_index(*, embedding_model: str) -> KnowledgeIndex:
    """The index of published articles embedded with ``embedding_model`` (two queries
    when it must be rebuilt, one signature query otherwise)."""
    blas_threads_limit()
    signature = articles_retrievable_signature(embedding_model=embedding_model)
    index = _indexes.get(embedding_model)
    if index is not None and index.signature == signature:
        return index
    with _lock:
        articles = [
            IndexedArticle(slug=slug, title=title, body=body, vector=vector, labels=labels)
            for slug, title, body, labels, vector in articles_retrievable(
                embedding_model=embedding_model
            )
            .order_by("pk")
            .values_list("slug", "title", "body", "search_labels", "embedding")
            if isinstance(vector, list)
        ]
        rows = list(
            article_passages_retrievable(embedding_model=embedding_model).values_list(
                "article__slug",
                "anchor",
                "heading",
                "text",
                "embedding",
                "token_vectors",
                "sentence_vectors",
            )
        )
        passages = [
            IndexedPassage(
                slug=slug, anchor=anchor, heading=heading, text=text, vector=vector, tokens=tokens
            )
            for slug, anchor, heading, text, vector, tokens, _ in rows
            if isinstance(vector, list)
        ]
        index = index_build(signature=signature, articles=articles, passages=passages)
        # The answer model's sentence vectors, stored at indexing: no process computes
        # them at start or during a customer's turn.
        from chat.assistant.local_model import sentence_vectors_seed

        sentence_vectors_seed([(row[3], bytes(row[6])) for row in rows])
        _indexes[embedding_model] = index
        return index


_current_index: Refreshed[KnowledgeIndex] = Refreshed(
    knowledge_index, interval=lambda: float(settings.KNOWLEDGE_REFRESH_SECONDS)
)


async def knowledge_index_current(*, embedding_model: str) -> KnowledgeIndex:
    """The index for ``embedding_model``, re-checked against the database at most every
    ``KNOWLEDGE_REFRESH_SECONDS`` (an edit or a publication shows within that time)."""
    return await _current_index.current(embedding_model=embedding_model)


# Codes like "E21" or "E52": sentence embeddings barely tell them apart, titles name them.
_CODE = re.compile(r"\b(?=\w*\d)(?=\w*[a-z])\w{2,8}\b")


def code_words(text: str) -> set[str]:
    """The code-like words of a text ("e21", "wifi6"): a question naming one an article's
    title names gets the title boost (``CODE_BOOST``)."""
    return set(_CODE.findall(text.lower()))


# Error codes proper: one or two letters and one to three digits ("E12", "e-12", "F3").
_ERROR_CODE = re.compile(r"\b([a-z]{1,2})-?(\d{1,3})\b")


def error_codes(text: str) -> set[str]:
    """The error codes a text names, normalised ("E-12" -> "e12")."""
    return {letters + digits for letters, digits in _ERROR_CODE.findall(text.lower())}


def unknown_codes(index: KnowledgeIndex, text: str) -> set[str]:
    """Codes of a family the knowledge base uses (same letters) that no article names."""
    return {
        code
        for code in error_codes(text)
        if code not in index.known_codes and code.rstrip("0123456789") in index.code_families
    }


def _standardised(values: np.ndarray) -> np.ndarray:
    spread = float(values.std())
    if spread < 1e-6:
        return np.zeros_like(values)
    return (values - float(values.mean())) / spread


def _content_tokens(query: Encoding) -> np.ndarray | None:
    """The question's token vectors without stop words (all of them if nothing is left)."""
    if query.tokens is None or not len(query.tokens):
        return None
    tokens = np.asarray(query.tokens, dtype=np.float32)
    if query.content is not None and query.content.any():
        tokens = tokens[np.asarray(query.content, dtype=bool)]
    return tokens


def passage_tokens(encoding: Encoding) -> np.ndarray | None:
    """The token vectors kept for a passage: its content words only (stop words and
    punctuation never decide a match, and the product below is a third smaller)."""
    if encoding.tokens is None:
        return None
    tokens = np.asarray(encoding.tokens, dtype=np.float32)
    if encoding.content is not None and np.asarray(encoding.content).any():
        tokens = tokens[np.asarray(encoding.content, dtype=bool)]
    return tokens


def _token_matches(
    index: KnowledgeIndex, passages: np.ndarray, query_tokens: np.ndarray
) -> np.ndarray:
    """(passages, question tokens): each question token's best cosine with a token of
    each of ``passages`` (sorted passage rows; MaxSim over MiniLM's contextual token
    vectors)."""
    best = np.full((len(passages), len(query_tokens)), -1.0, dtype=np.float32)
    # The passages' token rows, passage by passage, from the offsets (rather than
    # searching every token's passage: a fifth of a question's retrieval).
    first = index.token_offsets[passages]
    lengths = index.token_offsets[passages + 1] - first
    total = int(lengths.sum())
    if not total:
        return best
    block_starts = np.cumsum(lengths) - lengths  # each passage's first row in ``rows``
    rows = np.arange(total) + np.repeat(first - block_starts, lengths)
    similarities = index.tokens[rows] @ query_tokens.T  # (passage tokens, question tokens)
    present = lengths > 0
    best[present] = np.maximum.reduceat(similarities, block_starts[present], axis=0)
    return best


@dataclass(frozen=True)
class RetrievalSignals:
    """Absolute evidence that the knowledge base answers the question (the inputs of the
    calibrated "I don't know")."""

    dense: float  # best passage cosine
    article_dense: float  # best article cosine
    bm25: float  # best passage BM25
    late: float  # best late-interaction score (0 without token vectors)
    agreement: float  # share of the signals whose best article is the one cited first
    margin: float  # fused score of the first article minus the second's
    # Mean of the two question words matched worst anywhere in the first article: a
    # question about something the article never mentions ("Alexa") scores low here.
    weakest: float = 0.0
    words: int = 0  # the question's content words
    # The share of the question's words (stemmed, weighted by their rarity) that no
    # article uses at all: "can I pay in bitcoin" asks about something the knowledge base
    # never mentions, however close "pay" brings the payment article.
    unseen: float = 0.0
    # The question names an error code that no article names (not a calibration input:
    # the answer is "don't know" whatever the other signals say).
    unknown_code: bool = False

    def values(self) -> dict[str, float]:
        """Every candidate input of the calibration, by name."""
        return {
            "dense": self.dense,
            "article_dense": self.article_dense,
            "log1p_bm25": math.log1p(max(self.bm25, 0.0)),
            "late": self.late,
            "agreement": self.agreement,
            "margin": self.margin,
            "weakest": self.weakest,
            "log1p_words": math.log1p(self.words),
            "unseen": self.unseen,
        }

    def features(self) -> list[float]:
        """The calibration's inputs (``FEATURE_NAMES``), in order."""
        values = self.values()
        return [values[name] for name in FEATURE_NAMES]


# The calibration's inputs (``RetrievalSignals.values``; docs/assistant.md says how they
# were chosen).
FEATURE_NAMES = [
    "dense",
    "article_dense",
    "log1p_bm25",
    "late",
    "agreement",
    "margin",
    "weakest",
    "unseen",
]


@dataclass(frozen=True)
class Ranking:
    passages: list[Passage]
    signals: RetrievalSignals


def knowledge_search(
    *, index: KnowledgeIndex, query: Encoding, query_text: str, top_k: int
) -> Ranking:
    """The best ``top_k`` passages for a question, the answering one first (at most
    ``PER_ARTICLE`` per article), and the signals for the no-answer decision. No database
    access. ``Passage.score`` is the passage's fused score (z-score units)."""
    empty = Ranking(passages=[], signals=RetrievalSignals(0.0, 0.0, 0.0, 0.0, 0.0, 0.0))
    vector = np.asarray(query.vector, dtype=np.float32)
    if not index.size or index.passage_matrix.shape[1] != vector.shape[-1]:
        return empty
    tokens = bm25_tokens([query_text])[0] if query_text.strip() else []
    dense = index.passage_matrix @ vector
    bm25 = bm25_scores(index.passage_bm25, tokens, index.size)
    article_dense = index.article_matrix @ vector
    article_bm25 = bm25_scores(index.article_bm25, tokens, len(index.slugs))
    take = min(CANDIDATES, index.size)
    candidates = np.union1d(np.argsort(-dense)[:take], np.argsort(-bm25)[:take])
    owner = index.passage_article[candidates]
    signals = [
        dense[candidates],
        bm25[candidates],
        article_dense[owner],
        article_bm25[owner],
    ]
    # Late interaction: each question word's best match in the passage, averaged.
    late = np.zeros(len(candidates), dtype=np.float32)
    query_tokens = _content_tokens(query)
    if query_tokens is not None and len(index.tokens):
        late = _token_matches(index, candidates, query_tokens).mean(axis=1)
        signals.append(late)
    fused = np.sum(
        [w * _standardised(s) for w, s in zip(SIGNAL_WEIGHTS, signals, strict=False)], axis=0
    )
    codes = code_words(query_text)
    if codes:
        fused = fused + np.asarray(
            [CODE_BOOST if codes & index.article_codes[a] else 0.0 for a in owner]
        )
    order = np.argsort(-fused, kind="stable")
    picked: list[int] = []
    per_article: dict[int, int] = {}
    for i in order:
        article = int(owner[i])
        if per_article.get(article, 0) >= PER_ARTICLE:
            continue
        per_article[article] = per_article.get(article, 0) + 1
        picked.append(int(i))
        if len(picked) >= top_k:
            break
    first_article = int(owner[order[0]])
    weakest = 0.0
    if query_tokens is not None and len(index.tokens):
        # The two question words matched worst anywhere in the first article.
        own = np.flatnonzero(index.passage_article == first_article)
        in_article = _token_matches(index, own, query_tokens).max(axis=0)
        weakest = float(np.sort(in_article)[:2].mean())
    others = [fused[i] for i in order if owner[i] != first_article]
    votes = [int(owner[int(np.argmax(s))]) == first_article for s in signals]
    passages = [
        Passage(
            slug=index.slugs[owner[i]],
            title=index.titles[owner[i]],
            text=index.texts[candidates[i]],
            score=round(float(fused[i]), 4),
            anchor=index.anchors[candidates[i]],
        )
        for i in picked
    ]
    return Ranking(
        passages=passages,
        signals=RetrievalSignals(
            dense=float(dense.max()),
            article_dense=float(article_dense.max()),
            bm25=float(bm25.max()),
            late=float(late.max()) if len(late) else 0.0,
            agreement=sum(votes) / len(votes),
            margin=float(fused[order[0]] - (others[0] if others else 0.0)),
            weakest=weakest,
            words=len(tokens),
            unknown_code=bool(unknown_codes(index, query_text)),
            unseen=_unseen(index, tokens),
        ),
    )


# Pieces of contractions that the word pattern leaves ("doesn't" -> "doesn") and
# apostrophe-less spellings: they say nothing about the subject.
_CONTRACTIONS = frozenset(
    [
        "doesn",
        "isn",
        "don",
        "didn",
        "wasn",
        "aren",
        "weren",
        "couldn",
        "shouldn",
        "wouldn",
        "haven",
        "hasn",
        "hadn",
        "won",
        "ain",
        "ve",
        "ll",
        "re",
        "im",
        "ive",
        "id",
        "youre",
        "dont",
        "doesnt",
        "didnt",
        "isnt",
        "cant",
        "wont",
        "wasnt",
        "arent",
        "havent",
    ]
)
_PARTS = re.compile(r"[a-z]+|\d+")


def _seen(index: KnowledgeIndex, word: str) -> bool:
    """An article uses ``word``, or its letters apart from its digits ("5ghz" when the
    articles write "5 GHz"); numbers alone and contraction pieces count as used."""
    if word in index.term_idf or word in _CONTRACTIONS:
        return True
    letters = [part for part in _PARTS.findall(word) if not part.isdigit()]
    return all(index.term_idf.get(part) is not None or len(part) < 2 for part in letters)


def _unseen(index: KnowledgeIndex, tokens: list[str]) -> float:
    """The IDF-weighted share of the question's distinct stemmed words that no article
    uses (``RetrievalSignals.unseen``); an unused word weighs as much as a word used by
    no article would (the highest IDF there is)."""
    words = set(tokens)
    if not words or not index.term_idf:
        return 0.0
    never = math.log(1 + (len(index.slugs) + 0.5) / 0.5)
    unseen = {w for w in words if not _seen(index, w)}
    total = sum(index.term_idf.get(w, never) for w in words - unseen) + never * len(unseen)
    return never * len(unseen) / total


# --- the calibrated "I don't know" ----------------------------------------------------------


@dataclass(frozen=True)
class RetrievalCalibration:
    """A logistic model of "the first article cited is the right one" over
    ``RetrievalSignals``, and the confidence below which the assistant says it does not
    know. Fitted for one embedding model (its signals mean nothing for another)."""

    embedding_model: str
    weights: list[float]
    bias: float
    threshold: float
    fitted_on: str = ""
    features: list[str] = field(default_factory=lambda: list(FEATURE_NAMES))
    # The lower end of the hedged band (None: no band, below ``threshold`` is "don't know").
    hedge_threshold: float | None = None

    def confidence(self, signals: RetrievalSignals) -> float:
        z = self.bias + sum(w * x for w, x in zip(self.weights, signals.features(), strict=True))
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    def save(self, path: Path = CALIBRATION_PATH) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


_calibrations: dict[Path, RetrievalCalibration | None] = {}


def calibration_current(*, embedding_model: str) -> RetrievalCalibration | None:
    """The shipped calibration if it was fitted for ``embedding_model``, else None."""
    if CALIBRATION_PATH not in _calibrations:
        try:
            raw = json.loads(CALIBRATION_PATH.read_text())
            _calibrations[CALIBRATION_PATH] = RetrievalCalibration(**raw)
        except (OSError, ValueError, TypeError):
            _calibrations[CALIBRATION_PATH] = None
    calibration = _calibrations[CALIBRATION_PATH]
    if (
        calibration is None
        or calibration.embedding_model != embedding_model
        or calibration.features != FEATURE_NAMES  # fitted on other signals: refit it
    ):
        return None
    return calibration


def calibration_forget() -> None:
    """Re-read the calibration file on next use (after ``assistant_eval --calibrate``)."""
    _calibrations.clear()


def answer_confidence(
    *, signals: RetrievalSignals, embedding_model: str
) -> tuple[float, float, float | None]:
    """(confidence, threshold, hedge threshold): the assistant answers when confidence >=
    threshold, and hedges (cites the closest article, says it is not sure, offers a
    person) when it is below but at least the hedge threshold (None: no hedged band).

    With a calibration for this embedding model, the calibrated probability and its
    thresholds; otherwise (another embedder, e.g. Bedrock's) the best passage cosine
    against ``ASSISTANT_MIN_RETRIEVAL_SCORE``, without a hedged band.
    """
    calibration = calibration_current(embedding_model=embedding_model)
    if calibration is None:
        return signals.dense, float(settings.ASSISTANT_MIN_RETRIEVAL_SCORE), None
    return calibration.confidence(signals), calibration.threshold, calibration.hedge_threshold


def _cited(passages: list[Passage]) -> list[Passage]:
    """The first passage, and the next ones whose fused score is at least
    ``CITE_RELATIVE`` of the first's (a weak third source only confuses the customer)."""
    first = passages[0].score
    return [passages[0]] + [
        p for p in passages[1:] if first > 0 and p.score >= CITE_RELATIVE * first
    ]


def answer_band(
    *, ranking: Ranking, confidence: float, threshold: float, hedge_threshold: float | None
) -> str:
    """Confident, hedged or "don't know" (``chat.assistant.contract.BANDS``)."""
    if not ranking.passages or ranking.signals.unknown_code:
        return BAND_DONT_KNOW
    if confidence >= threshold:
        return BAND_CONFIDENT
    if hedge_threshold is not None and confidence >= hedge_threshold:
        return BAND_HEDGED
    return BAND_DONT_KNOW


def knowledge_answer(
    *, index: KnowledgeIndex, query: Encoding, query_text: str, embedding_model: str, top_k: int
) -> tuple[list[Passage], Retrieval]:
    """The passages to answer from, and the retrieval record (``Retrieval.band``):

    - confident (calibrated confidence >= threshold): the cited passages;
    - hedged (between the hedge threshold and the threshold): only the closest passage,
      the reply says it is not sure and offers a person;
    - "don't know" (below, or the question names an error code no article names): no
      passages.

    No database access."""
    ranking = knowledge_search(index=index, query=query, query_text=query_text, top_k=top_k)
    confidence, threshold, hedge_threshold = answer_confidence(
        signals=ranking.signals, embedding_model=embedding_model
    )
    band = answer_band(
        ranking=ranking,
        confidence=confidence,
        threshold=threshold,
        hedge_threshold=hedge_threshold,
    )
    passages = {
        BAND_CONFIDENT: _cited(ranking.passages) if ranking.passages else [],
        BAND_HEDGED: ranking.passages[:1],
        BAND_DONT_KNOW: [],
    }[band]
    return passages, Retrieval(
        top_score=round(confidence, 4),
        min_score=round(threshold, 4),
        no_answer=band == BAND_DONT_KNOW,
        hedge_score=round(hedge_threshold, 4) if hedge_threshold is not None else 0.0,
        band=band,
    )
