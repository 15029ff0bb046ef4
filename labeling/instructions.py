"""The labeling task's wording, taken from the blog's Ground Truth custom template."""

from __future__ import annotations

# <crowd-classifier header="How relevant is the below answer to the question: {{ source }}">
TASK_HEADER = "How relevant is the below answer to the question"

# <short-instructions>
SHORT_INSTRUCTIONS = "How relevant is the below answer to the question"

# <full-instructions header="Conversation Relevance Instructions">
FULL_INSTRUCTIONS_HEADER = "Conversation Relevance Instructions"
FULL_INSTRUCTIONS = {
    "header": FULL_INSTRUCTIONS_HEADER,
    "question": "How relevant is the below answer to the given question?",
    "scale": [
        (5, "Highly relevant: answers the question fully and correctly."),
        (4, "Relevant: answers it, with small gaps or extra detail."),
        (3, "Moderately relevant: partly answers it or is partly wrong."),
        (2, "Slightly relevant: on topic but does not answer it."),
        (1, "Not relevant: wrong, off topic or empty."),
    ],
    "notes": [
        "Judge the answer against the question and the retrieved context shown below it.",
        "If you know a better answer, write it: it becomes a training example.",
        "Keys: 1-5 choose the relevance, Enter saves and opens the next item, "
        "Ctrl+Enter saves from a text box, Esc leaves a text box.",
    ],
}
