"""Label selectors (`-l`) and field selectors (`--field-selector`) as the API server parses
them: `app=web,tier!=db`, `env in (prod,staging)`, `!legacy`; `metadata.name=app`."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from registry.errors import RequestInvalid as BadRequest

_KEY = r"(?:[a-z0-9A-Z.-]{1,253}/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]{0,61}[a-z0-9A-Z])?"
_VALUE = r"(?:[a-z0-9A-Z]([-a-z0-9A-Z_.]{0,61}[a-z0-9A-Z])?)?"
_KEY_RE = re.compile(_KEY)
_VALUE_RE = re.compile(_VALUE)


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # =, !=, in, notin, exists, !
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator == "=":
            return present and value == self.values[0]
        if self.operator == "!=":
            return not present or value != self.values[0]
        if self.operator == "in":
            return present and value in self.values
        if self.operator == "notin":
            return not present or value not in self.values
        if self.operator == "exists":
            return present
        return not present  # "!"


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _key(text: str, selector: str) -> str:
    if not _KEY_RE.fullmatch(text):
        raise BadRequest(f'unable to parse requirement: invalid label key "{text}" in selector "{selector}"')
    return text


def _value(text: str, selector: str) -> str:
    if len(text) > 63 or not _VALUE_RE.fullmatch(text):
        raise BadRequest(f'unable to parse requirement: invalid label value "{text}" in selector "{selector}"')
    return text


_SET_RE = re.compile(r"^\s*(\S+)\s+(in|notin)\s*\((.*)\)\s*$")


def parse_label_selector(selector: str | None) -> tuple[Requirement, ...]:
    if not selector or not selector.strip():
        return ()
    if len(selector) > 4096:
        raise BadRequest("label selector too long")
    requirements = []
    for raw in _split_top_level(selector):
        part = raw.strip()
        if not part:
            raise BadRequest(f'unable to parse requirement: empty requirement in selector "{selector}"')
        m = _SET_RE.match(part)
        if m:
            values = tuple(_value(v.strip(), selector) for v in m.group(3).split(",") if v.strip())
            if not values:
                raise BadRequest(f'unable to parse requirement: "{m.group(2)}" needs values in "{selector}"')
            requirements.append(Requirement(_key(m.group(1), selector), m.group(2), values))
        elif "!=" in part:
            key, value = part.split("!=", 1)
            requirements.append(Requirement(_key(key.strip(), selector), "!=", (_value(value.strip(), selector),)))
        elif "=" in part:
            key, value = part.split("==", 1) if "==" in part else part.split("=", 1)
            requirements.append(Requirement(_key(key.strip(), selector), "=", (_value(value.strip(), selector),)))
        elif part.startswith("!"):
            requirements.append(Requirement(_key(part[1:].strip(), selector), "!"))
        else:
            requirements.append(Requirement(_key(part, selector), "exists"))
    return tuple(requirements)


def label_matcher(selector: str | None) -> Callable[[Mapping[str, str]], bool]:
    requirements = parse_label_selector(selector)
    return lambda labels: all(r.matches(labels) for r in requirements)


def parse_field_selector(selector: str | None, supported: tuple[str, ...]) -> dict[str, tuple[str, bool]]:
    """`field=value` / `field!=value` terms -> {field: (value, equal)}; only `supported` fields."""
    terms: dict[str, tuple[str, bool]] = {}
    if not selector or not selector.strip():
        return terms
    for raw in selector.split(","):
        part = raw.strip()
        if "!=" in part:
            field, value = part.split("!=", 1)
            equal = False
        elif "=" in part:
            field, value = part.split("==", 1) if "==" in part else part.split("=", 1)
            equal = True
        else:
            raise BadRequest(f'invalid selector: "{selector}"; can\'t understand "{part}"')
        field = field.strip()
        if field not in supported:
            raise BadRequest(f"field label not supported: {field}")
        terms[field] = (value.strip(), equal)
    return terms


def field_matcher(selector: str | None, supported: tuple[str, ...]) -> Callable[[Mapping[str, str]], bool]:
    terms = parse_field_selector(selector, supported)
    return lambda fields: all((fields.get(f) == v) == equal for f, (v, equal) in terms.items())
