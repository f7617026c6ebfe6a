"""A clemcore ``Model`` whose answers come from the host's plugins."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from clemcore.backends import Model, ModelSpec

from clemhost_games.protocol import Channel


class HostCallError(RuntimeError):
    """A model call the host could not answer (after its retries)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class HostModel(Model):
    """Player ``index``'s model in ``seat``, answered by clemhost.

    The model spec is the host's resolved registry entry, so the results
    record it as ``clem run`` records clemcore's own resolution.
    """

    def __init__(
        self, channel: Channel, seat: int, index: int, spec: Dict[str, Any], gen_args: Dict[str, Any]
    ) -> None:
        super().__init__(ModelSpec.from_dict(spec))
        self.set_gen_args(**gen_args)
        self._channel = channel
        self._seat = seat
        self._index = index

    def generate_response(self, messages: List[Dict]) -> Tuple[Any, Any, str]:
        answer = self._channel.request(
            "call", {"seat": self._seat, "player": self._index, "messages": messages}, seat=self._seat
        )
        reply = answer.get("reply")
        if not isinstance(reply, dict):
            raise HostCallError("protocol", f"expected a reply, got {sorted(answer)}")
        error = reply.get("error")
        if error is not None:
            raise HostCallError(str(error.get("kind", "unknown")), str(error.get("message", "")))
        return reply.get("prompt"), reply.get("response"), str(reply.get("text", ""))
