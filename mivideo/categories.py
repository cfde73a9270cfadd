"""Which Canvas courses a Kaltura media entry belongs to, from its category names."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class CourseLink:
    course_id: int
    in_context: bool


def course_links(categories: str | None, prefixes: Iterable[str]) -> set[CourseLink]:
    """Canvas courses in an entry's comma-separated category full names.

    Only ``<prefix>>site>channels><decimal id>`` and ``...><id>>InContext`` count.
    """
    pattern = _category_pattern(tuple(prefixes))
    links = set()
    for name in (categories or "").split(","):
        m = pattern.fullmatch(name.strip())
        if m:
            links.add(CourseLink(int(m.group(1)), m.group(2) is not None))
    return links


@functools.lru_cache(maxsize=16)
def _category_pattern(prefixes: tuple[str, ...]) -> re.Pattern[str]:
    roots = "|".join(re.escape(p) for p in prefixes if p)
    # [0-9], not \d: Unicode digits are not Canvas ids. At most 18 digits fit BIGINT.
    return re.compile(rf"(?:{roots})>site>channels>([0-9]{{1,18}})(>InContext)?")
