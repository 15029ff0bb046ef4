"""Summarise py-spy collapsed stacks (``bench/chat_ws.py --profile FILE``) by where the
time went: the event loop versus worker threads, and within them model inference,
database work, the channel layer, socket writes, imports and waiting.

    .venv/bin/python bench/profile_summary.py /tmp/profile.txt [--top 25]

Prints a table per category, the top self-time functions outside waiting, and a JSON
line last.
"""

from __future__ import annotations

import argparse
import collections
import json
import re

# First match wins; each sample is counted once, under the category of its stack.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("startup imports", ("_find_and_load", "_call_with_frames_removed")),
    (
        "waiting (locks, queues, select)",
        (
            "Condition.wait",
            "EpollSelector.select",
            "_worker (concurrent/futures/thread.py",
            "Event.wait",
            "Lock.acquire",
            "_wait_for_tstate_lock",
            "Queue.get",
            # A C-level lock acquire shows as self time of the function holding the
            # ``with lock:`` (the MiniLM encoder lock before the rebuild).
            "embed_texts (chat/assistant/embeddings.py",
        ),
    ),
    (
        "model inference (torch)",
        ("torch/", "sentence_transformers/", "transformers/", "tokenizers"),
    ),
    ("sentiment (VADER)", ("vaderSentiment",)),
    ("database: connect/close", ("get_new_connection", "DatabaseWrapper.close", "_close (")),
    ("database: queries and ORM", ("django/db/",)),
    ("channel layer (Redis)", ("channels_redis/", "redis/")),
    ("websocket framing and writes", ("_SelectorSocketTransport.write", "autobahn/")),
    ("json", ("json/",)),
    ("langchain", ("langchain_core/",)),
    ("loopdesk code", ("/chat/", "/escalation/", "/labeling/", "/training/", "/config/")),
]


OWN_CODE = re.compile(
    r"\((?:/[^)]*/)?(?:chat|escalation|labeling|training|accounts|config)/[^)]*\)"
)


def category_of(frames: list[str]) -> str:
    leaf_first = list(reversed(frames))
    for name, needles in CATEGORIES:
        # Waiting is decided by the innermost frame only, socket work by the innermost
        # few (every event-loop stack has Twisted's reactor at its base); the rest by any.
        if name.startswith("waiting"):
            scope = leaf_first[:1]
        elif name.startswith("websocket"):
            scope = leaf_first[:6]
        else:
            scope = leaf_first
        if any(needle in frame for frame in scope for needle in needles):
            return name
    return "other"


def thread_of(frames: list[str]) -> str:
    if "_run_module_as_main" in frames[0]:
        return "event loop"
    stack = ";".join(frames)
    if "_call_with_connections" in stack or "SyncToAsync" in stack:
        return "database threads"
    if "inference" in stack or "embed_texts" in stack or "torch/" in stack:
        return "inference thread"
    return "other threads"


def summarise(path: str, top: int) -> dict:
    total = 0
    by_thread: collections.Counter[str] = collections.Counter()
    by_category: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    self_time: collections.Counter[str] = collections.Counter()
    # Inclusive time of the project's own functions: where in Loopdesk the time goes.
    ours: collections.Counter[str] = collections.Counter()
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = handle.readlines()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = stack.split(";")
        thread = thread_of(frames)
        total += samples
        by_thread[thread] += samples
        category = category_of(frames)
        by_category[thread][category] += samples
        if not category.startswith("waiting"):
            self_time[re.sub(r":\d+\)$", ")", frames[-1])] += samples
        for frame in {re.sub(r":\d+\)$", ")", f) for f in frames if OWN_CODE.search(f)}:
            ours[frame] += samples
    print(f"samples: {total}")
    result: dict = {"samples": total, "threads": {}}
    for thread, counter in by_category.items():
        share = by_thread[thread] / total if total else 0
        print(f"\n{thread}: {by_thread[thread]} samples ({share:.0%} of all)")
        result["threads"][thread] = {}
        for name, samples in counter.most_common():
            print(f"  {samples / total:6.1%}  {name}")
            result["threads"][thread][name] = round(samples / total, 4)
    print(f"\ntop {top} self time outside waiting:")
    for frame, samples in self_time.most_common(top):
        print(f"  {samples / total:6.1%}  {frame[:140]}")
    print(f"\ntop {top} Loopdesk functions, inclusive (the time in them and what they call):")
    for frame, samples in ours.most_common(top):
        print(f"  {samples / total:6.1%}  {frame[:140]}")
    result["loopdesk_inclusive"] = {
        frame: round(samples / total, 4) for frame, samples in ours.most_common(top)
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(json.dumps(summarise(args.path, args.top)))


if __name__ == "__main__":
    main()
