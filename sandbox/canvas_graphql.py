"""Canvas's GraphQL endpoint for the sandbox: real schema, real validation, served data.

For development, tests, the demo and benchmarks only.

Every query is parsed and validated with graphql-core against ``canvas-schema.graphql``
(Canvas's own schema SDL), so what Canvas would reject (unknown field, wrong argument
type, missing variable...) gets a GraphQL ``errors`` payload (HTTP 200), as Canvas answers.
A query deeper than 15 levels is rejected too (Canvas's default ``max_depth``).

Executed against the institution with resolvers for the part the jobs use:

* ``Query.course(id:, sisId:)`` (REST id or global Relay id) and
  ``Query.legacyNode(_id:, type: Course|Section)``; unknown or deleted → ``null``.
* ``Course``: ``_id id name courseCode sisId state createdAt updatedAt term account``,
  ``enrollmentsConnection(first, after, last, before, filter: {states, types, userIds})``
  and ``sectionsConnection(first, after, last, before)``.
* ``Enrollment``: ``_id id state type sisRole userId user { _id id } courseSectionId
  section { _id id name sisId userCount } course { ... }``.

Execution: a small direct executor handles the plain shapes clients send (fields,
aliases, arguments, variables, fragments on concrete types, ``__typename``) about ten
times faster than graphql-core's general executor, which a million enrollments need. Any
query it does not handle exactly (directives, abstract fragments, errors, a null in a
non-null field, a repeated response key) is executed by graphql-core instead, so answers
never differ between the two paths.

Connections use opaque cursors, ``pageInfo { endCursor hasNextPage startCursor
hasPreviousPage }``, ``nodes`` and ``edges { cursor node }``. ``first``/``last`` are capped
at 100 and default to 100. Without ``filter.states`` every enrollment state except
``deleted`` is returned, the test student (``StudentViewEnrollment``) included, as in
Canvas. Fields without a resolver resolve to ``null``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np
from courseinv.sandbox.institution import (
    DELETED,
    ENROLLMENT_STATES,
    ENROLLMENT_TYPES,
    SIS_ROLES,
    Course,
    Institution,
    iso,
    relay_id,
)
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    build_schema,
    execute,
    get_argument_values,
    get_variable_values,
    parse,
    validate,
)

SCHEMA_PATH = Path(__file__).with_name("canvas-schema.graphql")
MAX_PAGE_SIZE = 100
MAX_DEPTH = 15
COURSE_STATE = {
    "unpublished": "claimed",
    "available": "available",
    "completed": "completed",
    "deleted": "deleted",
}


@lru_cache(maxsize=1)
def canvas_schema() -> GraphQLSchema:
    """Canvas's GraphQL schema, built once per process (~0.3 s)."""
    return build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))


@lru_cache(maxsize=256)
def _checked(query: str) -> _Compiled:
    """Parse and validate ``query`` (cached by text: clients repeat the same query)."""
    try:
        document = parse(query)
    except GraphQLError as exc:
        return _Compiled(None, (exc,))
    errors = validate(canvas_schema(), document)
    if not errors:
        depth = _depth(document)
        if depth > MAX_DEPTH:
            errors = [GraphQLError(f"Query has depth of {depth}, which exceeds max depth of 15")]
    return _Compiled(None if errors else document, errors)


def _depth(document: DocumentNode) -> int:
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }

    def walk(selection_set: SelectionSetNode | None, seen: frozenset[str]) -> int:
        if selection_set is None:
            return 0
        deepest = 0
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                deepest = max(deepest, 1 + walk(sel.selection_set, seen))
            elif isinstance(sel, InlineFragmentNode):
                deepest = max(deepest, walk(sel.selection_set, seen))
            elif isinstance(sel, FragmentSpreadNode) and sel.name.value not in seen:
                fragment = fragments.get(sel.name.value)
                if fragment is not None:
                    deepest = max(deepest, walk(fragment.selection_set, seen | {sel.name.value}))
        return deepest

    return max(
        (
            walk(d.selection_set, frozenset())
            for d in document.definitions
            if isinstance(d, OperationDefinitionNode)
        ),
        default=0,
    )


