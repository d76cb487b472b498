"""The rule set that tells open-ended questions from closed ones, on real phrasings."""

from __future__ import annotations

import pytest

from services.expectations.questions import Rule, classify

OPEN, CLOSED = True, False

PHRASINGS = [
    # Question words
    ("What do you like about the new portal?", OPEN, Rule.QUESTION_WORD),
    ("How do you decide which supplier to use?", OPEN, Rule.QUESTION_WORD),
    ("Why did you switch from your previous provider?", OPEN, Rule.QUESTION_WORD),
    ("What would success look like for you a year from now?", OPEN, Rule.QUESTION_WORD),
    ("When was the last time you ordered from us?", OPEN, Rule.QUESTION_WORD),
    ("Who decides on renewals in your company?", OPEN, Rule.QUESTION_WORD),
    ("Where do delays usually happen?", OPEN, Rule.QUESTION_WORD),
    ("What's the hardest part of your week?", OPEN, Rule.QUESTION_WORD),
    ("How many users do you have?", OPEN, Rule.QUESTION_WORD),
    ("What did you like or dislike about the onboarding?", OPEN, Rule.QUESTION_WORD),
    ("How do you handle returns or exchanges today?", OPEN, Rule.QUESTION_WORD),
    ("What do you need from us in the next month or so?", OPEN, Rule.QUESTION_WORD),
    # Lead-ins before the question
    ("Thinking about last quarter, what went well?", OPEN, Rule.QUESTION_WORD),
    ("If delivery were late, how would that affect your customers?", OPEN, Rule.QUESTION_WORD),
    ("In your experience what stands out about our support?", OPEN, Rule.QUESTION_WORD),
    ("So, what would you change first?", OPEN, Rule.QUESTION_WORD),
    ("We changed the invoice layout last month. What do you think of it?", OPEN, Rule.QUESTION_WORD),
    ("When you called us last time, did we solve your problem?", CLOSED, Rule.LEADING_AUXILIARY),
    ("When you called us did we solve your problem?", CLOSED, Rule.LEADING_AUXILIARY),
    # Requests
    ("Tell me about your last order.", OPEN, Rule.OPEN_REQUEST),
    ("Walk me through how an order reaches your warehouse.", OPEN, Rule.OPEN_REQUEST),
    ("Describe a day when everything went right.", OPEN, Rule.OPEN_REQUEST),
    ("Could you describe a typical week for your team?", OPEN, Rule.OPEN_REQUEST),
    ("Can you tell me about the last time an order went wrong?", OPEN, Rule.OPEN_REQUEST),
    ("Would you mind explaining how approvals work today?", OPEN, Rule.OPEN_REQUEST),
    ("Can you say more about that?", OPEN, Rule.OPEN_REQUEST),
    # Leading auxiliary verbs
    ("Do you like the new portal?", CLOSED, Rule.LEADING_AUXILIARY),
    ("Does your team use the weekly report?", CLOSED, Rule.LEADING_AUXILIARY),
    ("Did you have any trouble logging in?", CLOSED, Rule.LEADING_AUXILIARY),
    ("Is there anything else you'd like to add?", CLOSED, Rule.LEADING_AUXILIARY),
    ("Are you happy with the service?", CLOSED, Rule.LEADING_AUXILIARY),
    ("Was it easy to find the invoice?", CLOSED, Rule.LEADING_AUXILIARY),
    ("Would you recommend us to a colleague?", CLOSED, Rule.LEADING_AUXILIARY),
    ("Will you renew next year?", CLOSED, Rule.LEADING_AUXILIARY),
    ("Can we call you next week?", CLOSED, Rule.LEADING_AUXILIARY),
    ("Have you tried the mobile app?", CLOSED, Rule.LEADING_AUXILIARY),
    ("Should we send the report weekly?", CLOSED, Rule.LEADING_AUXILIARY),
    ("Isn't the new layout easier?", CLOSED, Rule.LEADING_AUXILIARY),
    ("Don't you think the delivery is fast?", CLOSED, Rule.LEADING_AUXILIARY),
    ("Do you think the price is fair?", CLOSED, Rule.LEADING_AUXILIARY),
    ("Can you imagine using it every day?", CLOSED, Rule.LEADING_AUXILIARY),
    ("What do you like? Is it fast enough?", CLOSED, Rule.LEADING_AUXILIARY),
    # Either/or
    ("Which do you prefer, email or phone?", CLOSED, Rule.EITHER_OR),
    ("What matters more to you: speed or price?", CLOSED, Rule.EITHER_OR),
    ("Do you prefer email or phone?", CLOSED, Rule.EITHER_OR),
    ("Would you rather have a lower price or faster delivery?", CLOSED, Rule.EITHER_OR),
    ("Either the app or the website: which do you use?", CLOSED, Rule.EITHER_OR),
    ("How should we reach you — by email or by phone?", CLOSED, Rule.EITHER_OR),
    # Tag questions
    ("You need it by Friday, right?", CLOSED, Rule.TAG_QUESTION),
    ("The report is useful, isn't it?", CLOSED, Rule.TAG_QUESTION),
    ("That makes sense, don't you think?", CLOSED, Rule.TAG_QUESTION),
    ("We agreed on two deliveries a week, correct?", CLOSED, Rule.TAG_QUESTION),
    ("You'd like a monthly call, wouldn't you?", CLOSED, Rule.TAG_QUESTION),
    # Rating scales
    ("On a scale of 1 to 10, how likely are you to recommend us?", CLOSED, Rule.RATING_SCALE),
    ("How would you rate our support out of five?", CLOSED, Rule.RATING_SCALE),
    # Statements with a question mark
    ("You ship on Fridays?", CLOSED, Rule.STATEMENT),
    ("Delivery times", CLOSED, Rule.STATEMENT),
]


