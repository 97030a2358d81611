"""Label and field selectors: parsing as apimachinery does, and matching objects.

Fed by list, watch and deletecollection requests (`labelSelector=`,
`fieldSelector=`) and by workload specs (a LabelSelector object); consumed by
the registry, the watch filter and the controllers. Parse errors and
unsupported field labels raise BadRequestError with Kubernetes' text, which the
API layer returns as 400.

The label-selector grammar is labels.Parse's (a lexer plus a recursive-descent
parser); field selectors are fields.ParseSelector's (split on unescaped commas,
`=`, `==`, `!=`, backslash escapes). Which fields a kind can select, and the
message for one it cannot, follow the per-kind field label conversion functions
(pkg/apis/*/v1/conversion.go) and the registries' ToSelectableFields.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import labels as fe
from .errors import BadRequestError, Cause

# selection.Operator values.
IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "in", "notin", "=", "==", "!="
EXISTS, DOES_NOT_EXIST, GREATER_THAN, LESS_THAN = "exists", "!", "gt", "lt"
_BINARY = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN)
_VALID_OPERATORS = _BINARY + (EXISTS, DOES_NOT_EXIST)


class _ParseError(Exception):
    pass


# --- requirements -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Requirement:
    """One label requirement: `key operator values`. Build it with `Requirement.new` to validate."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    @classmethod
    def new(cls, key: str, operator: str, values: list[str] | tuple[str, ...] | None,
            path: str | None = None) -> Requirement:
        """labels.NewRequirement; raises _ParseError with the aggregated field errors.

        `path` is the field path the errors carry; labels.Parse passes none, which
        Go prints as `<nil>` for the key and bare `values[i]...` for values.
        """
        causes = _requirement_causes(key, operator, values, path)
        if causes:
            raise _ParseError(_aggregate(causes))
        return cls(key, operator, tuple(values or ()))

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return self.key in labels and labels[self.key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return self.key not in labels or labels[self.key] not in self.values
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        if op in (GREATER_THAN, LESS_THAN):
            if self.key not in labels or len(self.values) != 1:
                return False
            try:
                have, want = _parse_int64(labels[self.key]), _parse_int64(self.values[0])
            except ValueError:
                return False
            return have > want if op == GREATER_THAN else have < want
        return False

    def __str__(self) -> str:
        op = self.operator
        text = ("!" if op == DOES_NOT_EXIST else "") + self.key
        if op in (EXISTS, DOES_NOT_EXIST):
            return text
        text += {EQUALS: "=", DOUBLE_EQUALS: "==", NOT_EQUALS: "!=", IN: " in ", NOT_IN: " notin ",
                 GREATER_THAN: ">", LESS_THAN: "<"}[op]
        values = self.values[0] if len(self.values) == 1 else ",".join(sorted(self.values))
        return text + (f"({values})" if op in (IN, NOT_IN) else values)


def _parse_int64(text: str) -> int:
    """strconv.ParseInt(s, 10, 64): an optional sign and decimal digits only."""
    body = text[1:] if text[:1] in "+-" else text
    if not body.isascii() or not body.isdigit():
        raise ValueError(text)
    value = int(text)
    if not -(2 ** 63) <= value < 2 ** 63:
        raise ValueError(text)
    return value


def _child(path: str | None, name: str) -> str:
    return f"{path}.{name}" if path else name


def _requirement_causes(key: str, op: str, values: Any, path: str | None) -> list[Cause]:
    causes: list[Cause] = []
    key_errors = fe.qualified_name(key)
    if key_errors:
        causes.append(fe.invalid(_child(path, "key"), key, "; ".join(key_errors)))
    values_path = _child(path, "values")
    vals = list(values or [])
    # Go prints a nil slice as []string(nil) and an empty one as []string{}.
    shown = fe.raw("[]string(nil)") if values is None else vals
    if op in (IN, NOT_IN):
        if not vals:
            causes.append(fe.invalid(values_path, shown, "for 'in', 'notin' operators, values set can't be empty"))
    elif op in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
        if len(vals) != 1:
            causes.append(fe.invalid(values_path, shown, "exact-match compatibility requires one single value"))
    elif op in (EXISTS, DOES_NOT_EXIST):
        if vals:
            causes.append(fe.invalid(values_path, shown, "values set must be empty for exists and does not exist"))
    elif op in (GREATER_THAN, LESS_THAN):
        if len(vals) != 1:
            causes.append(fe.invalid(values_path, shown, "for 'Gt', 'Lt' operators, exactly one value is required"))
        for i, v in enumerate(vals):
            try:
                _parse_int64(v)
            except ValueError:
                causes.append(fe.invalid(f"{values_path}[{i}]", v,
                                         "for 'Gt', 'Lt' operators, the value must be an integer"))
    else:
        causes.append(fe.not_supported(_child(path, "operator"), op, _VALID_OPERATORS))
    for i, v in enumerate(vals):
        msgs = fe.label_value(v)
        if msgs:
            causes.append(fe.invalid(f"{values_path}[{i}][{key}]", v, "; ".join(msgs)))
    return causes


def _aggregate(causes: list[Cause]) -> str:
    """field.ErrorList.ToAggregate().Error(): one error bare, several in [ ] without duplicates."""
    distinct: list[str] = []
    for cause in causes:
        text = f"{cause.field or '<nil>'}: {cause.message}"
        if text not in distinct:
            distinct.append(text)
    return distinct[0] if len(distinct) == 1 else "[" + ", ".join(distinct) + "]"


# --- the label selector lexer and parser (labels.Parse) ---------------------------------------------

_ERROR, _EOS, _CLOSE, _COMMA, _NOT, _DEQ, _EQ, _GT, _ID, _IN, _LT, _NEQ, _NOTIN, _OPEN = range(14)
_STRING_TO_TOKEN = {")": _CLOSE, ",": _COMMA, "!": _NOT, "==": _DEQ, "=": _EQ, ">": _GT, "in": _IN, "<": _LT,
                    "!=": _NEQ, "notin": _NOTIN, "(": _OPEN}
_SPECIAL = set("=!(),><")
_WHITESPACE = set(" \t\r\n")


def _lex(text: str) -> list[tuple[int, str]]:
    items: list[tuple[int, str]] = []
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos] in _WHITESPACE:
            pos += 1
        if pos >= n:
            items.append((_EOS, ""))
            return items
        if text[pos] in _SPECIAL:
            # The longest run of special characters that is still a token ("!=", "==").
            buffer, last = "", None
            while pos < n and text[pos] in _SPECIAL:
                if buffer + text[pos] in _STRING_TO_TOKEN:
                    buffer += text[pos]
                    last = (_STRING_TO_TOKEN[buffer], buffer)
                    pos += 1
                elif last is not None:
                    break
                else:
                    buffer += text[pos]
                    pos += 1
            items.append(last if last is not None else (_ERROR, f"error expected: keyword found '{buffer}'"))
        else:
            start = pos
            while pos < n and text[pos] not in _SPECIAL and text[pos] not in _WHITESPACE:
                pos += 1
            word = text[start:pos]
            items.append((_STRING_TO_TOKEN.get(word, _ID), word))