def _cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"pos:{position}".encode()).decode().rstrip("=")


def _position(cursor: str | None) -> int | None:
    if not cursor:  # Canvas treats after: "" as no cursor
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = text.partition(":")
        if kind == "pos" and value.isdigit():
            return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise GraphQLError(f"Invalid cursor: {cursor!r}")


def connection(
    total: int,
    make_node: Callable[[int], dict[str, Any]],
    *,
    field: str,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> dict[str, Any]:
    """A Relay connection over positions ``0..total-1`` (``make_node(position)``)."""
    for name, value in (("first", first), ("last", last)):
        if value is not None and value < 0:
            raise GraphQLError(f"Argument '{name}' on Field '{field}' cannot be less than 0")
    lo = 0 if not after else _position(after) + 1  # type: ignore[operator]
    hi = total if before is None else min(total, _position(before))  # type: ignore[arg-type]
    lo = min(max(lo, 0), total)
    hi = max(hi, lo)
    start, stop = lo, hi
    if first is not None or last is None:
        stop = min(hi, lo + min(MAX_PAGE_SIZE, MAX_PAGE_SIZE if first is None else first))
    if last is not None:
        start = max(start, stop - min(MAX_PAGE_SIZE, last))
    positions = range(start, stop)
    nodes = [make_node(p) for p in positions]
    return {
        "nodes": nodes,
        "edges": lambda _info: [
            {"cursor": _cursor(p), "node": n} for p, n in zip(positions, nodes, strict=True)
        ],
        "pageInfo": {
            "startCursor": _cursor(start) if nodes else None,
            "endCursor": _cursor(stop - 1) if nodes else None,
            "hasNextPage": stop < hi,
            "hasPreviousPage": start > lo,
        },
    }


class CanvasGraphQL:
    """Validates and executes GraphQL requests against an institution."""

    def __init__(self, institution: Institution) -> None:
        self.institution = institution
        self.schema = canvas_schema()

    def execute(
        self,
        query: str | None,
        variables: dict[str, Any] | None = None,
        operation_name: str | None = None,
    ) -> dict[str, Any]:
        """The JSON payload Canvas would answer (always sent with HTTP 200)."""
        if not query:
            return {"errors": [{"message": "No query string was present"}]}
        compiled = _checked(query)
        document = compiled.document
        if document is None:
            return {"errors": [e.formatted for e in compiled.errors]}
        root = _Request(self.institution).root()
        try:
            return {
                "data": _FastExecutor(self.schema, compiled, variables, operation_name).run(root)
            }
        except _Fallback:
            pass
        result = execute(
            self.schema,
            document,
            root_value=_Request(self.institution).root(),  # fresh: resolvers are pure
            variable_values=variables,
            operation_name=operation_name,
        )
        if hasattr(result, "__await__"):  # no resolver here is async
            raise RuntimeError("unexpected async GraphQL result")
        payload: dict[str, Any] = {"data": result.data}  # type: ignore[union-attr]
        if result.errors:  # type: ignore[union-attr]
            payload["errors"] = [e.formatted for e in result.errors]  # type: ignore[union-attr]
        return payload


class _Fallback(Exception):
    """The fast executor met something it does not handle: use graphql-core."""


class _Compiled:
    """A checked query: its document (None if invalid), errors and cached field plans."""

    def __init__(self, document: DocumentNode | None, errors: Sequence[GraphQLError]) -> None:
        self.document = document
        self.errors = tuple(errors)
        # (type name, id(selection set)) -> plan; the nodes live as long as the document.
        self.plans: dict[tuple[str, int], list[_PlannedField]] = {}


_TYPENAME, _LEAF, _LEAF_NON_NULL, _OTHER = range(4)


@dataclass(slots=True)
class _PlannedField:
    key: str  # response key (alias or name)
    name: str
    node: FieldNode
    mode: int
    type: Any  # the field's GraphQL output type
    has_args: bool
    field_def: Any


class _FastExecutor:
    """Executes a validated query over dict-shaped data (see the module docstring)."""

    def __init__(
        self,
        schema: GraphQLSchema,
        compiled: _Compiled,
        variables: dict[str, Any] | None,
        operation_name: str | None,
    ) -> None:
        self.schema = schema
        self.plans = compiled.plans
        document = compiled.document
        assert document is not None
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if operation_name is not None:
            operations = [o for o in operations if o.name and o.name.value == operation_name]
        if len(operations) != 1 or operations[0].operation != OperationType.QUERY:
            raise _Fallback
        self.operation = operations[0]
        if self.operation.directives:
            raise _Fallback
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        coerced = get_variable_values(
            schema, self.operation.variable_definitions or (), variables or {}
        )
        if isinstance(coerced, list):
            raise _Fallback
        self.variables = coerced
        # Selections of shared per-request objects (kept alive by _Request's caches).
        self.memo: dict[tuple[str, int, int], dict[str, Any]] = {}

    def run(self, root: dict[str, Any]) -> dict[str, Any]:
        query_type = self.schema.query_type
        assert query_type is not None
        return self._select(query_type, self.operation.selection_set, root)

    def _fields(self, type_: GraphQLObjectType, selection_set: SelectionSetNode) -> list[FieldNode]:
        out: list[FieldNode] = []
        for sel in selection_set.selections:
            if sel.directives:
                raise _Fallback
            if isinstance(sel, FieldNode):
                out.append(sel)
                continue
            if isinstance(sel, FragmentSpreadNode):
                fragment = self.fragments[sel.name.value]
                condition, selections = fragment.type_condition, fragment.selection_set
                if fragment.directives:
                    raise _Fallback
            else:
                assert isinstance(sel, InlineFragmentNode)
                condition, selections = sel.type_condition, sel.selection_set
            if condition is None or condition.name.value == type_.name:
                out += self._fields(type_, selections)
            elif not isinstance(self.schema.get_type(condition.name.value), GraphQLObjectType):
                raise _Fallback  # a fragment on an interface or union
        return out

    def _plan(
        self, type_: GraphQLObjectType, selection_set: SelectionSetNode
    ) -> list[_PlannedField]:
        cache_key = (type_.name, id(selection_set))
        plan = self.plans.get(cache_key)
        if plan is not None:
            return plan
        plan, keys = [], set()
        for node in self._fields(type_, selection_set):
            key = node.alias.value if node.alias else node.name.value
            if key in keys:
                raise _Fallback  # fields to merge
            keys.add(key)
            name = node.name.value
            if name == "__typename":
                plan.append(_PlannedField(key, name, node, _TYPENAME, None, False, None))
                continue
            field_def = type_.fields.get(name)
            if field_def is None:
                raise _Fallback  # introspection
            out_type = field_def.type
            inner = out_type.of_type if isinstance(out_type, GraphQLNonNull) else out_type
            if isinstance(inner, GraphQLScalarType | GraphQLEnumType):
                mode = _LEAF_NON_NULL if inner is not out_type else _LEAF
            else:
                mode = _OTHER
            plan.append(
                _PlannedField(key, name, node, mode, out_type, bool(node.arguments), field_def)
            )
        self.plans[cache_key] = plan
        return plan

    def _select(
        self, type_: GraphQLObjectType, selection_set: SelectionSetNode, source: dict[str, Any]
    ) -> dict[str, Any]:
        memo_key = None
        if source.get("__shared__"):  # one course/section object under many enrollments
            memo_key = (type_.name, id(selection_set), id(source))
            done = self.memo.get(memo_key)
            if done is not None:
                return done
        out: dict[str, Any] = {}
        for f in self._plan(type_, selection_set):
            if f.mode == _TYPENAME:
                out[f.key] = type_.name
                continue
            value = source.get(f.name)
            if callable(value):
                args = (
                    get_argument_values(f.field_def, f.node, self.variables) if f.has_args else {}
                )
                try:
                    value = value(None, **args)
                except GraphQLError:
                    raise _Fallback from None
            if f.mode == _LEAF:
                out[f.key] = value  # resolvers return serialized values (str ids, enum names)
            elif f.mode == _LEAF_NON_NULL:
                if value is None:
                    raise _Fallback
                out[f.key] = value
            else:
                out[f.key] = self._complete(f.type, f.node, value)
        if memo_key is not None:
            self.memo[memo_key] = out
        return out

    def _complete(self, type_: Any, node: FieldNode, value: Any) -> Any:
        if isinstance(type_, GraphQLNonNull):
            if value is None:
                raise _Fallback
            type_ = type_.of_type
        if value is None:
            return None
        if isinstance(type_, GraphQLList):
            return [self._complete(type_.of_type, node, v) for v in value]
        if isinstance(type_, GraphQLObjectType):
            assert node.selection_set is not None
            return self._select(type_, node.selection_set, value)
        if isinstance(type_, GraphQLScalarType | GraphQLEnumType):
            return value
        # Interfaces and unions: the concrete type comes from ``__typename``.
        concrete = self.schema.get_type(value.get("__typename", ""))
        if not isinstance(concrete, GraphQLObjectType):
            raise _Fallback
        assert node.selection_set is not None
        return self._select(concrete, node.selection_set, value)


class _Request:
    """Resolvers for one request (per-request caches of course and section nodes)."""

    def __init__(self, institution: Institution) -> None:
        self.inst = institution
        self._courses: dict[int, dict[str, Any]] = {}
        self._sections: dict[int, dict[str, Any]] = {}

    def root(self) -> dict[str, Any]:
        return {"course": self.resolve_course, "legacyNode": self.resolve_legacy_node}

    # -- Query --------------------------------------------------------------------------
    def resolve_course(self, _info: Any, id: str | None = None, sisId: str | None = None) -> Any:
        course: Course | None = None
        if id is not None:
            course = self.inst.course_by_id.get(_legacy_id(id, "Course") or -1)
        elif sisId is not None:
            course = next((c for c in self.inst.courses if c.sis_course_id == sisId), None)
        if course is None or course.workflow_state == "deleted":
            return None
        return self.course_node(course)

    def resolve_legacy_node(self, _info: Any, _id: str, type: str) -> Any:
        legacy = int(_id) if str(_id).isdigit() else None
        if legacy is None:
            return None
        if type == "Course":
            course = self.inst.course_by_id.get(legacy)
            if course is None or course.workflow_state == "deleted":
                return None
            return self.course_node(course)
        if type == "Section" and legacy in self.inst.section_by_id:
            return self.section_node(legacy)
        return None

    # -- nodes ---------------------------------------------------------------------------
    def course_node(self, course: Course) -> dict[str, Any]:
        node = self._courses.get(course.id)
        if node is None:
            term = self.inst.terms[course.term_id]
            account = self.inst.accounts[course.account_id]
            node = self._courses[course.id] = {
                "__typename": "Course",
                "__shared__": True,
                "_id": str(course.id),
                "id": relay_id("Course", course.id),
                "name": course.name,
                "courseCode": course.course_code,
                "sisId": course.sis_course_id,
                "state": COURSE_STATE[course.workflow_state],
                "createdAt": iso(course.created_at),
                "updatedAt": iso(course.created_at),
                "term": {
                    "__typename": "Term",
                    "_id": str(term.id),
                    "id": relay_id("Term", term.id),
                    "name": term.name,
                    "sisId": term.sis_term_id,
                    "sisTermId": term.sis_term_id,
                    "startAt": iso(term.start_at),
                    "endAt": iso(term.end_at),
                },
                "account": {
                    "__typename": "Account",
                    "_id": str(account.id),
                    "id": relay_id("Account", account.id),
                    "name": account.name,
                    "sisId": account.sis_account_id,
                },
                "enrollmentsConnection": partial(self.enrollments_connection, course),
                "sectionsConnection": partial(self.sections_connection, course),
            }
        return node

    def section_node(self, section_id: int) -> dict[str, Any]:
        node = self._sections.get(section_id)
        if node is None:
            section = self.inst.section_by_id[section_id]
            node = self._sections[section_id] = {
                "__typename": "Section",
                "__shared__": True,
                "_id": str(section.id),
                "id": relay_id("Section", section.id),
                "name": section.name,
                "sisId": section.sis_section_id,
                "createdAt": iso(section.created_at),
                "updatedAt": iso(section.created_at),
                "userCount": lambda _info, sid=section_id: self._section_user_count(sid),
            }
        return node

    def _section_user_count(self, section_id: int) -> int:
        section = self.inst.section_by_id[section_id]
        e = self.inst.course_enrollments(self.inst.course_by_id[section.course_id])
        return int(np.count_nonzero((e.section_id == section_id) & (e.state != DELETED)))

    # -- connections ---------------------------------------------------------------------
    def enrollments_connection(
        self,
        course: Course,
        _info: Any,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        e = self.inst.course_enrollments(course)
        mask = _enrollment_filter(e.state, e.type, e.user_id, filter or {})
        rows = np.flatnonzero(mask)
        course_node = self.course_node(course)

        def make(position: int) -> dict[str, Any]:
            i = rows[position]
            eid, uid, sid = int(e.id[i]), int(e.user_id[i]), int(e.section_id[i])
            return {
                "__typename": "Enrollment",
                "_id": str(eid),
                "id": lambda _info, eid=eid: relay_id("Enrollment", eid),
                "state": ENROLLMENT_STATES[e.state[i]],
                "type": ENROLLMENT_TYPES[e.type[i]],
                "sisRole": SIS_ROLES[e.type[i]],
                "userId": str(uid),
                "user": {
                    "__typename": "User",
                    "_id": str(uid),
                    "id": lambda _info, uid=uid: relay_id("User", uid),
                },
                "courseSectionId": str(sid),
                "section": self.section_node(sid),
                "course": course_node,
            }

        return connection(
            len(rows),
            make,
            field="enrollmentsConnection",
            first=first,
            after=after,
            last=last,
            before=before,
        )

    def sections_connection(
        self,
        course: Course,
        _info: Any,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        **_filters: Any,
    ) -> dict[str, Any]:
        ids = [self.inst.sections[k].id for k in course.section_range]
        return connection(
            len(ids),
            lambda p: self.section_node(ids[p]),
            field="sectionsConnection",
            first=first,
            after=after,
            last=last,
            before=before,
        )


def _enrollment_filter(
    state: np.ndarray, type_: np.ndarray, user_id: np.ndarray, flt: dict[str, Any]
) -> np.ndarray:
    states: Sequence[str] | None = flt.get("states")
    types: Sequence[str] | None = flt.get("types")
    user_ids: Sequence[str] = flt.get("userIds") or ()
    if states is None:
        mask = state != DELETED
    else:
        mask = np.isin(state, [ENROLLMENT_STATES.index(s) for s in states])
    if types is not None:
        mask &= np.isin(type_, [ENROLLMENT_TYPES.index(t) for t in types])
    if user_ids:
        wanted = [int(u) for u in (_legacy_id(str(u), "User") for u in user_ids) if u is not None]
        mask &= np.isin(user_id, wanted)
    return mask


def _legacy_id(value: str, type_name: str) -> int | None:
    """A REST id from a REST id or a global Relay id (``base64("Course-123")``)."""
    if value.isdigit():
        return int(value)
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    prefix, _, legacy = decoded.partition("-")
    return int(legacy) if prefix == type_name and legacy.isdigit() else None
