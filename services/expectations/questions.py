"""Whether a prepared question is open-ended, and how to reopen a closed one.

A closed question lets the customer answer with "yes", "no", a number or one
of the options we offered; an open-ended one asks for their own words. The
text is split into sentences; the sentences ending in "?" are the questions
(or, without any "?", the last sentence, which may be a request such as
"Tell me about…"). The text is open-ended only when every question in it is.
Each question meets these rules, first match wins:

1. Tag question: a final clause such as ", right?", ", isn't it?",
   ", don't you think?" asks the customer to agree with us: closed.
2. Rating scale: "on a scale of 1 to 10", "out of five": closed.
3. Either/or: alternatives joined by "or" offered as the answers
   ("Which do you prefer, email or phone?", "Do you want A or B?",
   "either … or"): closed. An "or" inside a question that starts with a
   question word ("What did you like or dislike?") and approximations
   ("a day or two", "or so", "or anything else") do not count.
4. The main clause (the last clause, so that a lead-in such as "Thinking about
   last year," or "When you called us," is skipped; leading "so", "and",
   "well" are dropped) starts with
   - a question word (what, how, why, which, who, where, when, whose): open;
   - a request (tell, describe, explain, walk me through, share…): open;
   - an auxiliary or modal verb (do, is, have, can, would, isn't…): closed,
     unless it asks for a request ("Could you describe…", "Can you tell me…",
     "Would you mind explaining…"): open;
   - anything else, a statement with a question mark ("You ship on
     Fridays?"): closed.

Limits. These are rules about word order, not an understanding of meaning:
- A subordinate lead-in without a comma is skipped only when it starts with
  if, when, once, after, before, while, since, as, whenever or unless and
  is followed later by an auxiliary and a subject ("When you called did we help?").
- Questions that start with a question word but still ask for a short fact
  ("How many users do you have?", "When is your renewal?") count as open:
  they cannot be answered yes or no, though they invite only a brief answer.
- "Can you tell me whether it works?" counts as open (a request), though it
  asks for a yes or no in disguise.
- Only English phrasings are recognised; anything else is treated as a
  statement (closed), so the guidance asks for a rephrasing.
- The suggested rewrite in `guidance` is a template; where the wording does
  not fit one, the guidance gives general advice instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Rule(StrEnum):
    """The rule that decided a classification."""

    QUESTION_WORD = "question_word"
    OPEN_REQUEST = "open_request"
    TAG_QUESTION = "tag_question"
    RATING_SCALE = "rating_scale"
    EITHER_OR = "either_or"
    LEADING_AUXILIARY = "leading_auxiliary"
    STATEMENT = "statement"


@dataclass(frozen=True)
class Classification:
    open_ended: bool
    rule: Rule
    guidance: str | None


def _vocabulary(words: str) -> frozenset[str]:
    return frozenset(words.split())


QUESTION_WORDS = frozenset({"what", "what's", "whats", "how", "how's", "why", "which", "who", "whom", "whose", "where"})
QUESTION_WORDS_ALSO_SUBORDINATORS = frozenset({"when", "when's"})
SUBORDINATORS = frozenset({"if", "when", "once", "after", "before", "while", "since", "as", "whenever", "unless"})
REQUESTS = _vocabulary(
    "tell describe explain walk talk share show help give list elaborate expand paint take imagine "
    "picture think recall telling describing explaining walking talking sharing showing helping "
    "giving listing elaborating expanding taking"
)
AUXILIARIES = _vocabulary(
    "do does did is are was were am have has had can could will would shall should may might must "
    "don't doesn't didn't isn't aren't wasn't weren't haven't hasn't hadn't can't cannot couldn't "
    "won't wouldn't shouldn't mightn't mustn't"
)
SUBJECTS = frozenset(
    {"i", "you", "we", "they", "he", "she", "it", "that", "this", "there", "your", "our", "their", "anyone", "someone"}
)
FILLERS = frozenset({"so", "and", "but", "ok", "okay", "well", "now", "also", "then", "just", "please", "finally"})
SINGLE_WORD_TAGS = frozenset({"right", "correct", "yes", "no", "ok", "okay", "true", "agreed", "yeah", "eh", "huh"})
TAG_ENDINGS = SUBJECTS | {"think", "agree", "say", "right", "correct", "so", "true"}
# "or" that approximates ("a day or two") or trails off ("or anything") offers no choice.
NOT_A_CHOICE_AFTER_OR = _vocabulary(
    "so more less two three anything something anyone someone other others whatever otherwise else "
    "similar elsewhere not"
)
RATING_SCALE = re.compile(
    r"\bscale\s+(?:of|from)\b|\bout\s+of\s+(?:5|7|10|five|seven|ten)\b"
    r"|\b(?:from\s+)?(?:0|1|zero|one)\s+to\s+(?:5|7|10|five|seven|ten)\b"
    r"|\bhow\s+many\s+stars\b",
    re.IGNORECASE,
)
_SENTENCES = re.compile(r"[^.?!]+[.?!]*")
_CLAUSE_BREAK = re.compile(r"\s*(?:[,;:]|\s[-–—]\s|—|–)\s*")
_EDGE_PUNCTUATION = "\"'()[]{}.,;:!?…*"

ATTITUDE_VERBS = frozenset({"like", "love", "enjoy", "dislike", "hate", "value", "appreciate", "miss"})
OPINION_VERBS = frozenset({"think", "feel", "believe"})
WISH_VERBS = frozenset({"want", "need", "expect", "wish"})
OBJECT_OF = {"you": "you", "we": "us", "they": "them", "i": "me"}
# Requests only as a command: "Can you imagine…" or "Don't you think…" still ask for agreement.
COMMAND_ONLY_REQUESTS = frozenset({"imagine", "picture", "think", "recall"})
MODALS = frozenset({"could", "would", "should", "can", "will", "might", "must"})


@dataclass(frozen=True)
class Token:
    """A word as compared (lower case, no punctuation) and as the customer-facing text had it."""

    word: str
    text: str


Clause = list[Token]


def classify(text: str) -> Classification:
    """Classify a prepared question as open-ended or closed, with guidance for a closed one."""
    verdicts = [_classify_question(question) for question in _questions_in(text)]
    return next((verdict for verdict in verdicts if not verdict.open_ended), verdicts[-1])


def _questions_in(text: str) -> list[str]:
    normalised = text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
    sentences = [s.strip() for s in _SENTENCES.findall(normalised.strip()) if _tokens(s)]
    asked = [s for s in sentences if s.endswith("?")]
    return asked or sentences[-1:] or [""]


def _tokens(text: str) -> Clause:
    tokens = []
    for part in text.split():
        shown = part.strip(_EDGE_PUNCTUATION)
        if shown:
            tokens.append(Token(shown.lower(), shown))
    return tokens


def _words(clause: Clause) -> list[str]:
    return [token.word for token in clause]


def _clauses(question: str) -> list[Clause]:
    return [tokens for part in _CLAUSE_BREAK.split(question) if (tokens := _tokens(part))]


def _classify_question(question: str) -> Classification:
    clauses = _clauses(question)
    if not clauses:
        return _statement([])
    tagged = _tag_question(clauses)
    if tagged is not None:
        return tagged
    if RATING_SCALE.search(question):
        return Classification(
            False,
            Rule.RATING_SCALE,
            "Closed: it asks for a number on a scale. Reopen it by asking what lies behind the number, "
            'for example "What would make it a 10 for you?"',
        )
    choice = _either_or(clauses)
    if choice is not None:
        return choice
    return _classify_main_clause(_drop_fillers(_main_clause(clauses)))


def _tag_question(clauses: list[Clause]) -> Classification | None:
    if len(clauses) < 2:
        return None
    tag = _words(clauses[-1])
    is_tag = (len(tag) == 1 and tag[0] in SINGLE_WORD_TAGS) or (
        2 <= len(tag) <= 4 and tag[0] in AUXILIARIES and tag[1] in SUBJECTS and tag[-1] in TAG_ENDINGS
    )
    if not is_tag:
        return None
    return Classification(
        False,
        Rule.TAG_QUESTION,
        f'Closed: it ends with a tag ("{_text(clauses[-1])}?") that asks the customer to agree with us. '
        'Drop the tag and ask for their own view, for example "What do you think?" or '
        '"How would you put it in your own words?"',
    )


def _offers_choice(words: list[str]) -> bool:
    return any(
        word == "or" and i > 0 and (i + 1 == len(words) or words[i + 1] not in NOT_A_CHOICE_AFTER_OR)
        for i, word in enumerate(words)
    )


def _either_or(clauses: list[Clause]) -> Classification | None:
    first = _words(_drop_fillers(clauses[0]))
    whole = [word for clause in clauses for word in _words(clause)]
    options = next(
        (c for c in clauses[1:] if _offers_choice(_words(c)) and not _starts_a_question(_words(_drop_fillers(c)))),
        None,
    )
    offered = (
        ("either" in whole and "or" in whole)
        or options is not None
        or (first[0] in AUXILIARIES | {"which"} and _offers_choice(whole))
    )
    if not offered:
        return None
    if options is not None and first[0] in QUESTION_WORDS:
        lead = re.sub(r"^which\b", "what", _text(_drop_fillers(clauses[0])), flags=re.IGNORECASE)
        advice = f'for example "{_capitalised(lead)}, and why?"'
    else:
        advice = 'for example "What matters most to you here, and why?"'
    shown = f' ("{_text(options)}")' if options is not None else ""
    return Classification(
        False,
        Rule.EITHER_OR,
        f"Closed: it offers a choice{shown}, so the customer picks one of our answers instead of "
        f"giving their own. Reopen it by asking without the options, {advice}",
    )


def _starts_a_question(words: list[str]) -> bool:
    return bool(words) and (words[0] in QUESTION_WORDS or words[0] in AUXILIARIES or words[0] in REQUESTS)


def _main_clause(clauses: list[Clause]) -> Clause:
    """The clause that asks: the last one that starts like a question, else the last one."""
    for clause in reversed(clauses):
        words = _words(_drop_fillers(clause))
        if _starts_a_question(words) or words[0] in QUESTION_WORDS_ALSO_SUBORDINATORS:
            return clause
    return clauses[-1]


def _drop_fillers(clause: Clause) -> Clause:
    start = 0
    while start < len(clause) - 1 and clause[start].word in FILLERS:
        start += 1
    return clause[start:]


def _classify_main_clause(clause: Clause) -> Classification:
    clause = _skip_subordinate_lead_in(clause)
    words = _words(clause)
    first = words[0]
    if first in QUESTION_WORDS or first in QUESTION_WORDS_ALSO_SUBORDINATORS:
        return Classification(True, Rule.QUESTION_WORD, None)
    if first in REQUESTS:
        return Classification(True, Rule.OPEN_REQUEST, None)
    if first in AUXILIARIES:
        if _asks_for_request(words):
            return Classification(True, Rule.OPEN_REQUEST, None)
        return _leading_auxiliary(clause)
    if any(word in QUESTION_WORDS for word in words[1:5]):
        # A short lead-in without a comma: "In your experience what stands out?"
        return Classification(True, Rule.QUESTION_WORD, None)
    return _statement(clause)


def _skip_subordinate_lead_in(clause: Clause) -> Clause:
    """'When you called us did we help' asks 'did we help'."""
    words = _words(clause)
    if words[0] not in SUBORDINATORS or len(words) < 2 or words[1] in AUXILIARIES:
        return clause
    for i in range(2, len(words) - 1):
        if words[i] in QUESTION_WORDS or (words[i] in AUXILIARIES and words[i + 1] in SUBJECTS):
            return clause[i:]
    return clause


def _asks_for_request(words: list[str]) -> bool:
    """'Could you describe…', 'Would you mind telling…', 'Can you say more…'."""
    rest = [word for word in words[1:5] if word not in {"please", "mind", "kindly"}]
    if len(rest) < 2 or rest[0] not in {"you", "we"}:
        return False
    following = rest[2] if len(rest) > 2 else ""
    return rest[1] in REQUESTS - COMMAND_ONLY_REQUESTS or (rest[1] == "say" and following == "more")


def _leading_auxiliary(clause: Clause) -> Classification:
    reason = f'Closed: it starts with "{clause[0].word}", so it can be answered yes or no.'
    suggestion = _reopened(clause)
    if suggestion is not None:
        return Classification(False, Rule.LEADING_AUXILIARY, f'{reason} Reopen it: "{suggestion}"')
    return Classification(
        False,
        Rule.LEADING_AUXILIARY,
        f"{reason} Reopen it by starting with What, How or Why, as "
        '"Do you like the portal?" becomes "What do you like about the portal?"',
    )


def _reopened(clause: Clause) -> str | None:
    """A rewrite of an auxiliary-led question as an open one, where a template fits."""
    words = _words(clause)
    if len(words) < 3:
        return None
    auxiliary, subject, verb = words[0], words[1], words[2]
    rest = _text(clause[3:])
    if subject == "there" and auxiliary in {"is", "are", "was", "were"}:
        return _reopened_there_is(clause)
    if subject not in OBJECT_OF and subject != "it":
        return None
    if words[3:4] and words[3] in {"any", "anything"}:
        return _reopened_any(auxiliary, subject, verb, clause[3:])
    if auxiliary in {"do", "does", "did"}:
        if verb in ATTITUDE_VERBS:
            return _sentence(
                f"What {auxiliary} {subject} {verb} about {rest}" if rest else f"What {auxiliary} {subject} {verb}"
            )
        if verb in OPINION_VERBS and rest:
            return _sentence(f"What makes {OBJECT_OF.get(subject, subject)} {verb} {rest}")
        if verb in WISH_VERBS and rest and subject in OBJECT_OF:
            return _sentence(f"What would {rest} change for {OBJECT_OF[subject]}")
        return _sentence(f"How {auxiliary} {subject} {verb} {rest}")
    if auxiliary in {"are", "is", "was", "were", "am"}:
        if verb.endswith(("ing", "ed")):
            return _sentence(f"How {auxiliary} {subject} {verb} {rest}")
        if verb not in {"the", "a", "an", "your", "our", "their", "my", "this", "that", "not", "there"}:
            after = _text(clause[4:]) if words[3:4] == ["enough"] else rest
            return _sentence(f"How {clause[2].text} {auxiliary} {subject} {after}")
        return None
    if auxiliary in {"would", "will"} and subject == "you":
        return _sentence(f"What would make you {verb} {rest}")
    return None


def _reopened_any(auxiliary: str, subject: str, verb: str, clause: Clause) -> str | None:
    """'Do you have any problems with billing' → 'What problems do you have with billing'."""
    words = _words(clause)
    if words[0] == "anything":
        extra = 1 if words[1:2] == ["else"] else 0
        head = "What else" if extra else "What"
        return _sentence(f"{head} {auxiliary} {subject} {verb} {_text(clause[1 + extra :])}")
    taken = 2 if words[1:2] == ["other"] else 1
    if len(words) <= taken:
        return None
    return _sentence(f"What {_text(clause[1 : taken + 1])} {auxiliary} {subject} {verb} {_text(clause[taken + 1 :])}")


def _reopened_there_is(clause: Clause) -> str | None:
    """'Is there anything else you'd like to add' → 'What else would you like to add'."""
    words = _words(clause)
    auxiliary = words[0]
    if words[2] == "anything":
        extra = 1 if words[3:4] == ["else"] else 0
        head = "What else" if extra else "What"
        rest = clause[3 + extra :]
        if _words(rest[:1]) in (["that"], ["which"]):
            return _sentence(f"{head} {_text(rest[1:])}")
        inverted = _inverted(rest)
        return _sentence(f"{head} {inverted}") if inverted else None
    if words[2] == "any" and len(words) > 3:
        taken = 2 if words[3] == "other" and len(words) > 4 else 1
        noun_phrase, tail = _text(clause[3 : 3 + taken]), clause[3 + taken :]
        inverted = _inverted(tail)
        if inverted is not None:
            return _sentence(f"What {noun_phrase} {inverted}")
        return _sentence(f"What {noun_phrase} {auxiliary} there {_text(tail)}")
    return None