class _Parser:
    """labels.Parser: 'in' and 'notin' read as identifiers wherever a value is expected."""

    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.position = 0

    @staticmethod
    def _as_value(item: tuple[int, str]) -> tuple[int, str]:
        return (_ID, item[1]) if item[0] in (_IN, _NOTIN) else item

    def lookahead(self, values: bool = True) -> tuple[int, str]:
        item = self.items[self.position]
        return self._as_value(item) if values else item

    def consume(self, values: bool = True) -> tuple[int, str]:
        item = self.items[self.position]
        self.position += 1
        return self._as_value(item) if values else item

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            tok, lit = self.lookahead()
            if tok in (_ID, _NOT):
                try:
                    requirements.append(self.parse_requirement())
                except _ParseError as e:
                    raise _ParseError(f"unable to parse requirement: {e}") from None
                t, lit = self.consume()
                if t == _EOS:
                    return requirements
                if t == _COMMA:
                    t2, lit2 = self.lookahead()
                    if t2 not in (_ID, _NOT):
                        raise _ParseError(f"found '{lit2}', expected: identifier after ','")
                else:
                    raise _ParseError(f"found '{lit}', expected: ',' or 'end of string'")
            elif tok == _EOS:
                return requirements
            else:
                raise _ParseError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def parse_requirement(self) -> Requirement:
        key, operator = self.parse_key_and_infer_operator()
        if operator in (EXISTS, DOES_NOT_EXIST):
            return Requirement.new(key, operator, [])
        operator = self.parse_operator()
        values = self.parse_values() if operator in (IN, NOT_IN) else self.parse_exact_value()
        return Requirement.new(key, operator, sorted(values))

    def parse_key_and_infer_operator(self) -> tuple[str, str]:
        operator = ""
        tok, literal = self.consume()
        if tok == _NOT:
            operator = DOES_NOT_EXIST
            tok, literal = self.consume()
        if tok != _ID:
            raise _ParseError(f"found '{literal}', expected: identifier")
        key_errors = fe.qualified_name(literal)
        if key_errors:
            raise _ParseError(_aggregate([fe.invalid("", literal, "; ".join(key_errors))]))
        if self.lookahead()[0] in (_EOS, _COMMA) and operator != DOES_NOT_EXIST:
            operator = EXISTS
        return literal, operator

    def parse_operator(self) -> str:
        tok, lit = self.consume(values=False)
        op = {_IN: IN, _EQ: EQUALS, _DEQ: DOUBLE_EQUALS, _GT: GREATER_THAN, _LT: LESS_THAN, _NOTIN: NOT_IN,
              _NEQ: NOT_EQUALS}.get(tok)
        if op is None:
            raise _ParseError(f"found '{lit}', expected: {', '.join(_BINARY)}")
        return op

    def parse_values(self) -> set[str]:
        tok, lit = self.consume()
        if tok != _OPEN:
            raise _ParseError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead()
        if tok in (_ID, _COMMA):
            values = self.parse_identifiers_list()
            if self.consume()[0] != _CLOSE:
                raise _ParseError(f"found '{lit}', expected: ')'")
            return values
        if tok == _CLOSE:
            self.consume()
            return {""}
        raise _ParseError(f"found '{lit}', expected: ',', ')' or identifier")

    def parse_identifiers_list(self) -> set[str]:
        values: set[str] = set()
        while True:
            tok, lit = self.consume()
            if tok == _ID:
                values.add(lit)
                tok2, lit2 = self.lookahead()
                if tok2 == _COMMA:
                    continue
                if tok2 == _CLOSE:
                    return values
                raise _ParseError(f"found '{lit2}', expected: ',' or ')'")
            if tok == _COMMA:
                # "(,", ",," and ",)" each stand for an empty value.
                if not values:
                    values.add("")
                tok2 = self.lookahead()[0]
                if tok2 == _CLOSE:
                    values.add("")
                    return values
                if tok2 == _COMMA:
                    values.add("")
                continue
            raise _ParseError(f"found '{lit}', expected: ',', or identifier")

    def parse_exact_value(self) -> set[str]:
        if self.lookahead()[0] in (_EOS, _COMMA):
            return {""}
        tok, lit = self.consume()
        if tok == _ID:
            return {lit}
        raise _ParseError(f"found '{lit}', expected: identifier")


