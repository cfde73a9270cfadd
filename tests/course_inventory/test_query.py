"""The enrollments query is valid against Canvas's schema (the sandbox's copy of its SDL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from courseinv.course_inventory.canvas_pull import ENROLLMENTS_QUERY
from graphql import GraphQLSchema, build_schema, parse, validate

SCHEMA = Path(__file__).resolve().parents[2] / "sandbox" / "canvas-schema.graphql"


@pytest.fixture(scope="module")
def schema() -> GraphQLSchema:
    return build_schema(SCHEMA.read_text(encoding="utf-8"))


def test_enrollments_query_validates(schema: GraphQLSchema) -> None:
    assert validate(schema, parse(ENROLLMENTS_QUERY)) == []


def test_validation_would_catch_a_wrong_field(schema: GraphQLSchema) -> None:
    broken = ENROLLMENTS_QUERY.replace("sisId", "sisSectionId")
    assert broken != ENROLLMENTS_QUERY
    errors = validate(schema, parse(broken))
    assert any("sisSectionId" in e.message for e in errors)
