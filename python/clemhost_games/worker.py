"""The worker: plays a job's episodes with clemcore's own runner, on seats.

Both supported clemcore lines are driven through their public API as their
own ``clem run`` drives it: 3.3.x (``GameInstanceIterator``, four file
callbacks) and 3.4+ up to 3.7.x (``GameInstances``, six file callbacks).
Each seat of a job is a thread with its own models and callbacks that runs
clemcore's runner over the episodes the host hands it one at a time, so a
worker plays as many episodes at once as it has seats while it waits for
answers, and a game's module is loaded once per job. (One game at a time
per process: clemcore loads a game's helper modules into ``sys.modules``
and unloads them when the game is closed.)
"""

from __future__ import annotations

import io
import logging
import sys
import threading
import traceback
from collections import defaultdict, deque
from pathlib import Path
from typing import Any, Deque, Dict, Iterator, List, Optional, Tuple

from clemhost_games import PROTOCOL_VERSION
from clemhost_games.protocol import Channel

SUPPORTED = ((3, 3), (3, 4), (3, 5), (3, 6), (3, 7))


def clemcore_version() -> str:
    from importlib.metadata import version

    return version("clemcore")


class EpisodeReporter(logging.Handler):
    """Tells the host when each episode ends, and how.

    clemcore's runners catch an episode's exception, log it and go on; this
    is both a callback (episode start and end) and a log handler (the
    exception) so that a failed episode is reported with its error.
    """

    def __init__(self, channel: Channel, seat: int) -> None:
        super().__init__(level=logging.ERROR)
        self._channel = channel
        self._seat = seat
        self._thread = threading.get_ident()  # the seat's: records of other seats are theirs
        self._current: Optional[Tuple[str, int]] = None
        self._error: Optional[Dict[str, str]] = None

    # logging.Handler
    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self._thread:
            return
        if self._current is None or record.exc_info is None or self._error is not None:
            return
        exc_type, exc, _tb = record.exc_info
        self._error = {
            "type": exc_type.__name__ if exc_type else "Exception",
            "message": str(exc),
            "kind": str(getattr(exc, "kind", "")),
            "traceback": "".join(traceback.format_exception(*record.exc_info))[-4000:],
        }

    def _finish(self, error: Optional[Dict[str, str]]) -> None:
        if self._current is not None:
            experiment, game_id = self._current
            self._channel.send(
                "episode", {"seat": self._seat, "experiment": experiment, "game_id": game_id, "error": error}
            )
        self._current = None
        self._error = None

    # clemcore GameBenchmarkCallback methods (duck-typed; 3.7 passes more arguments)
    def on_benchmark_start(self, game_benchmark: Any, *_more: Any) -> None:
        pass

    def on_game_start(self, game_master: Any, game_instance: Dict, *_more: Any) -> None:
        if self._current is not None:  # the previous episode never ended: it failed
            self._finish(self._error or {"type": "Exception", "message": "the episode ended early", "kind": ""})
        self._current = (game_master.experiment["name"], int(game_instance["game_id"]))

    def on_game_step(self, game_master: Any, game_instance: Dict, *_more: Any) -> None:
        pass

    def on_game_end(self, game_master: Any, game_instance: Dict, *more: Any, **named: Any) -> None:
        # 3.7 passes the exception that ended the episode, also one raised by
        # the game's setup, before any on_game_start (3.3 never calls this then).
        self._current = (game_master.experiment["name"], int(game_instance["game_id"]))
        exception = more[0] if more else named.get("exception")
        if isinstance(exception, BaseException):
            self._error = self._error or {
                "type": type(exception).__name__,
                "message": str(exception),
                "kind": str(getattr(exception, "kind", "")),
                "traceback": "".join(traceback.format_exception(exception))[-4000:],
            }
            self._finish(self._error)
        else:
            self._finish(None)

    def on_benchmark_end(self, game_benchmark: Any, *_more: Any) -> None:
        if self._current is not None:
            self._finish(self._error or {"type": "Exception", "message": "the episode ended early", "kind": ""})


def skip_downloads_of_installed_nltk_data() -> None:
    """Makes ``nltk.download(name)`` return at once when ``name`` is installed.

    Games call it at import (taboo: stopwords, codenames: wordnet); offline
    each call waits for a DNS failure (seconds per worker) before the game
    goes on with the installed data. When the data is found locally the
    call's outcome is the same, without the network.
    """
    try:
        import nltk
    except ImportError:
        return
    original = nltk.download
    if getattr(original, "clemhost_skips_installed", False):
        return  # done for an earlier job of this worker

    def download(info_or_id: Any = None, *args: Any, **kwargs: Any) -> Any:
        if isinstance(info_or_id, str):
            for kind in ("corpora", "tokenizers", "taggers", "chunkers", "models", "misc", "sentiment", "stemmers"):
                for suffix in ("", ".zip"):
                    try:
                        nltk.data.find(f"{kind}/{info_or_id}{suffix}")
                        return True
                    except LookupError:
                        pass
        return original(info_or_id, *args, **kwargs)

    setattr(download, "clemhost_skips_installed", True)
    nltk.download = download


