"""The upload body is sent to Glance in small HTTP chunks cut from the verified stream."""

import hashlib

import pytest

from simplestreams_sync.glance_transport import UPLOAD_PIECE
from simplestreams_sync.glance_transport import pieces as upload_pieces
from simplestreams_sync.source import SourceImage
from simplestreams_sync.transfer import VerificationError, VerifyingStream

DATA = bytes(range(256)) * 1000  # 256,000 bytes


def image_of(data: bytes) -> SourceImage:
    return SourceImage(
        source_content_id="c",
        product_name="p",
        version_name="v",
        item_name="disk1.img",
        url="http://127.0.0.1/x.img",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        md5=None,
        metadata={},
    )


def test_pieces_keep_every_byte_in_order_and_are_at_most_the_piece_size():
    chunks = [DATA[:100_000], DATA[100_000:100_001], DATA[100_001:]]
    pieces = list(upload_pieces(chunks, size=4096))
    assert b"".join(pieces) == DATA
    assert max(len(piece) for piece in pieces) <= 4096
    assert all(len(piece) > 0 for piece in pieces)


def test_pieces_are_upload_pieces_by_default():
    assert [len(p) for p in upload_pieces([bytes(2 * UPLOAD_PIECE + 10)])] == [UPLOAD_PIECE, UPLOAD_PIECE, 10]


def test_no_byte_of_a_bad_last_chunk_is_passed_on():
    source = image_of(DATA)
    corrupted = DATA[:-1] + b"\x00"
    chunk = 32_000
    stream = VerifyingStream(source, [corrupted[i : i + chunk] for i in range(0, len(corrupted), chunk)], "sha512")
    passed = []
    with pytest.raises(VerificationError, match="does not match"):
        for piece in upload_pieces(stream, size=1000):
            passed.append(bytes(piece))
    assert len(b"".join(passed)) == len(DATA) - chunk  # the whole last chunk was withheld
