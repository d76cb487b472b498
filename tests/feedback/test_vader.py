"""VADER's scores, in work linear in the text and bounded whatever its characters."""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from functools import partial
from types import FrameType
from typing import Any

import pytest
from vaderSentiment.vaderSentiment import NEGATE, SentimentIntensityAnalyzer

from services.feedback.config import DEFAULT_TAXONOMY_FILE
from services.feedback.triage import Taxonomy, Triage
from services.feedback.vader import MAX_SCORED_WORDS, LinearSentimentAnalyzer

LONGEST_TEXT = 10_000

ORDINARY = [
    "My parcel arrived two weeks late and the box was crushed. Really disappointed.",
    "Great service, thank you! 😊👍",
    "The app keeps crashing when I try to pay, but support was helpful.",
    "Not bad at all",
    "The checkout is NOT good, and the delivery was VERY slow!!!",
    "At least it isn't a horrible kettle.",
    "It was only kind of good, sort of okay.",
    "Never so happy with a purchase 😂😂😂",
    "Without a doubt, an excellent idea.",
    "This phone is the shit, the battery is the bomb",
    "no problems, no complaints, nothing wrong",
    "Why is my refund still not here??? 😡",
    "Lovely staff 💘 but the wait 😭 was awful... :(",
    "I can't say I'm satisfied; the invoice was wrong and nobody called back.",
    "Merci beaucoup 🙏🏽, très bien",
    # VADER's "but" finds each score by value: "fav" halved is "bffn", scaled in its place.
    "fav but bffn",
]


def fill(unit: str, length: int) -> str:
    """`unit` repeated to exactly `length` characters."""
    return (unit * (length // len(unit) + 1))[:length]


PATHOLOGICAL: dict[str, Callable[[int], str]] = {
    "one_emoji": lambda n: fill("😂", n),
    "six_word_emoji": lambda n: fill("😸", n),
    "emoji_after_but": lambda n: "but " + fill("😂", n - 4),
    "mixed_emoji": lambda n: fill("😂😡💘😁👍😭🙏🏽", n),
    "emoji_between_words": lambda n: fill("great 😂 but awful 😡 ", n),
    "combining_marks": lambda n: fill("g" + "\u0334\u0322\u0335\u0336\u0337\u0338" * 3 + "o\u0301\u0302 ", n),
    "right_to_left": lambda n: fill("\u202eخدمة سيئة جدا \u05e9\u05d9\u05e8\u05d5\u05ea \u200f", n),
    "chinese": lambda n: fill("我很惊讶地看到这是如此有用", n),
    "thai": lambda n: fill("บริการแย่มากไม่ดีเลย", n),
    "one_long_word": lambda n: fill("a", n),
    "exclamation_marks": lambda n: fill("!", n),
    "punctuated_words": lambda n: fill("good!!!!?? ", n),
    "short_words": lambda n: fill("a ", n),
    "sentiment_words": lambda n: fill("good ", n),
    "repeated_no": lambda n: fill("no ", n),
    "repeated_but": lambda n: fill("but ", n),
    "but_between_sentiments": lambda n: fill("good but bad ", n),
    "negations": lambda n: fill("not good never bad ", n),
    "emoticons": lambda n: fill(":) ", n),
    "capitals": lambda n: fill("GOOD bad ", n),
    "ordinary_text": lambda n: fill(ORDINARY[0] + " " + ORDINARY[2] + " ", n),
}


@pytest.fixture(scope="module")
def vader() -> Any:
    return SentimentIntensityAnalyzer()


@pytest.fixture(scope="module")
def analyzer() -> LinearSentimentAnalyzer:
    return LinearSentimentAnalyzer()


@pytest.fixture(scope="module")
def triage() -> Triage:
    return Triage(Taxonomy.load(DEFAULT_TAXONOMY_FILE))


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_texts_score_as_with_vader(vader: Any, analyzer: LinearSentimentAnalyzer, text: str) -> None:
    assert analyzer.polarity_scores(text) == vader.polarity_scores(text)


def test_random_short_texts_score_as_with_vader(vader: Any, analyzer: LinearSentimentAnalyzer) -> None:
    rng = random.Random(13)
    emoji = sorted(e for e in vader.emojis if len(e) == 1)
    modifiers = ["but", "But", "no", "so", "this", "never", "without", "doubt", "least", "at", "very", "kind", "of"]
    modifiers += ["the", "bomb", "shit", "bad", "ass", "sort", "VERY", "GOOD", ":)", ":(", "!!", "??", *NEGATE]
    lexicon = sorted(vader.lexicon)
    for _ in range(1_000):
        words = [
            rng.choice([rng.choice(lexicon), rng.choice(modifiers), rng.choice(emoji) * rng.randint(1, 3)])
            for _ in range(rng.randint(1, 25))
        ]
        text = "".join(word + rng.choice([" ", " ", "", "\n", "! "]) for word in words)
        assert analyzer.polarity_scores(text) == vader.polarity_scores(text), text


def test_a_text_without_emoji_is_read_whole(vader: Any, analyzer: LinearSentimentAnalyzer) -> None:
    text = " ".join(["a"] * (MAX_SCORED_WORDS - 1) + [":("])
    assert len(text) <= LONGEST_TEXT
    assert analyzer.polarity_scores(text) == vader.polarity_scores(text)
    assert analyzer.polarity_scores(text)["compound"] < 0


def _calls_made_by(work: Callable[[], object]) -> int:
    """Python and builtin function calls made by `work`: how much it does, without a clock."""
    calls = 0

    def count(_frame: FrameType, event: str, _arg: object) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(count)
    try:
        work()
    finally:
        sys.setprofile(None)
    return calls


def _calls_to_triage(triage: Triage, text: str) -> int:
    return _calls_made_by(lambda: (triage.sentiment(text, None), triage.themes(text)))


@pytest.mark.parametrize("make", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
def test_work_grows_at_most_linearly_with_the_text(triage: Triage, make: Callable[[int], str]) -> None:
    half, whole = (_calls_to_triage(triage, make(length)) for length in (LONGEST_TEXT // 2, LONGEST_TEXT))
    assert whole <= 2.2 * half
    assert whole <= 40 * LONGEST_TEXT  # the pinned VADER made 25 million calls for 1,000 x 😂


def test_the_count_of_calls_sees_the_pinned_vaders_quadratic_work(vader: Any) -> None:
    half, whole = (_calls_made_by(partial(vader.polarity_scores, "😂" * length)) for length in (100, 200))
    assert whole > 3.5 * half


@pytest.mark.parametrize("make", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
def test_the_longest_hostile_texts_are_scored_at_once(triage: Triage, make: Callable[[int], str]) -> None:
    text = make(LONGEST_TEXT)
    assert len(text) == LONGEST_TEXT
    # Its work is bounded by the calls counted above (the pinned VADER took up to 100 s on these texts).
    sentiment = triage.sentiment(text, None)
    triage.themes(text)
    assert -1 <= sentiment.score <= 1
