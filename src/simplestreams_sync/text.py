"""Shortening messages for one-line outputs without losing what matters."""

from __future__ import annotations

_WORD_SLACK = 15  # how far a cut may move to fall between words


def shorten(text: str, limit: int) -> str:
    """One line of at most `limit` characters. A long message keeps its start (what failed) and its end
    (an error's reason, e.g. "[Errno 111] Connection refused"); the middle goes, between words where
    one ends near the cut."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    head_size = max(1, (limit - 3) * 2 // 5)
    tail_size = max(1, limit - 3 - head_size)
    head, tail = text[:head_size], text[-tail_size:]
    space = head.rfind(" ")
    if space > 0 and space >= head_size - _WORD_SLACK:
        head = head[:space]
    space = tail.find(" ")
    if 0 <= space < _WORD_SLACK:
        tail = tail[space + 1 :]
    return f"{head} … {tail}"
