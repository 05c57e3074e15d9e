"""The runner counts each execution it puts off by its reason (parley_retries_total), in process against a
real redis-server, with the fake handler of tests/test_runner.py."""

from __future__ import annotations

import pytest
import redis

from genesys.errors import GenesysError, GenesysTimeout, RateLimitInfo
from genesys.ratelimit import RateBudgetWait
from parley import keys
from parley.settings import Settings
from parley.state_cache import LeaseTimeout
from tasks.context import NotYet
from tasks.runner import RetryLater, Runner
from tests.test_metrics import value
from tests.test_runner import accept, behaviour, settings  # noqa: F401 - behaviour and settings are fixtures


@pytest.mark.parametrize(("step", "reason"), [
    (GenesysError(409, "request.conflict", "Conflict"), "conflict"),
    (GenesysError(429, "too.many.requests.retry.after", rate_limit=RateLimitInfo(retry_after_s=1)), "rate_limited"),
    (GenesysError(503, "service.unavailable", "Unavailable"), "server_error"),
    (GenesysTimeout("read timeout"), "timeout"),
    (NotYet(2.0, "analytics lags"), "not_yet"),
    (RateBudgetWait(2.0), "rate_budget"),
    (LeaseTimeout("the customer's lease still taken"), "lease_wait"),
])
def test_each_put_off_execution_is_counted_by_its_reason(redis_client: redis.Redis, settings: Settings,  # noqa: F811
                                                         behaviour: list, step: BaseException,  # noqa: F811
                                                         reason: str) -> None:
    behaviour.pop(0)
    behaviour.append(step)
    labels = {"type": "cobrowse.start", "reason": reason}
    before = value("parley_retries_total", labels)
    with pytest.raises(RetryLater):
        Runner(redis_client, settings).run(accept(redis_client, settings))
    assert value("parley_retries_total", labels) == before + 1


def test_a_command_another_execution_holds_is_counted_as_lease_busy(redis_client: redis.Redis,
                                                                    settings: Settings) -> None:  # noqa: F811
    ref = accept(redis_client, settings)
    redis_client.set(keys.execution_lease(ref.command_id), "someone-else", px=1500)
    labels = {"type": "cobrowse.start", "reason": "lease_busy"}
    before = value("parley_retries_total", labels)
    with pytest.raises(RetryLater):
        Runner(redis_client, settings).run(ref)
    assert value("parley_retries_total", labels) == before + 1