# --- LabelSelector ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class LabelSelector:
    """An AND of requirements. `nothing` is the selector of a nil LabelSelector: it matches no labels."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    @classmethod
    def everything(cls) -> LabelSelector:
        return cls()

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        """labels.Parse; BadRequestError with its message when the text does not parse."""
        try:
            requirements = _Parser(text).parse()
        except _ParseError as e:
            raise BadRequestError(str(e)) from None
        return cls(tuple(sorted(requirements, key=lambda r: r.key)))

    @classmethod
    def from_set(cls, labels: Mapping[str, str] | None) -> LabelSelector:
        """SelectorFromSet: key=value for every pair (not validated, as in Kubernetes)."""
        return cls(tuple(Requirement(k, EQUALS, (v,)) for k, v in sorted((labels or {}).items())))

    @classmethod
    def from_object(cls, selector: Mapping[str, Any] | None) -> LabelSelector:
        """metav1.LabelSelectorAsSelector: nil matches nothing, {} everything.

        A requirement that does not validate raises BadRequestError; validate a spec's
        selector with `validate_label_selector` to get field causes instead.
        """
        if selector is None:
            return cls(nothing=True)
        match_labels = selector.get("matchLabels") or {}
        expressions = selector.get("matchExpressions") or []
        requirements: list[Requirement] = []
        try:
            for key, value in match_labels.items():
                requirements.append(Requirement.new(key, EQUALS, [value]))
            for expr in expressions:
                operator = _OBJECT_OPERATORS.get(expr.get("operator"))
                if operator is None:
                    raise _ParseError(f"{fe.go_quote(str(expr.get('operator') or ''))} is not a valid label "
                                      "selector operator")
                values = expr.get("values")
                requirements.append(Requirement.new(expr.get("key") or "", operator,
                                                    None if values is None else list(values)))
        except _ParseError as e:
            raise BadRequestError(str(e)) from None
        return cls(tuple(sorted(requirements, key=lambda r: r.key)))

    @property
    def empty(self) -> bool:
        return not self.nothing and not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def requires_exact_match(self, key: str) -> str | None:
        """The one value `key` must have, when the selector pins it (useful for index lookups)."""
        for r in self.requirements:
            if r.key == key:
                if r.operator in (EQUALS, DOUBLE_EQUALS, IN) and len(r.values) == 1:
                    return r.values[0]
                return None
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


_OBJECT_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def format_label_selector(selector: Mapping[str, Any] | None) -> str:
    """metav1.FormatLabelSelector: the selector's string, `<none>` when empty, `<error>` when invalid."""
    try:
        text = str(LabelSelector.from_object(selector))
    except BadRequestError:
        return "<error>"
    return text or "<none>"


