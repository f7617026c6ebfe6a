"""clemhost's Python side: plays clembench games with clemcore's own code.

clemhost starts ``python -m clemhost_games`` as a worker process. The worker
reads jobs (a game spec, the players, its seats) from the host, one after
the other; for each it says where clemcore writes, asks for episodes to
play as its seats free up, loads the game through clemcore's public API
(``GameBenchmark.load_from_spec``), plays the episodes with clemcore's game
master, runner and result callbacks (so every file is the one ``clem run``
writes), and sends each model call of a player to the host, which answers
it through its plugins. It also scores and transcribes played episodes with
clemcore's code (``records``). See ``protocol`` for the messages.
"""

__all__ = ["PROTOCOL_VERSION"]

PROTOCOL_VERSION = 4
