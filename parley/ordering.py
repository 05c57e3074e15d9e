"""Commands about one conversation or one customer run in the order ingest accepted them.

Producers write commands in an order that means something (start a cobrowse, then end the
conversation), so Parley keeps it: every command gets its *order keys* (:func:`order_keys`), one
per conversation it names and one per customer it messages, and waits in one Redis list per key.

* **Join** (at ingest, in the script that claims the idempotency key, :mod:`parley.records`): the
  command id is appended to each of its lists, so the lists hold commands in the order they were
  accepted, whatever crashes. It is handed to Celery only when it is first in every one of its lists.
* **Leave** (:meth:`Sequencer.leave`, in the transaction that writes the command's outcome): a
  command that succeeded, failed for good or expired leaves its lists.
* **Wake** (:meth:`Sequencer.wake`, right after that transaction): every command that is now first in
  all of its lists and has not started is marked dispatched and returned, to be published. A crash
  between the outcome and the publish is healed by the finished command's next delivery (its Celery
  message was not acked), which wakes again, or by the sweeper (:mod:`workers.sweeper`), which wakes
  the lists of a command that has waited too long; waking also drops a first entry whose record is
  finished or gone.

A waiting command holds nothing but its places in the lists: no Celery message, no worker slot. The
runner refuses to start a command that is not first (:meth:`Sequencer.ready`), so a duplicated or
re-published Celery message cannot overtake. Commands are appended to all their lists at once, in one
global accept order, so the oldest unfinished command is always first in each of its lists: waiting
can never deadlock. Commands with different keys never wait for each other.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from parley import keys
from parley.state_cache import ConversationKey, CustomerKey
from schemas.commands import Command, MessageSend

RECORD_FIELD = "order_keys"
"""The command record's field holding its order keys, space-separated (names hold no spaces)."""


def order_keys(command: Command) -> list[str]:
    """The Redis lists ``command`` waits in: its customer's (``message.send``: org, channel, from address
    and contact, as for the customer's lease) and its conversation's (org and conversation id); none for
    chat.create and guest commands."""
    out: list[str] = []
    if isinstance(command, MessageSend):
        customer = CustomerKey.for_message(org=command.org, channel=command.channel.value,
                                           from_address=command.from_address, to_address=command.to_address,
                                           external_contact_id=command.external_contact_id)
        out.append(keys.order_queue(customer.namespace, customer.ident()))
    if conversation_id := command.targets.get("conversation_id"):
        out.append(keys.order_queue(ConversationKey.namespace, command.org, conversation_id))
    return out


# KEYS: the command's record. ARGV: command id. 1 when the command is first in every list it is in
# (or in none, or finished, or has no record: the runner's begin deals with those), else 0.
_READY = """
local r = redis.call('HMGET', KEYS[1], 'order_keys', 'state')
local listed, state = r[1], r[2]
if not listed or state == 'succeeded' or state == 'failed' or state == 'expired' then return 1 end
for list in string.gmatch(listed, '%S+') do
  if redis.call('LINDEX', list, 0) ~= ARGV[1] then return 0 end
end
return 1
"""

# KEYS: order lists a finished command left. ARGV: command key prefix, in-flight index, now (epoch s).
# Drops first entries whose command finished or whose record is gone (a crash or retention left them),
# then marks every first entry that is first in all of its lists and has not started (accepted, never
# delivered to an execution) as dispatched (and progressing, for the sweeper). Returns {id, type, org,
# idempotency key} per command. Not started, rather than not dispatched: a publish lost with its Redis
# write (a failover) was followed by the finished command's ack, lost with it, so the finished command's
# redelivery publishes the next one again; a second message of a command that did start is skipped.
_WAKE = """
local function finished(state)
  return state == false or state == 'succeeded' or state == 'failed' or state == 'expired'
end
local woken = {}
for _, list in ipairs(KEYS) do
  local head = redis.call('LINDEX', list, 0)
  while head and finished(redis.call('HGET', ARGV[1] .. head, 'state')) do
    redis.call('LPOP', list)
    head = redis.call('LINDEX', list, 0)
  end
  if head then
    local record = ARGV[1] .. head
    local r = redis.call('HMGET', record, 'order_keys', 'state', 'deliveries', 'type', 'org', 'idempotency_key')
    local first = r[2] == 'accepted' and (not r[3] or r[3] == '0')
    for other in string.gmatch(r[1] or '', '%S+') do
      if not first then break end
      first = redis.call('LINDEX', other, 0) == head
    end
    if first then
      redis.call('HSET', record, 'dispatched', '1')
      redis.call('ZADD', ARGV[2], ARGV[3], head)
      woken[#woken + 1] = head
      woken[#woken + 1] = r[4]
      woken[#woken + 1] = r[5]
      woken[#woken + 1] = r[6]
    end
  end
end
return woken
"""


@dataclass(frozen=True)
class Woken:
    """A command whose turn came: what its Celery message needs."""

    command_id: str
    type: str
    org: str
    idempotency_key: str


class Sequencer:
    """Whether a command may run now, and who runs next when one finishes."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._ready = client.register_script(_READY)
        self._wake = client.register_script(_WAKE)

    def ready(self, command_id: str) -> bool:
        """True unless an earlier command on one of its keys is unfinished."""
        return bool(self._ready(keys=[keys.command(command_id)], args=[command_id]))

    @staticmethod
    def leave(pipe: redis.client.Pipeline, command_id: str, lists: Sequence[str]) -> None:
        """Stage the finished command's removal from its lists (in its outcome's transaction)."""
        for name in lists:
            pipe.lrem(name, 1, command_id)

    def wake(self, lists: Sequence[str]) -> list[Woken]:
        """The commands now first in all their lists, marked dispatched: the caller publishes them."""
        if not lists:
            return []
        flat = [x.decode() if isinstance(x, bytes) else x for x in self._wake(
            keys=list(dict.fromkeys(lists)), args=[keys.command(""), keys.INFLIGHT_ZSET, time.time()])]
        return [Woken(*flat[i:i + 4]) for i in range(0, len(flat), 4)]


def lists_of(field: str | None) -> list[str]:
    """The order keys a record stores (:data:`RECORD_FIELD`)."""
    return (field or "").split()
