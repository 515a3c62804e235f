"""YAML as people write it, and nothing else: the cluster file's text into plain Python values.

Anchors, aliases and merge keys (``<<: *defaults``) work. A key written twice in one mapping is
refused (PyYAML would keep the last one silently); keys brought in by a merge and written again
beside it are overrides, as YAML means them. Complex keys and tags (``!!python/object``, ``!foo``)
are refused with the line and the fix: a cluster file holds text, numbers, booleans, lists and
mappings with plain keys.
"""

from __future__ import annotations

from typing import Any

import yaml

MERGE_TAG = "tag:yaml.org,2002:merge"


class ClusterYamlLoader(yaml.SafeLoader):
    """A SafeLoader that refuses complex keys and a key written twice in one mapping."""


def _construct_mapping(loader: ClusterYamlLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "a key is a list or a mapping (a complex `? ...` key); "
                "a cluster file's keys are plain words like `name:`",
                key_node.start_mark,
            )
        key = key_node.value if key_node.tag == MERGE_TAG else loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} is written twice in one mapping", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)  # SafeLoader's: merges `<<` first, explicit keys win


def _refuse_tag(loader: ClusterYamlLoader, tag_suffix: str, node: yaml.Node) -> Any:
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    raise yaml.constructor.ConstructorError(
        None,
        None,
        f"the tag {tag} is not allowed in a cluster file; remove it, "
        "a cluster file holds plain text, numbers, true/false, lists and mappings",
        node.start_mark,
    )


ClusterYamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
ClusterYamlLoader.add_multi_constructor("", _refuse_tag)  # any tag SafeLoader has no constructor for


def parse_yaml(text: str) -> Any:
    """The YAML document in ``text``, or a ValueError naming the line, the problem and the fix."""
    try:
        return yaml.load(text, Loader=ClusterYamlLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        if isinstance(error, yaml.constructor.ConstructorError):  # valid YAML, but not what a cluster file holds
            raise ValueError(f"{where}{problem}; fix the file there.") from None
        raise ValueError(f"{where}not valid YAML ({problem}); fix the file there.") from None