@pytest.mark.parametrize(("text", "open_ended", "rule"), PHRASINGS, ids=[p[0] for p in PHRASINGS])
def test_question_is_classified_by_its_phrasing(text: str, open_ended: bool, rule: Rule) -> None:
    classification = classify(text)
    assert (classification.open_ended, classification.rule) == (open_ended, rule)
    assert (classification.guidance is None) == open_ended


REOPENED = [
    ("Do you like the new portal?", "What do you like about the new portal?"),
    ("Did you enjoy the workshop?", "What did you enjoy about the workshop?"),
    ("Do you use the weekly report?", "How do you use the weekly report?"),
    ("Do you need faster delivery?", "What would faster delivery change for you?"),
    ("Did you have any trouble logging in?", "What trouble did you have logging in?"),
    ("Do you have any other concerns?", "What other concerns do you have?"),
    ("Is there anything else you'd like to add?", "What else would you like to add?"),
    ("Is there anything we could do better?", "What could we do better?"),
    ("Are there any problems with delivery?", "What problems are there with delivery?"),
    ("Are you happy with the service?", "How happy are you with the service?"),
    ("Was it easy to find the invoice?", "How easy was it to find the invoice?"),
    ("Would you recommend us to a colleague?", "What would make you recommend us to a colleague?"),
]


@pytest.mark.parametrize(("closed", "reopened"), REOPENED, ids=[r[0] for r in REOPENED])
def test_guidance_reopens_a_closed_question(closed: str, reopened: str) -> None:
    guidance = classify(closed).guidance
    assert guidance is not None
    assert f'Reopen it: "{reopened}"' in guidance


def test_guidance_names_the_leading_verb_when_no_rewrite_fits() -> None:
    guidance = classify("Have you tried the mobile app?").guidance
    assert guidance is not None
    assert 'starts with "have"' in guidance
    assert "What, How or Why" in guidance


def test_guidance_quotes_the_options_of_an_either_or_question() -> None:
    guidance = classify("Which do you prefer, email or phone?").guidance
    assert guidance is not None
    assert '("email or phone")' in guidance
    assert '"What do you prefer, and why?"' in guidance


def test_guidance_quotes_the_tag_of_a_tag_question() -> None:
    guidance = classify("The report is useful, isn't it?").guidance
    assert guidance is not None
    assert "isn't it?" in guidance


def test_curly_apostrophes_are_read_like_straight_ones() -> None:
    assert classify("The report is useful, isn\u2019t it?").rule == Rule.TAG_QUESTION
    assert classify("What\u2019s the hardest part of your week?").open_ended
