"""clemhost's Python side: plays clembench games with clemcore's own code.

clemhost starts ``python -m clemhost_games`` as a worker process. The worker
reads one job (a game spec, the players) from the host, says where
clemcore writes, is told the episodes to play, loads the game through clemcore's public API
(``GameBenchmark.load_from_spec``), plays the episodes with clemcore's game
master, runner and result callbacks (so every file is the one ``clem run``
writes), and sends each model call of a player to the host, which answers
it through its plugins. It also scores and transcribes played episodes with
clemcore's code (``records``). See ``protocol`` for the messages.
"""

__all__ = ["PROTOCOL_VERSION"]

PROTOCOL_VERSION = 3
