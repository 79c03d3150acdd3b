"""Shortening one-line messages: the start and the reason at the end survive."""

from simplestreams_sync.text import shorten

REFUSED = (
    "keystone https://127.0.0.1:5000/v3: cannot connect (Unable to establish connection to "
    "https://127.0.0.1:5000/v3/auth/tokens: Max retries exceeded with url: /v3/auth/tokens (Caused by "
    "NewConnectionError('Failed to establish a new connection: [Errno 111] Connection refused')))"
)


def test_a_short_message_is_kept_whole_on_one_line():
    assert shorten("HTTP 404\n  not found", 80) == "HTTP 404 not found"


def test_a_long_message_keeps_its_start_and_its_reason():
    short = shorten(REFUSED, 100)

    assert len(short) <= 100
    assert short.startswith("keystone https://127.0.0.1:5000/v3")
    assert short.endswith("[Errno 111] Connection refused')))")
    assert " … " in short


def test_cuts_fall_between_words_when_one_ends_near_them():
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"

    short = shorten(words, 40)

    assert short == "alpha beta … iota kappa lambda mu"  # whole words from the start and from the end


def test_without_a_word_end_near_the_cut_the_cut_falls_inside_a_word():
    text = "x" * 30 + " " + "y" * 30

    short = shorten(text, 40)

    assert short == "x" * 14 + " … " + "y" * 23
    assert len(short) == 40