def load_models(channel: Channel, seat: int, players: List[Dict[str, Any]], gen_args: Dict[str, Any]) -> List[Any]:
    """clemcore's own mock/programmatic players, and host models for the rest (one set per seat)."""
    from clemcore import backends

    from clemhost_games.host_model import HostModel

    models: List[Any] = []
    for index, player in enumerate(players):
        if player["kind"] == "host":
            models.append(HostModel(channel, seat, index, player["spec"], gen_args))
        else:  # "programmatic" (mock) and "human": clemcore's own
            models.append(backends.load_model(player["name"], gen_args))
    return models


class InstancePool:
    """Every instance of the spec, by (experiment, game_id), in clemcore's own items.

    Built once per job from clemcore's iterator, so each item is what
    clemcore's runner would get for that episode (3.3: an ``(experiment,
    game_instance)`` pair, 3.7: a row). clembench's codenames has two
    experiments of one name: each key holds its items in file order.
    """

    def __init__(self, spec: Any, modern: bool) -> None:
        self._items: Dict[Tuple[str, int], Deque[Any]] = defaultdict(deque)
        self._lock = threading.Lock()
        if modern:
            from clemcore.clemgame import GameInstances

            for row in GameInstances.from_game_spec(spec):
                self._items[(row["experiment"]["name"], int(row["game_instance"]["game_id"]))].append(row)
        else:
            from clemcore.clemgame import GameInstanceIterator

            every = GameInstanceIterator.from_game_spec(spec)
            every.reset()
            for experiment, instance in every:
                self._items[(experiment["name"], int(instance["game_id"]))].append((experiment, instance))

    def take(self, experiment: str, game_id: int) -> Any:
        with self._lock:
            items = self._items.get((experiment, game_id))
            if not items:
                raise LookupError(f"the host handed out {experiment}/{game_id}, which the instances file lacks")
            return items.popleft()


class Handed:
    """The episodes the host hands one seat, one at a time, as clemcore's runner iterates."""

    def __init__(self, channel: Channel, seat: int, pool: InstancePool) -> None:
        self._channel = channel
        self._seat = seat
        self._pool = pool

    def __iter__(self) -> Iterator[Any]:
        while True:
            answer = self._channel.request("next", {"seat": self._seat}, seat=self._seat)
            episode = answer.get("next", {}).get("episode")
            if episode is None:
                return
            yield self._pool.take(str(episode[0]), int(episode[1]))


def play_seat(channel: Channel, job: Dict[str, Any], seat: Dict[str, Any], benchmark: Any, pool: InstancePool) -> None:
    """One seat: its models and callbacks, then clemcore's runner over what the host hands it."""
    from clemcore.backends import Model
    from clemcore.clemgame import GameBenchmarkCallbackList
    from clemcore.clemgame.callbacks import files as cb_files
    from clemcore.clemgame.runners import dispatch

    number = int(seat["seat"])
    models = load_models(channel, number, job["players"], job["gen_args"])
    results = Path(seat["results_dir"])
    infos = Model.to_infos(models)
    modern = is_modern()
    if modern:
        folder = cb_files.ResultsFolder(results, run_dir=Model.to_identifier(models))
        savers = [
            cb_files.InstanceFileSaver(folder),
            cb_files.ExperimentFileSaver(folder, player_model_infos=infos),
            cb_files.InteractionsFileSaver(folder, player_model_infos=infos),
            cb_files.PlayerFileSaver(folder),
            cb_files.SignalFileSaver(folder),
        ]
        run_saver = cb_files.RunFileSaver(folder, player_model_infos=infos)
    else:
        folder = cb_files.ResultsFolder(results, models)
        savers = [
            cb_files.InstanceFileSaver(folder),
            cb_files.ExperimentFileSaver(folder, infos),
            cb_files.InteractionsFileSaver(folder, infos),
        ]
        run_saver = cb_files.RunFileSaver(folder, infos)
    run_dir = folder.to_run_dir_path() if modern else folder.to_models_dir_path()
    answer = channel.request("ready", {"seat": number, "run_dir": str(run_dir)}, seat=number)
    if "ready" not in answer:
        raise ValueError(f"expected the host's ready, got {sorted(answer)}")
    reporter = EpisodeReporter(channel, number)
    savers.append(run_saver)
    # The reporter last: an episode is reported once every saver has written
    # its files, so the host can move the folder whole. A saver that raises
    # skips the reporter's on_game_end; the next episode's start (or the
    # benchmark's end) then reports the episode as failed.
    callbacks = GameBenchmarkCallbackList(savers + [reporter])
    loggers = [logging.getLogger("clemcore"), logging.getLogger()]
    for logger in loggers:
        logger.addHandler(reporter)
    try:
        dispatch.run(benchmark, Handed(channel, number, pool), models, callbacks=callbacks, batch_size=1)
    finally:
        for logger in loggers:
            logger.removeHandler(reporter)