def _inverted(clause: Clause) -> str | None:
    """'you'd like to add' → 'would you like to add'; 'we could do better' → 'could we do better'."""
    words = _words(clause)
    if not words:
        return None
    head = words[0]
    for pronoun in OBJECT_OF:
        if head == f"{pronoun}'d":
            return f"would {pronoun} {_text(clause[1:])}"
        if head == f"{pronoun}'ll":
            return f"will {pronoun} {_text(clause[1:])}"
    if head in OBJECT_OF and len(words) > 1:
        if words[1] in MODALS or words[1] in {"are", "were", "have", "had"}:
            return f"{clause[1].text} {clause[0].text} {_text(clause[2:])}"
        return f"do {clause[0].text} {_text(clause[1:])}"
    return None


def _statement(clause: Clause) -> Classification:
    shown = f' ("{_text(clause)}")' if clause else ""
    return Classification(
        False,
        Rule.STATEMENT,
        f"Closed: it reads as a statement{shown}, so the customer can only agree or disagree. "
        'Reopen it by starting with What, How or Why, or with a request such as "Tell me about…"',
    )


def _text(clause: Clause) -> str:
    return " ".join(token.text for token in clause)


def _sentence(text: str) -> str:
    return _capitalised(" ".join(text.split())) + "?"


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]