def validate_label_selector(selector: Mapping[str, Any] | None, field: str) -> list[Cause]:
    """metav1 validation.ValidateLabelSelector, for the selector of a spec (e.g. "spec.selector")."""
    if selector is None:
        return []
    causes = fe.validate_labels(selector.get("matchLabels"), f"{field}.matchLabels")
    for i, expr in enumerate(selector.get("matchExpressions") or []):
        path = f"{field}.matchExpressions[{i}]"
        operator, values = expr.get("operator"), expr.get("values") or []
        if operator in ("In", "NotIn"):
            if not values:
                causes.append(fe.required(f"{path}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                causes.append(fe.forbidden(f"{path}.values",
                                           "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            causes.append(fe.invalid(f"{path}.operator", operator or "", "not a valid selector operator"))
        causes += fe.validate_label_name(expr.get("key") or "", f"{path}.key")
        for j, value in enumerate(values):
            causes += [fe.invalid(f"{path}.values[{j}]", value, msg) for msg in fe.label_value(value)]
    return causes


# --- field selectors (fields.ParseSelector) ---------------------------------------------------------

_FIELD_OPERATORS = ("!=", "==", "=")  # "==" before "=" so the value keeps no leading "="


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    operator: str  # "=", "==" or "!="
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        # fields.Set.Get: a field the kind does not set reads as "".
        have = fields.get(self.field, "")
        return have != self.value if self.operator == "!=" else have == self.value

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{escape_value(self.value)}"


def escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _unescape(value: str) -> str:
    if not any(c in value for c in "\\,="):
        return value
    out: list[str] = []
    in_slash = False
    for c in value:
        if in_slash:
            if c not in "\\,=":
                raise BadRequestError(f"invalid field selector: invalid escape sequence: \\{c}")
            out.append(c)
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c in ",=":
            # Go prints the rune with %v: its code point.
            raise BadRequestError(f"invalid field selector: unescaped character in value: {ord(c)}")
        else:
            out.append(c)
    if in_slash:
        raise BadRequestError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(text: str) -> list[str]:
    if not text:
        return []
    terms, start, in_slash = [], 0, False
    for i, c in enumerate(text):
        if in_slash:
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in _FIELD_OPERATORS:
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()
    # The (group, resource) whose field names this selector already uses, once converted.
    canonical_for: tuple[str, str] | None = field(default=None, compare=False)
    _checked: dict[tuple[str, str], FieldSelector] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str, *, resource: str | None = None, group: str = "") -> FieldSelector:
        """fields.ParseSelector; with `resource`, also checked against what that kind can select."""
        requirements = []
        for part in sorted(_split_terms(text)):
            if not part:
                continue
            split = _split_term(part)
            if split is None:
                raise BadRequestError(f"invalid selector: '{text}'; can't understand '{part}'")
            lhs, op, rhs = split
            requirements.append(FieldRequirement(lhs, op, _unescape(rhs)))
        selector = cls(tuple(requirements))
        return selector if resource is None else selector.for_resource(resource, group)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def for_resource(self, resource: str, group: str = "") -> FieldSelector:
        """The selector in the kind's own field names (aliases rewritten).

        Raises BadRequestError for a field the kind does not support, with the
        message of that kind's field label conversion in Kubernetes.
        """
        key = (group, resource)
        if self.canonical_for == key:
            return self
        if key not in self._checked:
            rules = _rules_for(group, resource)
            converted = []
            for r in self.requirements:
                canonical = rules.accepted.get(r.field)
                if canonical is None:
                    raise BadRequestError(rules.reject(r.field))
                converted.append(FieldRequirement(canonical, r.operator, r.value))
            self._checked[key] = FieldSelector(tuple(converted), canonical_for=key)
        return self._checked[key]

    def matches(self, obj: Mapping[str, Any], resource: str, group: str = "") -> bool:
        """Whether `obj` (a wire-form object of `group`/`resource`) satisfies every requirement."""
        converted = self.for_resource(resource, group)
        if not converted.requirements:
            return True
        fields = selectable_fields(obj, resource, group)
        return all(r.matches(fields) for r in converted.requirements)

    def requires_exact_match(self, field_name: str) -> str | None:
        for r in self.requirements:
            if r.field == field_name and r.operator in ("=", "=="):
                return r.value
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


# --- which fields each kind can select --------------------------------------------------------------

def _get(obj: Mapping[str, Any], path: str) -> Any:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _bool(value: Any) -> str:
    """strconv.FormatBool of a field that defaults to false."""
    return "true" if value is True else "false"


def _int(value: Any) -> str:
    """strconv.Itoa of a count that defaults to 0."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else "0"


def _pod_fields(obj: Mapping[str, Any]) -> dict[str, str]:
    ips = _get(obj, "status.podIPs") or []
    pod_ip = (ips[0] or {}).get("ip", "") if ips else ""
    return {
        "spec.nodeName": _text(_get(obj, "spec.nodeName")),
        "spec.restartPolicy": _text(_get(obj, "spec.restartPolicy")),
        "spec.schedulerName": _text(_get(obj, "spec.schedulerName")),
        "spec.serviceAccountName": _text(_get(obj, "spec.serviceAccountName")),
        "spec.hostNetwork": _bool(_get(obj, "spec.hostNetwork")),
        "status.phase": _text(_get(obj, "status.phase")),
        # PodToSelectableFields reads podIPs[0]; status.podIP mirrors it on the wire.
        "status.podIP": pod_ip or _text(_get(obj, "status.podIP")),
        "status.nominatedNodeName": _text(_get(obj, "status.nominatedNodeName")),
    }


def _core_event_fields(obj: Mapping[str, Any]) -> dict[str, str]:
    fields = {f"involvedObject.{k}": _text(_get(obj, f"involvedObject.{k}"))
              for k in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")}
    source = _text(_get(obj, "source.component")) or _text(obj.get("reportingComponent"))
    fields.update(reason=_text(obj.get("reason")), reportingComponent=_text(obj.get("reportingComponent")),
                  source=source, type=_text(obj.get("type")))
    return fields


def _events_v1_fields(obj: Mapping[str, Any]) -> dict[str, str]:
    """events.k8s.io Events share core storage: the same selectable names, read from the v1 shape."""
    fields = {f"involvedObject.{k}": _text(_get(obj, f"regarding.{k}"))
              for k in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")}
    controller = _text(obj.get("reportingController"))
    source = _text(_get(obj, "deprecatedSource.component")) or controller
    fields.update(reason=_text(obj.get("reason")), reportingComponent=controller, source=source,
                  type=_text(obj.get("type")))
    return fields


@dataclass(frozen=True)
class _Rules:
    """A kind's field label conversion (accepted client names -> selectable names) and selectable fields."""

    accepted: Mapping[str, str]
    select: Callable[[Mapping[str, Any]], dict[str, str]]
    reject: Callable[[str], str]
    namespaced: bool = True


def _not_supported(label: str) -> str:
    return f"field label not supported: {label}"


def _default_reject(label: str) -> str:
    return f'{fe.go_quote(label)} is not a known field selector: only "metadata.name", "metadata.namespace"'


def _identity(*names: str) -> dict[str, str]:
    return {n: n for n in names}


_META = _identity("metadata.name", "metadata.namespace")
_RULES: dict[tuple[str, str], _Rules] = {
    ("", "pods"): _Rules(
        {**_META, **_identity("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                              "spec.hostNetwork", "status.phase", "status.podIP", "status.podIPs",
                              "status.nominatedNodeName"),
         "spec.host": "spec.nodeName"},  # old v1 clients
        _pod_fields, _not_supported),
    ("", "nodes"): _Rules(_identity("metadata.name", "spec.unschedulable"),
                          lambda o: {"spec.unschedulable": _bool(_get(o, "spec.unschedulable"))},
                          _not_supported, namespaced=False),
    ("", "namespaces"): _Rules(_identity("metadata.name", "status.phase"),
                               lambda o: {"status.phase": _text(_get(o, "status.phase"))},
                               _not_supported, namespaced=False),
    ("", "replicationcontrollers"): _Rules({**_META, **_identity("status.replicas")},
                                           lambda o: {"status.replicas": _int(_get(o, "status.replicas"))},
                                           _not_supported),
    ("", "secrets"): _Rules({**_META, **_identity("type")}, lambda o: {"type": _text(o.get("type"))},
                            _not_supported),
    ("", "services"): _Rules({**_META, **_identity("spec.clusterIP", "spec.type")},
                             lambda o: {"spec.clusterIP": _text(_get(o, "spec.clusterIP")),
                                        "spec.type": _text(_get(o, "spec.type"))},
                             _not_supported),
    ("", "events"): _Rules(
        {**_META, **_identity(*(f"involvedObject.{k}" for k in ("kind", "namespace", "name", "uid", "apiVersion",
                                                                  "resourceVersion", "fieldPath")),
                              "reason", "reportingComponent", "source", "type")},
        _core_event_fields, _not_supported),
    ("events.k8s.io", "events"): _Rules(
        {**_META, **{f"regarding.{k}": f"involvedObject.{k}"
                     for k in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
         "reportingController": "reportingComponent", "reason": "reason", "source": "source", "type": "type"},
        _events_v1_fields, _not_supported),
    ("batch", "jobs"): _Rules({**_META, **_identity("status.successful")},
                              lambda o: {"status.successful": _int(_get(o, "status.succeeded"))},
                              lambda label: f"field label {fe.go_quote(label)} not supported for Job"),
    ("certificates.k8s.io", "certificatesigningrequests"): _Rules(
        _identity("metadata.name", "spec.signerName"),
        lambda o: {"spec.signerName": _text(_get(o, "spec.signerName"))}, _not_supported, namespaced=False),
}
# Kinds with no conversion function of their own (apps/v1 included): Kubernetes' default.
_DEFAULT_RULES = _Rules(_META, lambda o: {}, _default_reject)


def _rules_for(group: str, resource: str) -> _Rules:
    return _RULES.get((group, resource), _DEFAULT_RULES)


def selectable_fields(obj: Mapping[str, Any], resource: str, group: str = "") -> dict[str, str]:
    """The fields.Set a kind's registry exposes for `obj`: metadata plus the kind's own fields."""
    rules = _rules_for(group, resource)
    m = obj.get("metadata") or {}
    fields = {"metadata.name": _text(m.get("name"))}
    if rules.namespaced:
        fields["metadata.namespace"] = _text(m.get("namespace"))
    fields.update(rules.select(obj))
    return fields
