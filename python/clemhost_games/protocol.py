"""The messages between clemhost and a worker: one JSON object per line.

The host writes to the worker's stdin; the worker writes to its original
stdout, which it keeps for the protocol alone (anything the game prints goes
to stderr). A worker lives for the whole run and does one job after the
other (each job one game spec); it ends when the host closes its stdin.

A ``play`` job names its *seats*: ``{"seats": [{"seat": s, "results_dir":
path}, ...]}``. Each seat is a thread of the worker that plays episodes one
after the other with clemcore's own runner, into its own staging folder;
the seats of a job play at once. Messages of a seat carry its number
(``"seat": s``) both ways, so that the host's answer reaches the thread that
asked. Worker → host:

- ``{"hello": {"clemcore": "3.3.5", "protocol": 4}}`` once, at start;
- ``{"ready": {"seat": s, "run_dir": path}}`` once the seat's models are
  loaded: the run folder clemcore names after them (3.3 adds
  ``-t<temperature>``); the host answers ``{"seat": s, "ready": {}}``;
- ``{"next": {"seat": s}}`` before each episode: the host answers
  ``{"seat": s, "next": {"episode": [experiment, game_id]}}``, or
  ``{"episode": null}`` when the run has no more episodes of this game for
  anyone (``--resume`` leaves out those complete in the run folder), so
  seats share the episodes as they free up;
- ``{"call": {"seat": s, "player": i, "messages": [...]}}``: a model call
  of player ``i``; the host answers with one ``{"seat": s, "reply": ...}``;
- ``{"episode": {"seat": s, "experiment": name, "game_id": n, "error":
  null | {...}}}`` after each episode, once clemcore has written all its
  files (the host then moves the episode's folder into the run folder);
- ``{"say": {"text": ...}}`` and ``{"input": {"seat": s}}`` when a person
  plays (clemcore's human player; the job then has one seat): what the
  game prints, for the host to show on its terminal, and a request for the
  line the person types, answered ``{"seat": s, "input": {"line": text |
  null}}`` (null: end of input);
- ``{"done": {}}`` at the end of a job; ``{"fatal": {"message": ...}}``
  instead when the job cannot be played at all (the worker then exits).

A reply is ``{"prompt": ..., "response": ..., "text": "..."}`` or
``{"error": {"kind": ..., "message": ...}}``.

A job's ``task`` says what to do: ``"play"`` (the default; the messages
above), ``"score"`` (with the ``game_spec``) or ``"transcribe"``. Those two
name the played ``episodes`` (folders holding ``interactions.json``) and a
``staging`` folder of the host's in the job itself; the worker sends
``{"written": {"episode": path, "error": null | {"type": ..., "message":
..., "traceback": ...}}}`` after each episode, then ``done`` (or ``fatal``
when the game does not load). See ``records``.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
from typing import IO, Any, Dict, Optional


class Channel:
    """The worker's end of the pipe to the host (thread-safe).

    One reader thread takes every line from the host and hands it to the
    seat it names (or, without a seat, to the job loop), so that several
    seats can wait for answers at once.
    """

    def __init__(self, out: IO[str], inp: IO[str]) -> None:
        self._out = out
        self._in = inp
        self._lock = threading.Lock()
        self._queues: Dict[Optional[int], "queue.Queue[Optional[Dict[str, Any]]]"] = {}
        self._closed = False
        self._reader: Optional[threading.Thread] = None

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

    def _queue(self, seat: Optional[int]) -> "queue.Queue[Optional[Dict[str, Any]]]":
        with self._lock:
            q = self._queues.get(seat)
            if q is None:
                q = self._queues[seat] = queue.Queue()
                if self._closed:
                    q.put(None)
            return q

    def _read(self) -> None:
        try:
            for line in self._in:
                value = json.loads(line)
                if not isinstance(value, dict):
                    raise ValueError(f"host sent a non-object line: {line[:80]!r}")
                seat = value.pop("seat", None)
                self._queue(seat if isinstance(seat, int) else None).put(value)
        finally:
            with self._lock:
                self._closed = True
                queues = list(self._queues.values())
            for q in queues:
                q.put(None)

    def _start(self) -> None:
        with self._lock:
            if self._reader is None:
                self._reader = threading.Thread(target=self._read, name="clemhost-channel", daemon=True)
                self._reader.start()

    def send(self, kind: str, body: Dict[str, Any]) -> None:
        line = json.dumps({kind: body}, ensure_ascii=False)
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()

    def receive(self, seat: Optional[int] = None) -> Optional[Dict[str, Any]]:
        """The next message for ``seat`` (None: the job loop's); None at end of input."""
        self._start()
        return self._queue(seat).get()

    def request(self, kind: str, body: Dict[str, Any], seat: Optional[int] = None) -> Dict[str, Any]:
        """Sends one message and waits for the host's answer to ``seat``."""
        self.send(kind, body)
        answer = self.receive(seat)
        if answer is None:
            raise ConnectionError("clemhost closed the channel")
        return answer
