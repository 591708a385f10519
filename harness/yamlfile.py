"""Read YAML that a user wrote, with limits: the one YAML reader of the harness.

Built on ``yaml.SafeLoader`` (no Python objects are ever constructed) and stricter still:

* a file over :data:`MAX_FILE_BYTES` (a ``--set`` value over :data:`MAX_TEXT_CHARS`) is refused
  before it is parsed;
* a key given twice in one mapping is refused (YAML says keys are unique; PyYAML lets the last win);
* aliases are allowed only while the document, with every alias expanded, stays under
  :data:`MAX_EXPANDED_NODES` nodes ("billion laughs" fails at once, without expanding anything);
* nesting deeper than :data:`MAX_DEPTH` is refused (no ``RecursionError``);
* only the plain tags are constructed: strings, integers, floats, booleans, null, mappings and
  sequences. ``!!binary``, ``!!set``, ``!!omap``, ``!!pairs``, ``!!timestamp`` and every other tag
  are refused, and an unquoted date (``2024-01-01``) is read as the string it looks like.

Every refusal is a :class:`YamlLimitError` (a ``yaml.YAMLError``) with a one-line reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_FILE_BYTES = 1 << 20  # 1 MiB: the packaged configs, plans and corpora are under 4 KiB
MAX_TEXT_CHARS = 10_000   # one --set value
MAX_DEPTH = 32            # a run config nests 3 deep; a sweep grid 4
MAX_EXPANDED_NODES = 100_000

_TAG = "tag:yaml.org,2002:"
ALLOWED_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null", "map", "seq", "merge"))


class YamlLimitError(yaml.YAMLError):
    """YAML refused by one of this module's limits; the message is one line."""


class _LimitedLoader(yaml.SafeLoader):
    """SafeLoader with the limits of this module; see its docstring."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    # Composition: depth is checked while nodes are composed (the composer recurses), aliases
    # and expansion once the document's node graph is complete.
    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlLimitError(f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self):
        node = super().compose_document()
        _check_expansion(node)
        return node

    def construct_object(self, node, deep=False):
        if node.tag not in ALLOWED_TAGS:
            tag = node.tag.replace(_TAG, "!!")
            raise YamlLimitError(f"tag {tag[:40]} is not allowed (line {node.start_mark.line + 1}); "
                                 "allowed: plain strings, numbers, booleans, null, mappings, lists")
        return super().construct_object(node, deep=deep)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            for key_node, _ in node.value:
                if key_node.tag == _TAG + "merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: SafeLoader's own error follows
                    continue
                if duplicate:
                    raise YamlLimitError(f"duplicate key {_short(key)} (line {key_node.start_mark.line + 1}); "
                                         "each key may appear once in a mapping")
        return super().construct_mapping(node, deep=deep)


# No implicit timestamps: an unquoted date stays a string, as JSON would keep it.
_LimitedLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TAG + "timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:40]}... ({len(text)} characters)"


def _check_expansion(root) -> None:
    """Refuse a node graph whose tree (aliases expanded) has more than MAX_EXPANDED_NODES nodes.
    Sizes are memoised per node, so the check costs the graph's size, not the tree's."""
    if root is None:
        return
    sizes: dict[int, int] = {}

    def size(node, depth: int = 0) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if depth > MAX_DEPTH + 1:  # only a recursive alias (&a [*a]) gets here
            raise YamlLimitError("a recursive alias")
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        if total > MAX_EXPANDED_NODES:
            raise YamlLimitError(f"aliases expand to more than {MAX_EXPANDED_NODES:,} nodes")
        sizes[id(node)] = total
        return total

    size(root)


def loads(text: str) -> Any:
    """Parse one YAML document with the limits above (YamlLimitError, or yaml.YAMLError when the
    text is not YAML)."""
    if len(text) > MAX_FILE_BYTES:  # read_file checks the size in bytes before decoding
        raise YamlLimitError(f"{len(text):,} characters; allowed: up to {MAX_FILE_BYTES:,}")
    loader = _LimitedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_value(text: str) -> Any:
    """One ``--set`` value (at most MAX_TEXT_CHARS characters) read as YAML."""
    if len(text) > MAX_TEXT_CHARS:
        raise YamlLimitError(f"a value of {len(text):,} characters; allowed: up to {MAX_TEXT_CHARS:,}")
    return loads(text)


def read_file(path: Path) -> Any:
    """A YAML file of at most MAX_FILE_BYTES, parsed with the limits above. OSError and
    UnicodeDecodeError pass through for the caller to name."""
    path = Path(path)
    with path.open("rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise YamlLimitError(f"file is over the limit of {MAX_FILE_BYTES:,} bytes")
    return loads(data.decode("utf-8"))
