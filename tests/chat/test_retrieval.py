"""Hybrid retrieval over the demo articles' passages (real MiniLM, BM25, the shipped
calibration), on questions written for these tests (not from the dev or eval sets)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from chat.assistant import evaluation
from chat.assistant.contract import BAND_CONFIDENT, BAND_DONT_KNOW, BAND_HEDGED
from chat.assistant.evaluation import demo_index
from chat.assistant.knowledge import (
    KnowledgeIndex,
    bm25_scores,
    bm25_tokens,
    calibration_current,
    knowledge_answer,
    knowledge_search,
)
from chat.assistant.offers import PERSON_OFFER
from tests.chat.knowledge_fixtures import MemoEmbedder, knowledge_base

__all__ = ["knowledge_base"]

EMBEDDER = MemoEmbedder()


@pytest.fixture(scope="module")
def index() -> KnowledgeIndex:
    return demo_index(EMBEDDER)


def _article_of(index: KnowledgeIndex, scores: np.ndarray) -> str:
    return index.slugs[index.passage_article[int(np.argmax(scores))]]


# (question, the passage that answers it)
PARAPHRASES = [
    # MiniLM alone prefers "Cancelling", BM25 alone "Our plans explained".
    ("is there a charge if I quit my fixed deal halfway through?", "exit-fees#p1"),
    # BM25 alone prefers the E40 article (it repeats "clamp").
    (
        "How many metres can the clamp sender be from the thermostat?",
        "installing-the-energy-monitor-clamp#step-4",
    ),
    # (Before the search labels, "my partner wants her own login to control the heating"
    # was here: BM25 alone preferred "Our plans explained"; the label "add my partner"
    # now leads BM25 to the household article too.)
    # BM25 alone prefers "Getting started" ("bills").
    ("can I get bills in braille for my dad", "priority-services-and-accessibility#p3"),
]


@pytest.mark.parametrize(("question", "wanted"), PARAPHRASES)
def test_hybrid_ranking_finds_the_passage_that_one_retriever_alone_misses(index, question, wanted):
    encoding = EMBEDDER.encode_documents([question])[0]
    dense_alone = _article_of(index, index.passage_matrix @ encoding.vector)
    bm25_alone = _article_of(
        index, bm25_scores(index.passage_bm25, bm25_tokens([question])[0], index.size)
    )

    ranking = knowledge_search(index=index, query=encoding, query_text=question, top_k=3)

    slug = wanted.split("#")[0]
    # One retriever alone fails (or did before the search labels, which now lead BM25 to
    # the braille question's article).
    assert (dense_alone, bm25_alone) != (slug, slug) or "braille" in question
    first = ranking.passages[0]
    assert f"{first.slug}#{first.anchor}" == wanted
    assert wanted.split("#")[1] in {p.anchor for p in ranking.passages}


def test_a_question_naming_an_error_code_cites_that_codes_article(index):
    question = "E22 on the screen after I typed the password"
    encoding = EMBEDDER.encode_documents([question])[0]

    ranking = knowledge_search(index=index, query=encoding, query_text=question, top_k=3)

    assert ranking.passages[0].slug == "error-e22-wifi-password-rejected"


def test_at_most_two_passages_of_one_article_are_cited(index):
    question = "How do I connect the hub to my wifi network?"
    encoding = EMBEDDER.encode_documents([question])[0]

    ranking = knowledge_search(index=index, query=encoding, query_text=question, top_k=3)

    slugs = [p.slug for p in ranking.passages]
    assert len(slugs) == 3
    assert max(slugs.count(s) for s in slugs) <= 2


FRESH_UNANSWERABLE = [
    "Can I pay my bill in bitcoin?",
    "Does the hub have a built-in camera?",
    "Do you offer a student discount?",
    "Can I buy the Hub in a shop in Utrecht?",
    "Is the Hub waterproof enough for a bathroom wall?",
    "Do you sponsor any local football clubs?",
    "Can you fax me a copy of the terms?",
    "Does the app have a dark mode?",
    "Can the hub control my electric car charger?",
    "Do you have a referral bonus if I bring a friend?",
]
FRESH_ANSWERABLE = [
    ("How do I turn on two-factor authentication?", "two-factor-authentication"),
    ("can I get bills in braille for my dad", "priority-services-and-accessibility"),
    ("the hub says my wifi password is wrong but it's right", "error-e22-wifi-password-rejected"),
    ("phone number for support on a saturday", "contacting-support-and-opening-hours"),
    (
        "I want to change the bank account the monthly payment comes from",
        "changing-direct-debit-details",
    ),
]


def test_the_calibrated_no_answer_refuses_fresh_questions_the_articles_do_not_cover(index):
    assert calibration_current(embedding_model=EMBEDDER.name) is not None
    encodings = EMBEDDER.encode_documents(FRESH_UNANSWERABLE)

    decisions = [
        knowledge_answer(index=index, query=e, query_text=q, embedding_model=EMBEDDER.name, top_k=3)
        for q, e in zip(FRESH_UNANSWERABLE, encodings, strict=True)
    ]

    # No confident answer: the honest "I don't know", or a hedge (the closest article
    # only, the reply says it is not sure and offers a person).
    honest = [
        q
        for q, (passages, r) in zip(FRESH_UNANSWERABLE, decisions, strict=True)
        if r.answer_band != BAND_CONFIDENT
    ]
    assert all(passages == [] for passages, r in decisions if r.no_answer)
    assert all(len(passages) == 1 for passages, r in decisions if r.hedged)
    assert all(r.top_score < r.min_score for _, r in decisions if r.no_answer or r.hedged)
    assert all(r.top_score >= r.hedge_score for _, r in decisions if r.hedged)
    # Calibrated so that 9 in 10 of the dev set's unanswerable questions get no
    # confident answer.
    assert len(honest) >= 9, set(FRESH_UNANSWERABLE) - set(honest)


def test_the_calibrated_no_answer_keeps_answering_covered_questions(index):
    questions = [q for q, _ in FRESH_ANSWERABLE]
    encodings = EMBEDDER.encode_documents(questions)

    cited = [
        knowledge_answer(index=index, query=e, query_text=q, embedding_model=EMBEDDER.name, top_k=3)
        for q, e in zip(questions, encodings, strict=True)
    ]

    assert [passages[0].slug if passages else None for passages, _ in cited] == [
        slug for _, slug in FRESH_ANSWERABLE
    ]
    assert all(r.answer_band in (BAND_CONFIDENT, BAND_HEDGED) for _, r in cited)
    assert sum(r.answer_band == BAND_CONFIDENT for _, r in cited) >= 3


# Written for these tests from the articles (not from the dev, train or eval sets): short
# questions the articles answer, and near misses (a detail next to what an article says).
FRESH_SHORT = [
    ("amex ok?", "payment-methods"),
    ("visa debit accepted?", "payment-methods"),
    ("support hours today?", "contacting-support-and-opening-hours"),
    ("whats the helpline number", "contacting-support-and-opening-hours"),
    ("exit fee on fixed 12?", "exit-fees"),
    ("cooling-off days?", "cancelling-your-brightwave-account"),
    ("E21 what now", "error-e21-wifi-connection-lost"),
    ("2fa codes by text?", "two-factor-authentication"),
    ("forgot password", "changing-email-or-password"),
    ("how do I add my partner to the app", "sharing-access-with-household-members"),
    ("braille bill?", "priority-services-and-accessibility"),
]
FRESH_NEAR_MISS = [
    "is there a paid option to stretch the hub warranty to four years?",
    "can your engineer service my boiler while he fits the hub?",
    "does the hub work with underfloor heating?",
    "can I pay my bill in cash at the post office?",
    "do you give a discount if I pay a year upfront?",
    "can the hub's screen show the outside weather?",
    "is the clamp compatible with a three-phase meter?",
    "does the app support apple carplay?",
    "can I have my bills sent to my accountant automatically?",
    "will you price match another supplier?",
]


def _decide(index: KnowledgeIndex, questions: list[str]):
    encodings = EMBEDDER.encode_documents(questions)
    return [
        knowledge_answer(index=index, query=e, query_text=q, embedding_model=EMBEDDER.name, top_k=3)
        for q, e in zip(questions, encodings, strict=True)
    ]


def test_short_questions_the_articles_answer_cite_the_right_article(index):
    decisions = _decide(index, [q for q, _ in FRESH_SHORT])

    # A short question has little text to match, but the words it has are the article's:
    # it is answered or hedged with the right article, not met with "I don't know".
    cited = {
        q: passages[0].slug if passages else None
        for (q, _), (passages, _) in zip(FRESH_SHORT, decisions, strict=True)
    }
    wrong = {
        q: got for (q, slug), got in zip(FRESH_SHORT, cited.values(), strict=True) if got != slug
    }
    assert len(wrong) <= 1, wrong
    assert sum(r.answer_band == BAND_DONT_KNOW for _, r in decisions) <= 1


def test_near_miss_questions_get_no_confident_answer(index):
    decisions = _decide(index, FRESH_NEAR_MISS)

    # The target: 9 in 10 questions the articles cannot answer get the honest
    # "I don't know" or a hedge, not an article quoted as if it answered.
    confident = [
        q
        for q, (_, r) in zip(FRESH_NEAR_MISS, decisions, strict=True)
        if r.answer_band == BAND_CONFIDENT
    ]
    assert len(confident) <= 1, confident


# --- search labels ------------------------------------------------------------------------------


def _first_article(index: KnowledgeIndex, question: str) -> str:
    encoding = EMBEDDER.encode_documents([question])[0]
    ranking = knowledge_search(index=index, query=encoding, query_text=question, top_k=3)
    return ranking.passages[0].slug


def test_search_labels_find_the_article_for_words_it_never_uses(index, tmp_path, monkeypatch):
    articles = json.loads(evaluation.DEMO_ARTICLES.read_text())
    plans = next(a for a in articles if a["slug"] == "brightwave-plans-explained")
    assert "tariff" not in (plans["title"] + plans["body"]).lower()
    assert "tariffs" in plans["search_labels"]
    unlabelled = tmp_path / "articles.json"
    unlabelled.write_text(json.dumps([{**a, "search_labels": []} for a in articles]))
    monkeypatch.setattr(evaluation, "DEMO_ARTICLES", unlabelled)
    without_labels = demo_index(EMBEDDER)
    question = "what tariffs do you have"

    assert _first_article(without_labels, question) != "brightwave-plans-explained"
    assert _first_article(index, question) == "brightwave-plans-explained"


# --- error codes no article names ---------------------------------------------------------------


def test_a_question_naming_an_error_code_no_article_names_gets_dont_know(index):
    unknown, known = "got error E17 on the hub, what does it mean", "E22 after a new router"
    encodings = EMBEDDER.encode_documents([unknown, known])

    unknown_passages, unknown_retrieval = knowledge_answer(
        index=index,
        query=encodings[0],
        query_text=unknown,
        embedding_model=EMBEDDER.name,
        top_k=3,
    )
    known_passages, _ = knowledge_answer(
        index=index, query=encodings[1], query_text=known, embedding_model=EMBEDDER.name, top_k=3
    )

    assert unknown_retrieval.answer_band == BAND_DONT_KNOW
    assert unknown_passages == []
    # The confidence alone would cite an error article (at least hedged): the code decides.
    assert unknown_retrieval.top_score >= unknown_retrieval.hedge_score
    assert known_passages[0].slug == "error-e22-wifi-password-rejected"


# --- the hedged band through a real turn --------------------------------------------------------

HEDGED_QUESTION = "my boiler is old, will the hub work with it"


@pytest.fixture
def local_turns(settings):
    settings.ASSISTANT_PROVIDER = "local"


async def _customer_says(conversation, text: str, client_id: str):
    from chat import turns
    from chat.events import db
    from chat.services import customer_message_receive

    received = await db(customer_message_receive)(
        conversation=conversation, text=text, client_id=client_id, author=None, rate_subject="r"
    )
    return await turns.turn_await(turn_id=received.turn.pk, conversation_id=conversation.pk)


async def _hedged_turn(conversation):
    from chat.events import db

    turn = await _customer_says(conversation, HEDGED_QUESTION, "h1")
    replies = await db(list)(turn.outputs.filter(visibility="public"))
    return turn, replies[0]


@pytest.mark.django_db(transaction=True)
async def test_a_hedged_reply_cites_the_closest_article_and_offers_a_person(
    knowledge_base, local_turns
):
    from chat.events import db
    from tests.factories import ConversationFactory

    conversation = await db(ConversationFactory)()

    turn, reply = await _hedged_turn(conversation)

    assert (turn.route, turn.status, turn.answer_band) == ("answer", "answered", "hedged")
    assert turn.retrieval_min_score > turn.retrieval_top_score
    assert reply.text.startswith("I'm not certain this answers your question")
    assert reply.sources[0]["slug"] == "installing-the-brightwave-hub"
    assert "[1]" in reply.text
    assert reply.text.rstrip().endswith("\u201cTalk to a person\u201d.")
    assert PERSON_OFFER in reply.text


@pytest.mark.django_db(transaction=True)
async def test_through_a_turn_a_near_miss_is_not_answered_and_a_short_question_is(
    knowledge_base, local_turns
):
    from chat.events import db
    from tests.factories import ConversationFactory

    first, second = await db(ConversationFactory)(), await db(ConversationFactory)()

    near_miss = await _customer_says(
        first, "is there a paid option to stretch the hub warranty to four years?", "n1"
    )
    short = await _customer_says(second, "visa debit accepted?", "s1")

    near_reply = (await db(list)(near_miss.outputs.filter(visibility="public")))[0]
    short_reply = (await db(list)(short.outputs.filter(visibility="public")))[0]
    assert near_miss.status == "answered"
    assert near_miss.answer_band in (BAND_HEDGED, BAND_DONT_KNOW)
    assert PERSON_OFFER in near_reply.text
    assert short.answer_band in (BAND_CONFIDENT, BAND_HEDGED)
    assert short_reply.sources[0]["slug"] == "payment-methods"
    assert "American Express" in short_reply.text or "Visa" in short_reply.text


@pytest.mark.django_db(transaction=True)
async def test_yes_after_the_offer_brings_in_a_person_and_no_thanks_does_not(
    knowledge_base, local_turns
):
    from chat.events import db
    from tests.factories import ConversationFactory

    accepted, declined = await db(ConversationFactory)(), await db(ConversationFactory)()
    await _hedged_turn(accepted)
    await _hedged_turn(declined)

    yes = await _customer_says(accepted, "yes", "h2")
    no = await _customer_says(declined, "no thanks, I'll try that", "h2")

    assert (yes.route, yes.status, yes.intent) == ("escalate", "escalated", "human_request")
    assert no.route != "escalate" and no.status == "answered"
    assert no.intent != "human_request"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("reply", "route"),
    [
        # Thanks and goodbyes close the conversation: a short friendly reply, no ticket.
        ("thanks", "small_talk"),
        ("ok thanks bye", "small_talk"),
        # A new question after the offer is a question, not a "yes".
        ("how about apple pay", "answer"),
    ],
)
async def test_thanks_or_a_new_question_after_the_offer_does_not_open_a_ticket(
    knowledge_base, local_turns, reply, route
):
    from chat.events import db
    from escalation.models import Ticket
    from tests.factories import ConversationFactory

    conversation = await db(ConversationFactory)()
    await _hedged_turn(conversation)

    turn = await _customer_says(conversation, reply, "h2")

    assert (turn.route, turn.status) == (route, "answered")
    assert not await db(Ticket.objects.filter(conversation=conversation).exists)()


@pytest.mark.django_db(transaction=True)
async def test_a_bare_yes_without_an_offer_is_not_a_request_for_a_person(
    knowledge_base, local_turns
):
    from chat.events import db
    from tests.factories import ConversationFactory

    conversation = await db(ConversationFactory)()

    turn = await _customer_says(conversation, "yes", "h1")

    assert turn.route != "escalate"


# --- the same question again ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_the_same_question_again_after_an_answer_brings_in_a_person(
    knowledge_base, local_turns
):
    from chat.events import db
    from tests.factories import ConversationFactory

    conversation = await db(ConversationFactory)()
    first = await _customer_says(conversation, "what is the exit fee", "r1")

    again = await _customer_says(conversation, "What is the exit fee?", "r2")

    assert (first.route, first.status) == ("answer", "answered")
    assert (again.route, again.status, again.intent) == ("escalate", "escalated", "frustration")


@pytest.mark.django_db(transaction=True)
async def test_thanks_twice_or_a_different_question_is_not_a_repeat(knowledge_base, local_turns):
    from chat.events import db
    from tests.factories import ConversationFactory

    conversation = await db(ConversationFactory)()
    await _customer_says(conversation, "what is the exit fee", "r1")
    await _customer_says(conversation, "thanks for your help", "r2")

    thanks_again = await _customer_says(conversation, "thanks for your help", "r3")
    other = await _customer_says(conversation, "what is the standing charge", "r4")

    assert thanks_again.route == "small_talk"
    assert (other.route, other.status) == ("answer", "answered")


# --- a follow-up that continues the previous question -------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("follow_up", "cited"),
    [
        # Alone it finds "Switching to a different plan" (hedged); it means meter readings.
        ("and can I do it in the app?", "submitting-meter-readings"),
        # A new question that starts with "and" keeps its own article.
        ("and what's the exit fee?", "exit-fees"),
    ],
)
async def test_a_follow_up_is_searched_with_the_previous_question_only_when_that_helps(
    knowledge_base, local_turns, follow_up, cited
):
    from chat.events import db
    from tests.factories import ConversationFactory

    conversation = await db(ConversationFactory)()
    await _customer_says(conversation, "how do I submit a meter reading", "f1")

    turn = await _customer_says(conversation, follow_up, "f2")

    assert (turn.route, turn.status) == ("answer", "answered")
    assert turn.sources[0]["slug"] == cited
