"""Scores and transcripts of played episodes, written by clemcore's own code.

Two jobs besides playing (see ``protocol``):

- ``score``: the game is loaded through ``GameBenchmark.load_from_spec``
  and each episode is scored by the game's own scorer
  (``create_game_scorer(experiment, instance)``, ``compute_scores``,
  ``store_scores``), reading the three files ``clem score`` reads: the
  episode's ``interactions.json`` and ``instance.json`` and its
  experiment's ``experiment.json``;
- ``transcribe``: clemcore's transcript builder renders each episode's
  ``interactions.json`` as ``transcript.html`` and ``transcript.tex``.

Every file is first written into the host's staging folder and then moved
over the old one, so an interrupted job leaves each episode with its old
file or the new one, never half of one. One ``written`` message per
episode tells the host how it went.
"""

from __future__ import annotations

import json
import os
import shutil
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from clemhost_games.protocol import Channel


def read_json(path: Path) -> Any:
    with open(path, encoding="utf8") as f:
        return json.load(f)


def move_into(staged: Path, folder: Path) -> None:
    """Puts ``staged`` into ``folder`` under its name, replacing what is there.

    A rename when both are on one file system; otherwise a copy next to
    the target first, then a rename there.
    """
    target = folder / staged.name
    try:
        os.replace(staged, target)
    except OSError:
        beside = folder / f".{staged.name}.clemhost-{os.getpid()}"
        shutil.copyfile(staged, beside)
        os.replace(beside, target)
        staged.unlink()


def failure(e: BaseException) -> Dict[str, str]:
    return {
        "type": type(e).__name__,
        "message": str(e),
        "traceback": "".join(traceback.format_exception(type(e), e, e.__traceback__))[-4000:],
    }


def each_episode(channel: Channel, job: Dict[str, Any], write: Callable[[Path, Path], None]) -> None:
    """Calls ``write(episode_folder, private_staging_folder)`` per episode and reports it."""
    staging = Path(job["staging"])
    episodes: List[str] = job["episodes"]
    for n, episode in enumerate(episodes):
        error: Optional[Dict[str, str]] = None
        place = staging / str(n)
        try:
            place.mkdir(parents=True, exist_ok=True)
            write(Path(episode), place)
        except Exception as e:  # the next episode is still written, as clemcore goes on
            error = failure(e)
        finally:
            shutil.rmtree(place, ignore_errors=True)
        channel.send("written", {"episode": episode, "error": error})


def score(channel: Channel, job: Dict[str, Any]) -> None:
    from clemcore.clemgame import GameBenchmark
    from clemcore.clemgame.registry import GameSpec

    from clemhost_games.worker import skip_downloads_of_installed_nltk_data

    skip_downloads_of_installed_nltk_data()
    spec = GameSpec.from_dict(dict(job["game_spec"]))
    with GameBenchmark.load_from_spec(spec) as benchmark:

        def write(episode: Path, place: Path) -> None:
            interactions = read_json(episode / "interactions.json")
            instance = read_json(episode / "instance.json")
            experiment = read_json(episode.parent / "experiment.json")
            scorer = benchmark.create_game_scorer(experiment, instance)
            scorer.compute_scores(interactions)
            scorer.store_scores(place)
            move_into(place / "scores.json", episode)

        each_episode(channel, job, write)


def transcribe(channel: Channel, job: Dict[str, Any]) -> None:
    from clemcore.clemgame.transcripts.builder import build_tex, build_transcript

    def store_text(text: str, name: str, episode: Path, place: Path) -> None:
        with open(place / name, "w", encoding="utf-8") as f:
            f.write(text)
        move_into(place / name, episode)

    def write(episode: Path, place: Path) -> None:
        interactions = read_json(episode / "interactions.json")
        # In clemcore's order: the HTML transcript stays when the LaTeX one fails.
        store_text(build_transcript(interactions), "transcript.html", episode, place)
        store_text(build_tex(interactions), "transcript.tex", episode, place)

    each_episode(channel, job, write)
