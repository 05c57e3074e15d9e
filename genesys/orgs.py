"""Which Genesys org a client talks to: its endpoints, OAuth client and request budget, by alias.

The one place that turns an org alias into what :class:`genesys.client.GenesysClient` needs:
``default`` from the plain ``PARLEY_GENESYS_*`` settings (as before several orgs existed), any other
alias from ``PARLEY_ORGS`` (:mod:`parley.orgs`). An alias that is neither is :class:`UnknownOrg`
(ingest rejects such a command before it gets here).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from genesys.auth import ClientCredentials, credentials_from
from genesys.regions import Endpoints, resolve
from parley.orgs import DEFAULT_ORG, UnknownOrg, known_aliases
from parley.settings import Settings


class OrgTarget(BaseModel):
    """Everything org-specific about a Genesys client."""

    model_config = ConfigDict(frozen=True)

    org: str
    endpoints: Endpoints
    credentials: ClientCredentials | None
    rate_limit_per_minute: int


def target_for(settings: Settings, org: str = DEFAULT_ORG) -> OrgTarget:
    if org == DEFAULT_ORG:
        return OrgTarget(org=org, endpoints=resolve(settings), credentials=credentials_from(settings),
                         rate_limit_per_minute=settings.genesys_rate_limit_per_minute)
    spec = settings.orgs.get(org)
    if spec is None:
        raise UnknownOrg(org, known_aliases(settings.orgs))
    return OrgTarget(org=org, endpoints=spec.endpoints(),
                     credentials=ClientCredentials(client_id=spec.client_id, client_secret=spec.secret),
                     rate_limit_per_minute=spec.rate_limit_per_minute)
