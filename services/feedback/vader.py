"""VADER's sentiment scores in time linear in the text, and bounded, with the same scores.

vaderSentiment 3.3.2 (pinned) is quadratic in the number of words, in three
places; each is overridden here by a method computing the same result:

- `_negation_check` and `_special_idioms_check` lower-case every word of the
  text for each sentiment word they score, then read the three words around it.
  Emoji make this bite: VADER reads each one as its description ("face with
  tears of joy"), so 2,000 x 😂 took 5 s and 10,000 about 100 s; a
  10,000-character English text took 120 ms.
- `_but_check` finds each score with `list.index`, then pops and re-inserts it.

Its emoji loop (`polarity_scores`) is linear but runs per character in Python:
here it is one `str.translate`. Linear is not yet bounded, since descriptions
turn a 10,000-character text into up to 60,000 words: VADER here reads the first
`MAX_SCORED_WORDS`, as many as a 10,000-character text without emoji can have,
so only emoji descriptions beyond that many words go unread.
"""

from __future__ import annotations

import heapq

from vaderSentiment.vaderSentiment import (
    BOOSTER_DICT,
    N_SCALAR,
    NEGATE,
    SPECIAL_CASES,
    SentimentIntensityAnalyzer,
    SentiText,
)

# One-character words between single spaces: no 10,000-character text has more words of its own.
MAX_SCORED_WORDS = 5_000

_NEGATE = frozenset(NEGATE)
_SO_OR_THIS = ("so", "this")


def _negated(word: str) -> bool:
    """`vaderSentiment.negated([word])`, without copying the list of negations for each word."""
    return word in _NEGATE or "n't" in word


class LinearSentimentAnalyzer(SentimentIntensityAnalyzer):  # type: ignore[misc]  # vaderSentiment is untyped
    """`SentimentIntensityAnalyzer` whose work grows linearly with the text and stops at `MAX_SCORED_WORDS`."""

    def __init__(self) -> None:
        super().__init__()
        # VADER replaces only single characters, and puts a space before a description unless one is there:
        # an extra space changes no word, since words are split on whitespace.
        self._emoji_words = {ord(emoji): f" {words}" for emoji, words in self.emojis.items() if len(emoji) == 1}

    def polarity_scores(self, text: str) -> dict[str, float]:
        """VADER's `polarity_scores`: its emoji loop done by `str.translate`, at most `MAX_SCORED_WORDS` words read."""
        text = text.translate(self._emoji_words).strip()
        words = text.split(maxsplit=MAX_SCORED_WORDS)
        if len(words) > MAX_SCORED_WORDS:
            text = " ".join(words[:MAX_SCORED_WORDS])
        sentitext = SentiText(text)
        words_and_emoticons = sentitext.words_and_emoticons
        last = len(words_and_emoticons) - 1
        sentiments: list[float] = []
        for i, item in enumerate(words_and_emoticons):
            lowered = item.lower()
            kind_of = lowered == "kind" and i < last and words_and_emoticons[i + 1].lower() == "of"
            # A booster, or a word VADER has no valence for (most words), scores 0: as `sentiment_valence` would
            # score the latter, without the call.
            if lowered in BOOSTER_DICT or kind_of or lowered not in self.lexicon:
                sentiments.append(0)
                continue
            sentiments = self.sentiment_valence(0, sentitext, item, i, sentiments)
        sentiments = self._but_check(words_and_emoticons, sentiments)
        scores: dict[str, float] = self.score_valence(sentiments, text)
        return scores

    @staticmethod
    def _negation_check(valence: float, words_and_emoticons: list[str], start_i: int, i: int) -> float:
        before = [words_and_emoticons[i - distance].lower() for distance in range(1, start_i + 2)]
        if start_i == 0:
            if _negated(before[0]):
                valence = valence * N_SCALAR
        elif start_i == 1:
            if before[1] == "never" and before[0] in _SO_OR_THIS:
                valence = valence * 1.25
            elif before[1] == "without" and before[0] == "doubt":
                pass
            elif _negated(before[1]):
                valence = valence * N_SCALAR
        elif start_i == 2:
            # VADER's precedence, kept: (never and (so or this) two back) or (so or this) just before.
            if (before[2] == "never" and before[1] in _SO_OR_THIS) or before[0] in _SO_OR_THIS:
                valence = valence * 1.25
            elif before[2] == "without" and (before[1] == "doubt" or before[0] == "doubt"):
                pass
            elif _negated(before[2]):
                valence = valence * N_SCALAR
        return valence

    @staticmethod
    def _special_idioms_check(valence: float, words_and_emoticons: list[str], i: int) -> float:
        three, two, one, zero = (word.lower() for word in words_and_emoticons[i - 3 : i + 1])
        three_two_one, three_two, two_one = f"{three} {two} {one}", f"{three} {two}", f"{two} {one}"
        for sequence in (f"{one} {zero}", f"{two} {one} {zero}", two_one, three_two_one, three_two):
            if sequence in SPECIAL_CASES:
                valence = SPECIAL_CASES[sequence]
                break
        after = [word.lower() for word in words_and_emoticons[i + 1 : i + 3]]
        if after and (zeroone := f"{zero} {after[0]}") in SPECIAL_CASES:
            valence = SPECIAL_CASES[zeroone]
        if len(after) == 2 and (zeroonetwo := f"{zero} {after[0]} {after[1]}") in SPECIAL_CASES:
            valence = SPECIAL_CASES[zeroonetwo]
        for n_gram in (three_two_one, three_two, two_one):
            if n_gram in BOOSTER_DICT:
                valence = valence + BOOSTER_DICT[n_gram]
        return valence

    @staticmethod
    def _but_check(words_and_emoticons: list[str], sentiments: list[float]) -> list[float]:
        """Halve the scores before the first "but", and add half to those after it, as VADER does.

        VADER finds "each" score with `sentiments.index(score)`: the first position
        holding an equal value as the list stands then, which is another position
        when an earlier score was changed into this one. That is reproduced, with
        the positions of each value in a heap instead of a scan. A zero stays zero.
        """
        but = next((index for index, word in enumerate(words_and_emoticons) if word.lower() == "but"), None)
        if but is None:
            return sentiments
        positions: dict[float, list[int]] = {}
        for position, score in enumerate(sentiments):
            if score:
                positions.setdefault(score, []).append(position)  # ascending: already a heap
        for score in list(sentiments):
            if not score:
                continue
            first = positions[score][0]
            if first == but:
                continue
            changed = score * 0.5 if first < but else score * 1.5
            heapq.heappop(positions[score])
            heapq.heappush(positions.setdefault(changed, []), first)
            sentiments[first] = changed
        return sentiments
