"""The platform's one theme taxonomy: what a text is about, in keys every service shares.

The themes are defined once, in `shared/taxonomy.toml` (or the file `CF_TAXONOMY_FILE`
names), and are the published language of themes: feedback is tagged with them at
capture, expectations when recorded or revised, and a theme key means the same in
every service's responses, events and filters. Each service that tags texts gives its
settings `taxonomy_file_field()` and loads the file once at start (`Taxonomy.load`),
so a broken file stops the start, not a request.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field

DEFAULT_TAXONOMY_FILE = Path(__file__).with_name("taxonomy.toml")
# The setting's variable, and the older name the feedback service read first (still honoured).
TAXONOMY_FILE_VARIABLES = ("CF_TAXONOMY_FILE", "CF_FEEDBACK_TAXONOMY_FILE")
_THEME_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def taxonomy_file_field() -> Any:
    """The taxonomy file setting: one variable for every service, so that all tag with the same themes."""
    return Field(
        default=DEFAULT_TAXONOMY_FILE,
        validation_alias=AliasChoices(*TAXONOMY_FILE_VARIABLES),
        description=(
            "TOML file of themes and their keywords, shared by feedback and expectations (give both the same file; "
            "`CF_FEEDBACK_TAXONOMY_FILE` is its older name); edit it and restart to change the themes."
        ),
    )


def taxonomy_from_environment() -> Taxonomy:
    """The taxonomy the services would load, for a job that has no settings (a migration's backfill)."""
    named = next((os.environ[v] for v in TAXONOMY_FILE_VARIABLES if os.environ.get(v)), None)
    return Taxonomy.load(Path(named) if named else DEFAULT_TAXONOMY_FILE)


class TaxonomyError(ValueError):
    """The taxonomy file cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Theme:
    key: str
    label: str
    keywords: tuple[str, ...]


class Taxonomy:
    """Themes and their keywords, matched on the words of a text in one pass."""

    def __init__(self, themes: list[Theme]) -> None:
        self.themes = themes
        self._words: dict[str, set[str]] = {}
        self._prefixes: dict[str, list[tuple[str, str]]] = {}
        self._phrases: dict[str, list[tuple[tuple[str, ...], bool, str]]] = {}
        for theme in themes:
            for keyword in theme.keywords:
                words, is_prefix = _words_of(keyword.rstrip("*")), keyword.endswith("*")
                if len(words) > 1:
                    self._phrases.setdefault(words[0], []).append((tuple(words[1:]), is_prefix, theme.key))
                elif is_prefix:
                    self._prefixes.setdefault(words[0][:_PREFIX_KEY], []).append((words[0], theme.key))
                else:
                    self._words.setdefault(words[0], set()).add(theme.key)

    @classmethod
    def load(cls, path: Path) -> Taxonomy:
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise TaxonomyError(f"{path}: {exc}") from exc
        table = document.get("themes")
        if not isinstance(table, dict) or not table:
            raise TaxonomyError(f"{path}: needs at least one [themes.<key>] table")
        themes = []
        for key, entry in table.items():
            if not _THEME_KEY.match(key):
                raise TaxonomyError(f"{path}: theme key {key!r} must be lower-case letters, digits or '_'")
            keywords = entry.get("keywords") if isinstance(entry, dict) else None
            if not isinstance(keywords, list) or not keywords or not all(isinstance(k, str) for k in keywords):
                raise TaxonomyError(f"{path}: themes.{key}.keywords must be a non-empty list of words")
            for keyword in keywords:
                words = _words_of(keyword.rstrip("*"))
                if not words or (keyword.endswith("*") and len(words[-1]) < _PREFIX_KEY):
                    raise TaxonomyError(
                        f"{path}: themes.{key} keyword {keyword!r} needs a word ({_PREFIX_KEY}+ letters before a *)"
                    )
            themes.append(Theme(key, str(entry.get("label", key)), tuple(keywords)))
        return cls(themes)

    def themes_of(self, *texts: str | None) -> list[str]:
        """The keys of the themes any of `texts` mentions, in taxonomy order (each text matched on its own)."""
        found: set[str] = set()
        for text in texts:
            if text:
                found |= self._found_in(_words_of(text))
        return [theme.key for theme in self.themes if theme.key in found] if found else []

    def _found_in(self, words: list[str]) -> set[str]:
        found: set[str] = set()
        for index, word in enumerate(words):
            found |= self._words.get(word, _NONE)
            for prefix, theme in self._prefixes.get(word[:_PREFIX_KEY], ()):
                if word.startswith(prefix):
                    found.add(theme)
            for rest, is_prefix, theme in self._phrases.get(word, ()):
                following = words[index + 1 : index + 1 + len(rest)]
                if len(following) == len(rest) and _follows(following, rest, is_prefix):
                    found.add(theme)
        return found


def _follows(words: list[str], rest: tuple[str, ...], is_prefix: bool) -> bool:
    """The words after a phrase's first word are the rest of it (the last may be a prefix)."""
    *middle, last = rest
    if words[:-1] != middle:
        return False
    return words[-1] == last or (is_prefix and words[-1].startswith(last))


# Texts and keywords are split into words alike: "user-friendly" is two words.
_WORD = re.compile(r"[\w']+")
_PREFIX_KEY = 3
_NONE: frozenset[str] = frozenset()


def _words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())
