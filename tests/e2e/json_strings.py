"""JSON documents with one string changed: where a client may put a lone surrogate (`"\\ud800"`, valid
JSON, not encodable as UTF-8) to probe the API."""

import json
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

Path = tuple[str | int, ...]

LONE_SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])


def string_paths(value: Any, path: Path = ()) -> Iterator[Path]:
    """The path of every string in a JSON document."""
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from string_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from string_paths(item, (*path, index))


def replaced(document: Any, path: Path, text: str) -> Any:
    """A copy of `document` with the string at `path` replaced by `text`."""
    if not path:
        return text
    copy = json.loads(json.dumps(document))
    parent = copy
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = text
    return copy


def with_lone_surrogate(data: st.DataObject, document: Any) -> Any:
    """`document` with a lone surrogate inserted into one of its strings (drawn), if it has any."""
    paths = list(string_paths(document))
    if not paths:
        return document
    path = data.draw(st.sampled_from(paths))
    original: str = _at(document, path)
    cut = data.draw(st.integers(0, len(original)))
    return replaced(document, path, original[:cut] + data.draw(LONE_SURROGATES) + original[cut:])


def _at(document: Any, path: Path) -> Any:
    for step in path:
        document = document[step]
    return document
