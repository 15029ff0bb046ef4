"""Articles split into passages: sections, numbered steps and short prose, anchored."""

from __future__ import annotations

from chat.assistant.passages import PROSE_MAX_CHARS, article_passages

STEPS_BODY = (
    "The Hub connects to 2.4 GHz Wi-Fi only. Networks with a login page will not work. "
    "1. Make sure the light flashes blue. If it does not, hold the button for 5 seconds. "
    "2. In the app go to Settings > Devices > Wi-Fi and tap Connect. "
    "3. Enter your Wi-Fi password; it is case sensitive. Pairing takes up to 2 minutes. "
    "A steady green light means the Hub is online. Amber means your router has no internet, "
    "so check your router's connection. Red means an error code is shown on the screen; "
    "see the article for that code. If you change your router later, repeat these steps."
)


def test_intro_steps_and_closing_prose_become_anchored_passages_covering_the_article():
    passages = article_passages(body=STEPS_BODY)

    assert [p.anchor for p in passages] == ["p1", "step-1", "step-2", "step-3", "p2"]
    assert [p.kind for p in passages] == ["prose", "step", "step", "step", "prose"]
    assert " ".join(p.text for p in passages).split() == STEPS_BODY.split()  # all, once, in order
    assert passages[3].text.startswith("3. Enter your Wi-Fi password")
    # The last step keeps a few short sentences, not everything that follows the list.
    assert passages[3].text.endswith("A steady green light means the Hub is online.")
    assert passages[4].text.startswith("Amber means")
    assert passages[3].display_text.startswith("Enter your Wi-Fi password")
    assert passages[3].number == 3


def test_long_prose_is_cut_at_sentences_into_short_passages():
    sentence = "Your bill shows the standing charge and the unit rate for every day of the month. "
    passages = article_passages(body=sentence * 12)

    assert len(passages) > 2
    assert all(len(p.text) <= PROSE_MAX_CHARS for p in passages)
    assert all(p.text.endswith(".") for p in passages)


def test_headings_name_their_sections_and_repeated_anchors_stay_unique():
    body = (
        "## Before you start\n\nSwitch off the power at the fuse box.\n\n"
        "Fitting the backplate\n\n1. Remove the old thermostat.\n2. Fix the backplate.\n\n"
        "## Before you start\n\nKeep the screws."
    )

    passages = article_passages(body=body)

    assert [(p.anchor, p.heading) for p in passages] == [
        ("before-you-start", "Before you start"),
        ("fitting-the-backplate-step-1", "Fitting the backplate"),
        ("fitting-the-backplate-step-2", "Fitting the backplate"),
        ("before-you-start-2", "Before you start"),
    ]
    assert [p.kind for p in passages] == ["section", "step", "step", "section"]


def test_anchors_are_stable_when_another_part_of_the_article_changes():
    edited = STEPS_BODY.replace("Networks with a login page will not work.", "Hotel Wi-Fi fails.")

    before = {p.anchor: p.text for p in article_passages(body=STEPS_BODY)}
    after = {p.anchor: p.text for p in article_passages(body=edited)}

    assert before.keys() == after.keys()
    assert [a for a in before if before[a] != after[a]] == ["p1"]


def test_numbers_inside_sentences_are_not_taken_for_steps():
    body = "It costs 89 euros. Appointments take 10 working days. Call 0800 020 3040."

    passages = article_passages(body=body)

    assert [p.kind for p in passages] == ["prose"]
