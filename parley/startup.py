"""What every entry point does with a bad or missing setting: one sentence per setting, exit code 2.

A pydantic traceback tells an operator nothing they can act on, and may echo the value (a secret, a
URL with a password). :func:`settings_errors_exit` turns a settings class's ``ValidationError`` (or a
:class:`parley.settings.SettingsConflict`) into sentences naming the environment variable, the kind
of value it got (never the value) and what is allowed, printed to stderr, and exits 2.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, get_args, get_origin

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings

from parley.settings import SettingsConflict

EXIT_BAD_SETTING = 2

# pydantic error type -> the kind of value the setting got.
_KINDS = {
    "int_parsing": "text that is not a whole number",
    "int_from_float": "a number with a fraction",
    "float_parsing": "text that is not a number",
    "bool_parsing": "text that is not a yes/no value",
    "greater_than": "a number that is too small",
    "greater_than_equal": "a number that is too small",
    "less_than": "a number that is too large",
    "less_than_equal": "a number that is too large",
    "string_too_short": "a value that is too short",
    "string_too_long": "a value that is too long",
    "literal_error": "a value that is not one of the choices",
    "enum": "a value that is not one of the choices",
    "json_invalid": "text that is not valid JSON",
    "missing": "nothing",
}


def _settings_class(name: str) -> type[BaseSettings] | None:
    """The settings class a ValidationError is about (every Parley process builds one of them)."""
    pending: list[type[BaseSettings]] = [BaseSettings]
    while pending:
        cls = pending.pop()
        if cls.__name__ == name:
            return cls
        pending.extend(cls.__subclasses__())
    return None


def _allowed(field: FieldInfo | None) -> str:
    if field is None:
        return "see the README's settings table"
    options = [a for a in get_args(field.annotation) if a is not type(None)] or [field.annotation]
    if get_origin(options[0]) is Literal:
        return "one of " + ", ".join(map(str, get_args(options[0])))
    kind = {int: "a whole number", float: "a number", bool: "true or false"}.get(options[0], "a text")
    bounds = []
    for meta in field.metadata:
        for attribute, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if (bound := getattr(meta, attribute, None)) is not None:
                bounds.append(f"{word} {bound}")
        if getattr(meta, "min_length", None):
            bounds.append(f"at least {meta.min_length} characters")
    return kind + (" " + " and ".join(bounds) if bounds else "")


def explain(error: ValidationError) -> list[str]:
    """One sentence per bad setting, naming its environment variable; never the value itself."""
    cls = _settings_class(error.title)
    prefix = str(cls.model_config.get("env_prefix", "")) if cls else ""
    fields: dict[str, FieldInfo] = cls.model_fields if cls else {}
    return [_sentence(detail, prefix, fields) for detail in error.errors(include_url=False, include_input=False)]


def _sentence(detail: ErrorDetails, prefix: str, fields: dict[str, Any]) -> str:
    name = str(detail["loc"][0]) if detail["loc"] else "?"
    variable = (prefix + name).upper()
    field = fields.get(name)
    if detail["type"] == "value_error":  # our own validators say what is allowed themselves
        return f"{variable} is not valid: {detail['msg'].removeprefix('Value error, ')}."
    kind = _KINDS.get(detail["type"], "a value it cannot use")
    return f"{variable} got {kind}; it must be {_allowed(field)}."


@contextmanager
def settings_errors_exit() -> Iterator[None]:
    """Run the body; a bad setting ends the process with its sentences on stderr and exit code 2."""
    try:
        yield
    except ValidationError as exc:
        if _settings_class(exc.title) is None:
            raise
        for sentence in explain(exc):
            print(sentence, file=sys.stderr)
        raise SystemExit(EXIT_BAD_SETTING) from None
    except SettingsConflict as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(EXIT_BAD_SETTING) from None
