"""Key names are data: Redis already holds keys under these names, so a rename would orphan them."""

from __future__ import annotations

from genesys.keys import ClientKeys
from parley import keys
from workers.guest import keys as guest_keys


def test_command_keys_keep_their_names() -> None:
    assert keys.idempotency("default", "message.send", "k1") == "parley:idem:default:message.send:k1"
    assert keys.command("c1") == "parley:cmd:c1"
    assert keys.execution_lease("c1") == "parley:lease:exec:c1"
    assert keys.heartbeat("ingest", "host-1") == "parley:heartbeat:ingest:host-1"
    assert keys.heartbeat_pattern("guest") == "parley:heartbeat:guest:*"
    assert (keys.INFLIGHT_ZSET, keys.COMPONENTS_HASH) == ("parley:inflight", "parley:components")
    assert (keys.third_party_chat("c1"), keys.sent_messages("c1")) == ("parley:thirdparty:c1", "parley:sent:c1")
    assert keys.order_queue("customer", "i1") == "parley:order:customer:i1"
    assert keys.order_queue("conversation", "default", "c1") == "parley:order:conversation:default:c1"


def test_state_cache_keys_keep_their_names() -> None:
    assert keys.live_conversation("i1") == "parley:state:live:i1"
    assert keys.conversation_customer("c1") == "parley:state:conv:c1"
    assert keys.live_cobrowse("c1") == "parley:state:cobrowse:c1"
    assert keys.ended_conversation("c1") == "parley:state:ended:c1"
    assert keys.guest_ids("i1") == "parley:state:guest:i1"
    assert keys.natural_lease("customer", "i1") == "parley:state:lease:customer:i1"
    assert keys.natural_fence("conversation", "c1") == "parley:state:fence:conversation:c1"


def test_genesys_client_keys_keep_their_names() -> None:
    client = ClientKeys.for_client("https://login.mypurecloud.ie", "client-1")
    base = "parley:genesys:" + keys.genesys_client("https://login.mypurecloud.ie", "client-1")
    assert len(base) == len("parley:genesys:") + 20
    assert client == ClientKeys(client=base.removeprefix("parley:genesys:"), token=f"{base}:token",
                                token_lock=f"{base}:token:lock", rate=f"{base}:rate", pause=f"{base}:pause")
    assert client.slot("cmd-1") == f"{base}:slot:cmd-1"


def test_guest_worker_keys_keep_their_names() -> None:
    assert guest_keys.COMMANDS == keys.GUEST_COMMANDS_STREAM == "parley:guest:commands"
    assert [f("i1") for f in (guest_keys.session, guest_keys.inbox, guest_keys.secret, guest_keys.relayed,
                              guest_keys.fence)] == [f"parley:guest:{kind}:i1" for kind in
                                                     ("session", "inbox", "secret", "relayed", "fence")]
    assert [f("w1") for f in (guest_keys.worker, guest_keys.owned, guest_keys.doorbell)] == [
        "parley:guest:worker:w1", "parley:guest:owned:w1", "parley:guest:doorbell:w1"]
    assert (guest_keys.WORKERS, guest_keys.ROUTER, guest_keys.ANNOUNCE) == (
        "parley:guest:workers", "parley:guest:router", "parley:guest:announce")
