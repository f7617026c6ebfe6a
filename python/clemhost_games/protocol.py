"""The messages between clemhost and a worker: one JSON object per line.

The host writes to the worker's stdin; the worker writes to its original
stdout, which it keeps for the protocol alone (anything the game prints goes
to stderr). Messages, worker → host:

- ``{"hello": {"clemcore": "3.3.5", "protocol": 3}}`` once, at start;
- ``{"ready": {"run_dir": path}}`` once the models are loaded: the run
  folder clemcore names after them (3.3 adds ``-t<temperature>``); the host
  answers with the episodes to play, ``{"episodes": [[experiment, game_id], ...]}``
  (``--resume`` leaves out those complete in the run folder);
- ``{"call": {"player": i, "messages": [...]}}``: a model call of player
  ``i``; the host answers with one ``reply`` line;
- ``{"episode": {"experiment": name, "game_id": n, "error": null | {...}}}``
  after each episode, once clemcore has written all its files (the host
  then moves the episode's folder into the run folder);
- ``{"done": {}}`` at the end; ``{"fatal": {"message": ...}}`` instead when
  the job cannot be played at all.

Host → worker: the ``job`` (first line), the ``episodes`` (after ``ready``),
then one ``reply`` per ``call``:
``{"reply": {"prompt": ..., "response": ..., "text": "..."}}`` or
``{"reply": {"error": {"kind": ..., "message": ...}}}``.

A job's ``task`` says what to do: ``"play"`` (the default; the messages
above), or, since protocol 3, ``"score"`` (with the ``game_spec``) or
``"transcribe"``. Those two name the played ``episodes`` (folders holding
``interactions.json``) and a ``staging`` folder of the host's in the job
itself; the worker sends ``{"written": {"episode": path, "error": null |
{"type": ..., "message": ..., "traceback": ...}}}`` after each episode, then
``done`` (or ``fatal`` when the game does not load). See ``records``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import IO, Any, Dict, Optional


class Channel:
    """The worker's end of the pipe to the host (thread-safe)."""

    def __init__(self, out: IO[str], inp: IO[str]) -> None:
        self._out = out
        self._in = inp
        self._lock = threading.Lock()

    @classmethod
    def take_stdio(cls) -> "Channel":
        """Keeps fd 1 for the protocol and points fd 1 (print, logging) at stderr."""
        out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
        os.dup2(2, 1)
        inp = os.fdopen(os.dup(0), "r", encoding="utf-8")
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)  # a game that reads stdin gets end-of-file, not our messages
        os.close(devnull)
        sys.stdin = open(os.devnull, "r", encoding="utf-8")
        return cls(out, inp)

    def send(self, kind: str, body: Dict[str, Any]) -> None:
        line = json.dumps({kind: body}, ensure_ascii=False)
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()

    def receive(self) -> Optional[Dict[str, Any]]:
        line = self._in.readline()
        if not line:
            return None
        value = json.loads(line)
        if not isinstance(value, dict):
            raise ValueError(f"host sent a non-object line: {line[:80]!r}")
        return value

    def request(self, kind: str, body: Dict[str, Any]) -> Dict[str, Any]:
        """Sends one message and waits for the host's answer."""
        with self._lock:
            self._out.write(json.dumps({kind: body}, ensure_ascii=False) + "\n")
            self._out.flush()
            answer = self.receive()
        if answer is None:
            raise ConnectionError("clemhost closed the channel")
        return answer
