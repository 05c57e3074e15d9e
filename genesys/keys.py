"""Redis key names shared by every process that uses the same OAuth client.

Genesys limits and tokens are per client-credentials client, so the keys are scoped by a hash of
the login URL and client id: the id itself is not written to Redis, the secret never is, and the
same client id against the emulator and a real org never shares a token.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict

PREFIX = "parley:genesys"


class ClientKeys(BaseModel):
    model_config = ConfigDict(frozen=True)

    token: str
    token_lock: str
    rate: str
    pause: str

    @classmethod
    def for_client(cls, login_url: str, client_id: str) -> ClientKeys:
        digest = hashlib.sha256(f"{login_url}\n{client_id}".encode()).hexdigest()[:20]
        base = f"{PREFIX}:{digest}"
        return cls(token=f"{base}:token", token_lock=f"{base}:token:lock", rate=f"{base}:rate", pause=f"{base}:pause")
