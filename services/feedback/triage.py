"""Triage at capture time: sentiment (VADER) and themes (an editable taxonomy)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from services.feedback.schemas import (
    RatingModel,
    Sentiment,
    SentimentLabel,
    SentimentSource,
)
from services.feedback.vader import LinearSentimentAnalyzer

# VADER's own cut-offs for its compound score.
POSITIVE_FROM = 0.05
NEGATIVE_UP_TO = -0.05
_THEME_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class TaxonomyError(ValueError):
    """The taxonomy file cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Theme:
    key: str
    label: str
    keywords: tuple[str, ...]


class Taxonomy:
    """Themes and their keywords, matched on the words of a text in one pass."""

    def __init__(self, themes: list[Theme]) -> None:
        self.themes = themes
        self._words: dict[str, set[str]] = {}
        self._prefixes: dict[str, list[tuple[str, str]]] = {}
        self._phrases: dict[str, list[tuple[tuple[str, ...], bool, str]]] = {}
        for theme in themes:
            for keyword in theme.keywords:
                words, is_prefix = _words_of(keyword.rstrip("*")), keyword.endswith("*")
                if len(words) > 1:
                    self._phrases.setdefault(words[0], []).append((tuple(words[1:]), is_prefix, theme.key))
                elif is_prefix:
                    self._prefixes.setdefault(words[0][:_PREFIX_KEY], []).append((words[0], theme.key))
                else:
                    self._words.setdefault(words[0], set()).add(theme.key)

    @classmethod
    def load(cls, path: Path) -> Taxonomy:
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise TaxonomyError(f"{path}: {exc}") from exc
        table = document.get("themes")
        if not isinstance(table, dict) or not table:
            raise TaxonomyError(f"{path}: needs at least one [themes.<key>] table")
        themes = []
        for key, entry in table.items():
            if not _THEME_KEY.match(key):
                raise TaxonomyError(f"{path}: theme key {key!r} must be lower-case letters, digits or '_'")
            keywords = entry.get("keywords") if isinstance(entry, dict) else None
            if not isinstance(keywords, list) or not keywords or not all(isinstance(k, str) for k in keywords):
                raise TaxonomyError(f"{path}: themes.{key}.keywords must be a non-empty list of words")
            for keyword in keywords:
                words = _words_of(keyword.rstrip("*"))
                if not words or (keyword.endswith("*") and len(words[-1]) < _PREFIX_KEY):
                    raise TaxonomyError(
                        f"{path}: themes.{key} keyword {keyword!r} needs a word ({_PREFIX_KEY}+ letters before a *)"
                    )
            themes.append(Theme(key, str(entry.get("label", key)), tuple(keywords)))
        return cls(themes)

    def themes_of(self, text: str | None) -> list[str]:
        """The keys of the themes `text` mentions, in taxonomy order."""
        if not text:
            return []
        words = _words_of(text)
        found: set[str] = set()
        for index, word in enumerate(words):
            found |= self._words.get(word, _NONE)
            for prefix, theme in self._prefixes.get(word[:_PREFIX_KEY], ()):
                if word.startswith(prefix):
                    found.add(theme)
            for rest, is_prefix, theme in self._phrases.get(word, ()):
                following = words[index + 1 : index + 1 + len(rest)]
                if len(following) == len(rest) and _follows(following, rest, is_prefix):
                    found.add(theme)
        return [theme.key for theme in self.themes if theme.key in found] if found else []


def _follows(words: list[str], rest: tuple[str, ...], is_prefix: bool) -> bool:
    """The words after a phrase's first word are the rest of it (the last may be a prefix)."""
    *middle, last = rest
    if words[:-1] != middle:
        return False
    return words[-1] == last or (is_prefix and words[-1].startswith(last))


# Texts and keywords are split into words alike: "user-friendly" is two words.
_WORD = re.compile(r"[\w']+")
_PREFIX_KEY = 3
_NONE: frozenset[str] = frozenset()


def _words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class Triage:
    """Scores sentiment and finds themes; build once (VADER's lexicon is slow to load)."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.taxonomy = taxonomy
        # VADER's scores, in time linear in the text and bounded (`vader.py`): triage runs on the event loop.
        self._analyzer = LinearSentimentAnalyzer()

    def sentiment(self, text: str | None, rating: RatingModel | None) -> Sentiment:
        """From the customer's words when there are any, else from the rating."""
        if text and text.strip():
            score = float(self._analyzer.polarity_scores(text)["compound"])
            # VADER's compound score is within [-1, 1] by construction: no need to validate it again.
            return Sentiment.model_construct(score=score, label=_label_of_score(score), source=SentimentSource.TEXT)
        if rating is not None:
            return _sentiment_of_rating(rating)
        return Sentiment(score=0.0, label=SentimentLabel.NEUTRAL, source=SentimentSource.TEXT)

    def themes(self, text: str | None) -> list[str]:
        return self.taxonomy.themes_of(text)


def _label_of_score(score: float) -> SentimentLabel:
    if score >= POSITIVE_FROM:
        return SentimentLabel.POSITIVE
    if score <= NEGATIVE_UP_TO:
        return SentimentLabel.NEGATIVE
    return SentimentLabel.NEUTRAL


# Per scale: (worst, best, highest negative value, lowest positive value) — the
# same bands the metrics use: nps detractors 0-6 / promoters 9-10, csat 1-2 / 4-5,
# ces (effort, lower is better) 5-7 / 1-2.
_RATING_BANDS: dict[str, tuple[int, int, int, int]] = {
    "nps": (0, 10, 6, 9),
    "csat": (1, 5, 2, 4),
    "ces": (7, 1, 5, 2),
}


def _sentiment_of_rating(rating: RatingModel) -> Sentiment:
    worst, best, negative_to, positive_from = _RATING_BANDS[rating.scale]
    score = round(-1 + 2 * (rating.value - worst) / (best - worst), 4)
    ascending = best > worst
    if (rating.value <= negative_to) if ascending else (rating.value >= negative_to):
        label = SentimentLabel.NEGATIVE
    elif (rating.value >= positive_from) if ascending else (rating.value <= positive_from):
        label = SentimentLabel.POSITIVE
    else:
        label = SentimentLabel.NEUTRAL
    return Sentiment(score=score, label=label, source=SentimentSource.RATING)
