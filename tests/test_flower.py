"""How Parley runs Flower: the password reaches Flower through its environment, never argv, and a
malformed one is refused by the settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from parley.app.flower import flower_environment, protect_metrics
from parley.settings import Settings


def test_password_goes_to_flowers_own_environment_variable() -> None:
    assert flower_environment(Settings(flower_basic_auth="ops:pw")) == {"FLOWER_BASIC_AUTH": "ops:pw"}
    assert flower_environment(Settings()) == {}


@pytest.mark.parametrize("value", ["ops", "ops:", ":pw", ""])
def test_basic_auth_must_be_user_and_password(value: str) -> None:
    with pytest.raises(ValidationError, match="user:password"):
        Settings(flower_basic_auth=value)


def test_metrics_is_protected_once_however_often_asked() -> None:
    from flower.views import monitor

    protect_metrics()
    first = monitor.Metrics.get
    protect_metrics()
    assert monitor.Metrics.get is first and first.__parley_protected__
