"""validate_element_id: ids that would escape a storage prefix are refused before any IO."""

from __future__ import annotations

import pytest
from klio_runtime.message import InvalidElementId, validate_element_id


@pytest.mark.parametrize(
    "element",
    [
        "track-0001",
        "spotify:track:6rqhFgbbKwnb9MLmUQDhG6",
        "2024/05/episode.ogg",
        "bände/曲-🎵",
        "a..b/c",  # dots inside a name are not a segment
        "./here",
        b"bytes-id",
    ],
)
def test_safe_ids_are_returned_as_text(element: str | bytes) -> None:
    expected = element.decode() if isinstance(element, bytes) else element
    assert validate_element_id(element) == expected


@pytest.mark.parametrize(
    ("element", "reason"),
    [
        ("", "it is empty"),
        (b"", "it is empty"),
        ("../../etc/passwd", "'..' path segment"),
        ("a/../../b", "'..' path segment"),
        ("..", "'..' path segment"),
        ("a\\..\\b", "'..' path segment"),
        (".", "names the prefix itself"),
        ("./.", "names the prefix itself"),
        ("/etc/passwd", "absolute path"),
        ("\\\\server\\share", "absolute path"),
        ("C:\\Windows", "drive letter"),
        ("c:/x", "drive letter"),
        ("::", "drive letter"),
        ("gs://other-bucket/x", "URL"),
        ("file:///etc/passwd", "URL"),
        ("a\x00b", "NUL character at index 1"),
        ("a\nb", "control character U\\+000A at index 1"),
        ("a\x7fb", "control character U\\+007F"),
        (b"a\xffb", "not UTF-8"),
    ],
)
def test_unsafe_ids_are_refused_naming_element_and_reason(
    element: str | bytes, reason: str
) -> None:
    with pytest.raises(InvalidElementId, match=reason) as info:
        validate_element_id(element)
    assert repr(element) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_long_ids_are_shown_truncated() -> None:
    element = "../" + "x" * 5000
    with pytest.raises(InvalidElementId) as info:
        validate_element_id(element)
    text = str(info.value)
    assert len(text) < 200
    assert "5003 long" in text
