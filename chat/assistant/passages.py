"""Articles split into passages: the units the assistant retrieves, quotes and cites.

A passage is a section under a heading, one numbered step, or a few sentences of prose:
short enough that a citation points at the answer, long enough to answer on its own.
The passages of an article cover its whole text, in order, exactly once, so the help
page renders an article as its passages, each with its anchor.

Anchors are stable while the article keeps its structure: a heading gives
``<heading-slug>``, a numbered step ``step-<n>`` (its own number), prose ``p<n>`` (its
order among the article's prose passages). Pure functions, no database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.utils.text import slugify

# Prose passages are packed sentence by sentence up to this many characters; a trailing
# piece shorter than PROSE_MIN_CHARS joins the passage before it.
PROSE_MAX_CHARS = 320
PROSE_MIN_CHARS = 90
# The last step of a list runs into the prose after it (nothing marks the list's end):
# it keeps its first sentence and what follows while it stays this short.
LAST_STEP_MAX_CHARS = 180

_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“(])")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$")
# "1. Do this" at the start of a line or inline after a sentence.
_STEP = re.compile(r"(?:^|(?<=[.!?:;]\s)|(?<=\n))(\d{1,2})[.)]\s+(?=\S)")


@dataclass(frozen=True)
class PassageSpec:
    """One passage of an article, in article order."""

    position: int
    anchor: str
    kind: str  # "section" | "step" | "prose"
    heading: str
    text: str
    number: int = 0  # a step's own number

    @property
    def display_text(self) -> str:
        """The text without a step's leading "3. " (the help page numbers the list)."""
        if self.kind == "step":
            return re.sub(r"^\d{1,2}[.)]\s+", "", self.text)
        return self.text


def sentences_split(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_SPLIT.split(text) if s.strip()]


def _blocks(body: str) -> list[tuple[str, str]]:
    """(heading, paragraph) pairs: paragraphs are separated by blank lines; a markdown
    heading, or a lone short line without final punctuation, names what follows."""
    heading = ""
    found: list[tuple[str, str]] = []
    for raw in re.split(r"\n\s*\n", body.replace("\r\n", "\n").strip()):
        lines = [line.strip() for line in raw.strip().split("\n") if line.strip()]
        if not lines:
            continue
        first = _HEADING.match(lines[0])
        if first or (
            len(lines) == 1
            and len(lines[0]) <= 80
            and not re.search(r"[.!?:;,]$", lines[0])
            and not _STEP.match(lines[0])
        ):
            heading = first.group(1) if first else lines[0]
            if len(lines) == 1:
                continue
            lines = lines[1:]
        found.append((heading, "\n".join(lines)))
    return found


def _steps(paragraph: str) -> tuple[str, list[tuple[int, str]], str]:
    """(text before, [(number, step text)], text after) for a paragraph holding a list
    numbered 1, 2, 3, ...; else (paragraph, [], "")."""
    marks = list(_STEP.finditer(paragraph))
    run: list[re.Match[str]] = []
    for mark in marks:
        if int(mark.group(1)) == len(run) + 1:
            run.append(mark)
        elif run and int(mark.group(1)) == 1 and len(run) < 2:
            run = [mark]
    if len(run) < 2:
        return paragraph, [], ""
    before = paragraph[: run[0].start()].strip()
    steps: list[tuple[int, str]] = []
    for i, mark in enumerate(run):
        end = run[i + 1].start() if i + 1 < len(run) else len(paragraph)
        steps.append((int(mark.group(1)), paragraph[mark.start() : end].strip()))
    number, last = steps[-1]
    parts = sentences_split(last)
    kept = parts[:1]
    for part in parts[1:]:
        if len(" ".join([*kept, part])) > LAST_STEP_MAX_CHARS:
            break
        kept.append(part)
    steps[-1] = (number, " ".join(kept))
    after = " ".join(parts[len(kept) :])
    return before, steps, after


def _prose_chunks(text: str) -> list[str]:
    chunks: list[str] = []
    current: list[str] = []
    for sentence in sentences_split(text):
        if current and len(" ".join([*current, sentence])) > PROSE_MAX_CHARS:
            chunks.append(" ".join(current))
            current = []
        current.append(sentence)
    if current:
        tail = " ".join(current)
        if chunks and len(tail) < PROSE_MIN_CHARS:
            chunks[-1] = f"{chunks[-1]} {tail}"
        else:
            chunks.append(tail)
    return chunks


def article_passages(*, body: str) -> list[PassageSpec]:
    """The article's passages in order, with unique anchors."""
    pieces: list[tuple[str, str, str, int]] = []  # (kind, heading, text, step number)
    for heading, paragraph in _blocks(body):
        before, steps, after = _steps(paragraph)
        kind = "section" if heading else "prose"
        pieces += [(kind, heading, chunk, 0) for chunk in _prose_chunks(before)]
        pieces += [("step", heading, text, number) for number, text in steps]
        pieces += [(kind, heading, chunk, 0) for chunk in _prose_chunks(after)]
    specs: list[PassageSpec] = []
    used: set[str] = set()
    prose = 0
    for position, (kind, heading, text, number) in enumerate(pieces):
        heading_slug = slugify(heading)[:60].strip("-")
        if kind == "step":
            anchor = f"{heading_slug}-step-{number}" if heading_slug else f"step-{number}"
        elif heading_slug:
            anchor = heading_slug
        else:
            prose += 1
            anchor = f"p{prose}"
        base, n = anchor, 1
        while anchor in used:
            n += 1
            anchor = f"{base}-{n}"
        used.add(anchor)
        specs.append(
            PassageSpec(
                position=position,
                anchor=anchor,
                kind=kind,
                heading=heading,
                text=text,
                number=number,
            )
        )
    return specs


def passage_document(*, title: str, heading: str, text: str) -> str:
    """The text a passage is embedded and indexed as: its article's title (and heading)
    give a step like "Tap Save" the context it lacks on its own."""
    context = f"{title}: {heading}" if heading else title
    return f"{context}\n\n{text}"
