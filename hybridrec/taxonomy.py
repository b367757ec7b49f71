"""The hierarchical tag taxonomy (``taxonomy.yaml``), loaded once and shared by every stage.

Tags are addressed by slash paths (``food/korean/gukbap``); the path encodes the hierarchy, so
ancestry is a prefix test. Each tag has an aspect (what kind of fact it states about an item) and
Korean and English surface forms, which the synthetic world writes into text and keyword
extraction maps back onto tags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Iterable, Literal

import yaml

Aspect = Literal["topic", "menu", "mood", "purpose", "price", "service", "facility"]
Language = Literal["ko", "en"]
ASPECTS: tuple[str, ...] = ("topic", "menu", "mood", "purpose", "price", "service", "facility")
LANGUAGES: tuple[str, ...] = ("ko", "en")


@dataclass(frozen=True)
class Tag:
    path: str
    aspect: str
    ko: tuple[str, ...]
    en: tuple[str, ...]
    typical: tuple[str, ...] = ()
    # Forms the extractors recognise but the synthetic world never writes: everyday synonyms and
    # inflections of real reviews ("friendly", "overpriced"), so generated text keeps its own vocabulary.
    also: tuple[str, ...] = ()

    @property
    def recognised_forms(self) -> tuple[str, ...]:
        return (*self.ko, *self.en, *self.also)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def parent_path(self) -> str | None:
        return self.path.rsplit("/", 1)[0] if "/" in self.path else None

    @property
    def top(self) -> str:
        """First path segment: the broad family (``sports``, ``food``, ``mood`` ...)."""
        return self.path.split("/", 1)[0]

    def surface(self, language: str) -> tuple[str, ...]:
        return self.ko if language == "ko" else self.en


_HANGUL = re.compile(r"[\uac00-\ud7a3]")


class Taxonomy:
    """Validated, indexed tag tree. Construct through :func:`load_taxonomy`."""

    def __init__(self, tags: Iterable[Tag]) -> None:
        self.tags: tuple[Tag, ...] = tuple(tags)
        self._by_path = {t.path: t for t in self.tags}
        if len(self._by_path) != len(self.tags):
            raise ValueError("taxonomy: duplicate paths")
        self._children: dict[str, list[Tag]] = {}
        for tag in self.tags:
            if tag.parent_path is not None:
                self._children.setdefault(tag.parent_path, []).append(tag)
        self._by_surface: dict[tuple[str, str], Tag] = {}
        self._validate()

    def _validate(self) -> None:
        for tag in self.tags:
            if tag.aspect not in ASPECTS:
                raise ValueError(f"taxonomy: {tag.path} has unknown aspect {tag.aspect!r}")
            if tag.parent_path is not None and tag.parent_path not in self._by_path:
                raise ValueError(f"taxonomy: {tag.path} has no parent tag {tag.parent_path!r}")
            if self.is_leaf(tag.path) and not (tag.ko and tag.en):
                raise ValueError(f"taxonomy: leaf {tag.path} needs ko and en surface forms")
            for ref in tag.typical:
                if ref not in self._by_path:
                    raise ValueError(f"taxonomy: {tag.path} lists unknown typical tag {ref!r}")
            for language in LANGUAGES:
                also = tuple(f for f in tag.also if (language == "ko") == bool(_HANGUL.search(f)))
                for form in (*tag.surface(language), *also):
                    key = (language, form.casefold())
                    if key in self._by_surface:
                        raise ValueError(f"taxonomy: {language} form {form!r} used by {self._by_surface[key].path} "
                                         f"and {tag.path}")
                    self._by_surface[key] = tag

    def __contains__(self, path: object) -> bool:
        return path in self._by_path

    def __len__(self) -> int:
        return len(self.tags)

    def get(self, path: str) -> Tag:
        try:
            return self._by_path[path]
        except KeyError:
            raise KeyError(f"no tag {path!r} in the taxonomy") from None

    def parent(self, path: str) -> Tag | None:
        parent = self.get(path).parent_path
        return self._by_path[parent] if parent is not None else None

    def children(self, path: str, aspect: str | None = None) -> tuple[Tag, ...]:
        kids = self._children.get(self.get(path).path, [])
        return tuple(t for t in kids if aspect is None or t.aspect == aspect)

    def siblings(self, path: str) -> tuple[Tag, ...]:
        """Tags of the same aspect under the same parent (roots have none): close but different."""
        tag = self.get(path)
        if tag.parent_path is None:
            return ()
        return tuple(t for t in self.children(tag.parent_path, tag.aspect) if t.path != path)

    def is_leaf(self, path: str) -> bool:
        """A leaf of its aspect: ``food/korean/gukbap`` is a topic leaf although menu tags hang below it."""
        return not self.children(path, self.get(path).aspect)

    def leaves(self, aspect: str | None = None) -> tuple[Tag, ...]:
        return tuple(t for t in self.tags if (aspect is None or t.aspect == aspect) and self.is_leaf(t.path))

    def ancestors(self, path: str) -> tuple[Tag, ...]:
        """Nearest first."""
        parts = self.get(path).path.split("/")
        return tuple(self._by_path["/".join(parts[:i])] for i in range(len(parts) - 1, 0, -1))

    def topic_of(self, path: str) -> str:
        """The interest a tag stands for: itself when a topic, else its nearest topic ancestor (a dish → its category)."""
        tag = self.get(path)
        if tag.aspect == "topic":
            return tag.path
        topic = next((a for a in self.ancestors(path) if a.aspect == "topic"), None)
        if topic is None:
            raise ValueError(f"{path!r} is a {tag.aspect} tag with no topic above it")
        return topic.path

    @staticmethod
    def is_ancestor(ancestor: str, descendant: str) -> bool:
        """Strict: a path is not its own ancestor."""
        return descendant.startswith(ancestor + "/")

    def lookup(self, form: str, language: str) -> Tag | None:
        """The tag a surface form grounds to (case-insensitive), or None."""
        return self._by_surface.get((language, form.casefold()))


def most_specific(paths: Iterable[str]) -> tuple[str, ...]:
    """Drop a path when a descendant of it is also present ("여행 아르헨티나": travel/south-america, not travel)."""
    paths = tuple(dict.fromkeys(paths))
    return tuple(p for p in paths if not any(Taxonomy.is_ancestor(p, o) for o in paths))


def _tag(row: dict) -> Tag:
    return Tag(path=row["path"], aspect=row["aspect"], ko=tuple(row.get("ko") or ()),
               en=tuple(row.get("en") or ()), typical=tuple(row.get("typical") or ()),
               also=tuple(row.get("also") or ()))


def parse_taxonomy(text: str) -> Taxonomy:
    data = yaml.safe_load(text)
    return Taxonomy(_tag(row) for row in data["tags"])


@cache
def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """The packaged ``taxonomy.yaml`` (or another file); parsed once per path."""
    if path is not None:
        return parse_taxonomy(Path(path).read_text(encoding="utf-8"))
    return parse_taxonomy(resources.files("hybridrec").joinpath("taxonomy.yaml").read_text(encoding="utf-8"))
