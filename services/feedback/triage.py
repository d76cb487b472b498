"""Triage at capture time: sentiment (VADER) and themes (the platform's taxonomy, `shared/themes.py`)."""

from __future__ import annotations

from services.feedback.schemas import (
    RatingModel,
    Sentiment,
    SentimentLabel,
    SentimentSource,
)
from services.feedback.vader import LinearSentimentAnalyzer

# The themes are the platform's one taxonomy (`shared/themes.py`), shared with the expectations service.
from shared.themes import Taxonomy, TaxonomyError, Theme

__all__ = ["Taxonomy", "TaxonomyError", "Theme", "Triage"]

# VADER's own cut-offs for its compound score.
POSITIVE_FROM = 0.05
NEGATIVE_UP_TO = -0.05


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
