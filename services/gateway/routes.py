"""Gateway routing layer: ``google.api.http`` path templates compiled into a router.

Template grammar (google/api/http.proto)::

    Template = "/" Segments [ Verb ] ;
    Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;
    Verb     = ":" LITERAL ;

Paths are matched percent-encoded (so an id holding ``%2F`` stays one segment) and each
variable is decoded afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

from services.gateway.descriptors import HttpBinding, Method

_VARIABLE = re.compile(r"\{([^}=]+)(?:=([^}]*))?\}")


class TemplateError(ValueError):
    """A path template the gateway cannot serve."""


@dataclass(frozen=True)
class PathVariable:
    field_path: tuple[str, ...]  # ("product", "id")
    multi_segment: bool  # pattern with "/" or "**": the value may hold slashes

    @property
    def name(self) -> str:
        return ".".join(self.field_path)


@dataclass
class Route:
    method: Method
    binding: HttpBinding
    pattern: re.Pattern[str]
    variables: tuple[PathVariable, ...]
    #: Literal characters: more specific templates are tried first.
    specificity: tuple[int, int]
    #: First literal segment after the version, the router's index key.
    key: str
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def verb(self) -> str:
        return self.binding.verb

    @property
    def template(self) -> str:
        return self.binding.template

    def match(self, raw_path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(raw_path)
        if found is None:
            return None
        values = found.groups()
        return {v.name: unquote(value) for v, value in zip(self.variables, values, strict=True)}


def _segment_regex(segment_pattern: str) -> tuple[str, bool]:
    parts: list[str] = []
    multi = False
    for piece in segment_pattern.split("/"):
        if piece == "**":
            parts.append(".+")
            multi = True
        elif piece == "*":
            parts.append("[^/]+")
        else:
            parts.append(re.escape(piece))
    if len(parts) > 1:
        multi = True
    return "/".join(parts), multi


def compile_template(template: str) -> tuple[re.Pattern[str], tuple[PathVariable, ...], int]:
    """Regex (one group per variable), the variables, and the count of literal characters."""
    if not template.startswith("/"):
        raise TemplateError(f"template must start with '/': {template!r}")
    verb = ""
    # The verb follows the last '}' or '/', whichever is later.
    tail_start = max(template.rfind("/"), template.rfind("}"))
    colon = template.find(":", tail_start + 1)
    if colon != -1:
        template, verb = template[:colon], template[colon + 1 :]
    regex: list[str] = []
    variables: list[PathVariable] = []
    literal = len(verb)
    position = 0
    for found in _VARIABLE.finditer(template):
        text = template[position : found.start()]
        for piece in re.split(r"(\*\*|\*)", text):
            if piece == "**":
                regex.append(".+")
            elif piece == "*":
                regex.append("[^/]+")
            else:
                regex.append(re.escape(piece))
                literal += len(piece)
        field_path = tuple(found.group(1).strip().split("."))
        if not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p) for p in field_path):
            raise TemplateError(f"bad variable in {template!r}")
        segment_regex, multi = _segment_regex(found.group(2) or "*")
        regex.append(f"({segment_regex})")
        variables.append(PathVariable(field_path, multi))
        position = found.end()
    rest = template[position:]
    for piece in re.split(r"(\*\*|\*)", rest):
        if piece == "**":
            regex.append(".+")
        elif piece == "*":
            regex.append("[^/]+")
        else:
            regex.append(re.escape(piece))
            literal += len(piece)
    if verb:
        regex.append(re.escape(":" + verb))
    return re.compile("".join(regex)), tuple(variables), literal


def _index_key(template: str) -> str:
    """``/v1/products/{id}`` → ``products``; ``/v1/products:batchGet`` → ``products``."""
    segments = [s for s in template.split("/") if s]
    for segment in segments[1:2] or segments[:1]:
        if "{" in segment or "*" in segment:
            return ""
        return segment.split(":", 1)[0]
    return ""


def _request_key(raw_path: str) -> str:
    segments = raw_path.split("/", 3)
    if len(segments) < 3:
        return raw_path.strip("/").split(":", 1)[0]
    return segments[2].split(":", 1)[0]


class Router:
    """HTTP method + path → route and decoded path variables."""

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self._by_verb: dict[str, dict[str, list[Route]]] = {}
        self._wildcard: dict[str, list[Route]] = {}
        self.routes: list[Route] = []
        for route in routes:
            self.add(route)

    def add(self, route: Route) -> None:
        self.routes.append(route)
        if route.key:
            bucket = self._by_verb.setdefault(route.verb, {}).setdefault(route.key, [])
        else:
            bucket = self._wildcard.setdefault(route.verb, [])
        bucket.append(route)
        bucket.sort(key=lambda r: r.specificity, reverse=True)

    def _candidates(self, verb: str, raw_path: str) -> Iterable[Route]:
        keyed = self._by_verb.get(verb)
        if keyed:
            yield from keyed.get(_request_key(raw_path), ())
        yield from self._wildcard.get(verb, ())

    def match(self, verb: str, raw_path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self._candidates(verb, raw_path):
            values = route.match(raw_path)
            if values is not None:
                return route, values
        return None

    def allowed_verbs(self, raw_path: str) -> list[str]:
        """Verbs some route serves this path with (for 405 and CORS preflight)."""
        return sorted(
            verb
            for verb in {*self._by_verb, *self._wildcard}
            if any(r.match(raw_path) is not None for r in self._candidates(verb, raw_path))
        )


def build_route(method: Method, binding: HttpBinding) -> Route:
    pattern, variables, literal = compile_template(binding.template)
    has_verb = ":" in binding.template.rsplit("/", 1)[-1].rsplit("}", 1)[-1]
    return Route(
        method=method,
        binding=binding,
        pattern=pattern,
        variables=variables,
        specificity=(int(has_verb), literal),
        key=_index_key(binding.template),
    )