def is_modern() -> bool:
    """clemcore 3.4+ (``GameInstances``, six file callbacks) rather than 3.3."""
    import clemcore.clemgame

    return hasattr(clemcore.clemgame, "GameInstances")


class HostTerminalOut(io.TextIOBase):
    """``sys.stdout`` while a person plays: what the game prints goes to the host's terminal."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text:
            self._channel.send("say", {"text": text})
        return len(text)


class HostTerminalIn(io.TextIOBase):
    """``sys.stdin`` while a person plays: each line is read by the host from its own stdin.

    clemcore's human player prints the game master's message and calls
    ``input()``, which writes its prompt to ``sys.stdout`` and reads
    ``sys.stdin.readline()`` when they are not a console: both go through
    the host, which owns the terminal. End of input is ``""`` (``input()``
    then raises ``EOFError``, as in ``clem run``).
    """

    def __init__(self, channel: Channel, seat: int) -> None:
        self._channel = channel
        self._seat = seat

    def readable(self) -> bool:
        return True

    def readline(self, size: Optional[int] = -1) -> str:
        answer = self._channel.request("input", {"seat": self._seat}, seat=self._seat)
        line = answer.get("input", {}).get("line")
        return "" if line is None else str(line) + "\n"


def play(channel: Channel, job: Dict[str, Any]) -> None:
    """Plays a job; with a human player (one seat), the host's terminal is the game's."""
    if not any(p.get("kind") == "human" for p in job["players"]):
        play_seats(channel, job)
        return
    out, inp = sys.stdout, sys.stdin
    sys.stdout = HostTerminalOut(channel)
    sys.stdin = HostTerminalIn(channel, int(job["seats"][0]["seat"]))
    try:
        play_seats(channel, job)
    finally:
        sys.stdout, sys.stdin = out, inp


def play_seats(channel: Channel, job: Dict[str, Any]) -> None:
    from clemcore.clemgame import GameBenchmark
    from clemcore.clemgame.registry import GameSpec

    skip_downloads_of_installed_nltk_data()
    spec = GameSpec.from_dict(dict(job["game_spec"]))
    if job.get("instances"):
        spec.instances = job["instances"]
    seats: List[Dict[str, Any]] = list(job["seats"])
    with GameBenchmark.load_from_spec(spec) as benchmark:
        pool = InstancePool(spec, is_modern())
        if len(seats) == 1:
            play_seat(channel, job, seats[0], benchmark, pool)
            return
        failures: List[BaseException] = []

        def run(seat: Dict[str, Any]) -> None:
            try:
                play_seat(channel, job, seat, benchmark, pool)
            except BaseException as e:  # reported by the job, after every seat ended
                failures.append(e)

        threads = [
            threading.Thread(target=run, args=(seat,), name=f"clemhost-seat-{seat['seat']}") for seat in seats
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:
            raise failures[0]


def end_with_the_host() -> None:
    """Ends this worker when clemhost ends, however it ends (also ``kill -9``).

    On Linux the kernel sends SIGKILL when the host's thread that started
    the worker is gone (``PR_SET_PDEATHSIG``); elsewhere, and as a fallback,
    a thread notices that the parent changed. Ctrl-C in a terminal reaches
    the whole process group: the worker ignores it and the host, which
    decides what a stop means, ends the worker itself.
    """
    import os
    import signal
    import sys
    import threading
    import time

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent or parent == 1:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.2)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="clemhost-parent-watch", daemon=True).start()


def main() -> int:
    end_with_the_host()
    channel = Channel.take_stdio()
    try:
        version = clemcore_version()
    except Exception:  # not installed: the host checked before, but say it plainly
        channel.send("fatal", {"message": "clemcore is not installed"})
        return 1
    channel.send("hello", {"clemcore": version, "protocol": PROTOCOL_VERSION})
    while True:
        message = channel.receive()
        if message is None:  # the host closed the pipe: the run is over
            return 0
        job = message.get("job")
        if not isinstance(job, dict):
            channel.send("fatal", {"message": f"expected a job, got {sorted(message)}"})
            return 1
        task = job.get("task", "play")
        try:
            if task == "play":
                play(channel, job)
            elif task in ("score", "transcribe"):
                from clemhost_games import records

                getattr(records, task)(channel, job)
            else:
                channel.send("fatal", {"message": f"unknown task {task!r}"})
                return 1
        except Exception as e:  # the job could not be done at all (e.g. master.py does not import)
            channel.send(
                "fatal",
                {"message": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]},
            )
            return 1
        channel.send("done", {})
