"""The worker: plays one job's episodes with clemcore's own runner.

Both supported clemcore lines are driven through their public API as their
own ``clem run`` drives it: 3.3.x (``GameInstanceIterator`` with a
``sub_selector``, four file callbacks) and 3.4+ up to 3.7.x
(``GameInstances`` with a filter, six file callbacks). The episodes are
those the host lists in the job, in the host's order of experiments.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

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

    def __init__(self, channel: Channel) -> None:
        super().__init__(level=logging.ERROR)
        self._channel = channel
        self._current: Optional[Tuple[str, int]] = None
        self._error: Optional[Dict[str, str]] = None

    # logging.Handler
    def emit(self, record: logging.LogRecord) -> None:
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
            self._channel.send("episode", {"experiment": experiment, "game_id": game_id, "error": error})
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

    nltk.download = download


def load_models(channel: Channel, players: List[Dict[str, Any]], gen_args: Dict[str, Any]) -> List[Any]:
    """clemcore's own mock/programmatic players, and host models for the rest."""
    from clemcore import backends

    from clemhost_games.host_model import HostModel

    models: List[Any] = []
    for index, player in enumerate(players):
        if player["kind"] == "host":
            models.append(HostModel(channel, index, player["spec"], gen_args))
        else:
            models.append(backends.load_model(player["name"], gen_args))
    return models


def play(channel: Channel, job: Dict[str, Any]) -> None:
    from clemcore.backends import Model
    from clemcore.clemgame import GameBenchmark, GameBenchmarkCallbackList
    from clemcore.clemgame.callbacks import files as cb_files
    from clemcore.clemgame.registry import GameSpec
    from clemcore.clemgame.runners import dispatch

    skip_downloads_of_installed_nltk_data()
    spec = GameSpec.from_dict(dict(job["game_spec"]))
    if job.get("instances"):
        spec.instances = job["instances"]
    models = load_models(channel, job["players"], job["gen_args"])
    results = Path(job["results_dir"])
    infos = Model.to_infos(models)
    reporter = EpisodeReporter(channel)
    logging.getLogger("clemcore").addHandler(reporter)
    logging.getLogger().addHandler(reporter)

    modern = hasattr(__import__("clemcore.clemgame", fromlist=["x"]), "GameInstances")
    if modern:
        from clemcore.clemgame import GameInstances

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
    answer = channel.request("ready", {"run_dir": str(run_dir)})
    if not isinstance(answer.get("episodes"), list):
        raise ValueError(f"expected the episodes, got {sorted(answer)}")
    episodes: Set[Tuple[str, int]] = {(e, int(i)) for e, i in answer["episodes"]}
    savers.append(run_saver)
    # The reporter last: an episode is reported once every saver has written
    # its files, so the host can move the folder whole. A saver that raises
    # skips the reporter's on_game_end; the next episode's start (or the
    # benchmark's end) then reports the episode as failed.
    callbacks = GameBenchmarkCallbackList(savers + [reporter])

    with GameBenchmark.load_from_spec(spec) as benchmark:
        if modern:
            instances = GameInstances.from_game_spec(spec).filter(
                lambda row: (row["experiment"]["name"], int(row["game_instance"]["game_id"])) in episodes
            )
        else:
            from clemcore.clemgame import GameInstanceIterator

            def sub_selector(_game: str, experiment: str) -> List[int]:
                return sorted(i for e, i in episodes if e == experiment)

            instances = GameInstanceIterator.from_game_spec(spec, sub_selector=sub_selector)
            instances.reset()
        dispatch.run(benchmark, instances, models, callbacks=callbacks, batch_size=1)


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
    message = channel.receive()
    if message is None:
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
    return 0
