"""The Redis keys of one OAuth client, handed to the token cache and the rate limiter together.

Every process using the same client shares them (one token, one request budget); their names are
spelled in :mod:`parley.keys`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from parley import keys


class ClientKeys(BaseModel):
    model_config = ConfigDict(frozen=True)

    token: str
    token_lock: str
    client: str
    rate: str
    pause: str

    @classmethod
    def for_client(cls, login_url: str, client_id: str) -> ClientKeys:
        client = keys.genesys_client(login_url, client_id)
        return cls(token=keys.genesys_token(client), token_lock=keys.genesys_token_lock(client),
                   client=client, rate=keys.genesys_rate(client), pause=keys.genesys_pause(client))

    def slot(self, holder: str) -> str:
        """A request slot kept for ``holder`` (a parked command) until it comes back for it."""
        return keys.genesys_slot(self.client, holder)
