"""What the checks produce: violations (each naming the commands or ids involved) and figures."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Violation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    check: str  # short name of the rule broken, e.g. "ended exactly once"
    message: str
    ids: list[str] = Field(default_factory=list)  # idempotency keys, message ids, entry ids, ...


class Findings(BaseModel):
    """One check module's violations and the figures it counted on the way."""

    model_config = ConfigDict(extra="forbid")

    violations: list[Violation] = Field(default_factory=list)
    figures: dict[str, int | float | str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)

    def add(self, check: str, message: str, ids: list[str] | None = None) -> None:
        self.violations.append(Violation(check=check, message=message, ids=list(dict.fromkeys(ids or []))))

    def count(self, name: str, by: int = 1) -> None:
        value = self.figures.get(name, 0)
        assert isinstance(value, int)
        self.figures[name] = value + by

    def merge(self, other: Findings) -> None:
        self.violations += other.violations
        self.figures.update(other.figures)
        self.notes += other.notes
