#!/usr/bin/env python3
"""A deterministic OpenAI-compatible chat server on 127.0.0.1, for differential tests.

The answer is a function of the conversation alone (each message's role
and text), so two harnesses that send the same conversations get the same
answers. It plays clembench's text
games plausibly, so that episodes go past their first turn: it recognises
the game and the role from the conversation's first message and answers in
that role's format, from what the conversation says (taboo clues that avoid
the target, wordle guesses that keep to the feedback, adventuregame actions
on the objects in view, textmapworld moves through the doors it is told
of, ...). Where a player has a choice, a SHA-256 of the messages picks, so
episodes differ and some fail (a taboo clue with the target word, a
malformed answer now and then). Anything it does not recognise gets one of
a few short answers, also picked by the hash. Standard library only;
prints the port it listens on as its first line.

    python3 scripts/loopback_openai.py [--port 0] [--latency-ms 0] [--max-seconds 900]
    python3 scripts/loopback_openai.py --answer < messages.json   (one answer, no server)
    --log FILE appends every request's messages and the answer to FILE (JSON lines).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Sequence, Tuple

WORDS = ["winter", "season", "apple", "house", "cold", "crane", "slate", "world", "green", "river"]

# Five-letter words wordle accepts (its instances' official list has them).
FIVE = [
    "about", "other", "which", "their", "there", "first", "would", "these", "price", "state",
    "world", "music", "after", "video", "where", "order", "group", "under", "could", "great",
    "hotel", "store", "right", "local", "those", "phone", "black", "check", "house", "photo",
    "power", "three", "total", "place", "think", "north", "water", "party", "apple", "beach",
    "crane", "horse", "quiet", "fight", "learn", "plant", "sound", "money", "light", "heart",
]


class Conversation:
    """What one request says: the messages, and a hash of them to choose with."""

    def __init__(self, messages: List[Dict[str, Any]]) -> None:
        self.messages = messages
        # Roles and texts only: clients differ in what else they send
        # (clemcore passes its messages' own keys, such as "label", through).
        said = [[str(m.get("role", "")), str(m.get("content", ""))] for m in messages]
        self.digest = hashlib.sha256(json.dumps(said).encode("utf-8")).digest()
        self.texts = [str(m.get("content", "")) for m in messages]
        users = [t for m, t in zip(messages, self.texts) if m.get("role") != "assistant"]
        self.first = users[0] if users else ""
        self.last = users[-1] if users else ""
        self.users = users
        self.mine = [t for m, t in zip(messages, self.texts) if m.get("role") == "assistant"]
        self.turn = len(self.mine)

    def byte(self, i: int) -> int:
        return self.digest[i % len(self.digest)]

    def pick(self, options: Sequence[Any], salt: int = 0) -> Any:
        return options[self.byte(salt) % len(options)]

    def chance(self, per_256: int, salt: int) -> bool:
        return self.byte(salt) < per_256


def after(text: str, marker: str) -> str:
    """The text after the last `marker`, or ''."""
    i = text.rfind(marker)
    return text[i + len(marker):] if i >= 0 else ""


def words_list(text: str) -> List[str]:
    """'a, b and c.' -> ['a', 'b', 'c']."""
    text = text.strip().rstrip(".")
    return [w.strip() for w in re.split(r",\s*|\s+and\s+", text) if w.strip()]


# --- taboo -------------------------------------------------------------------

TABOO_CLUES = [
    "something you might see outside", "a thing many people like", "it can be found at home",
    "you often talk about it", "a common everyday idea", "people use it all the time",
    "it is part of nature", "you learn about it at school",
]


def taboo_describer(c: Conversation) -> str:
    target = re.search(r"needs to guess:\s*\n\s*(\S[^\n]*)", c.first)
    target_word = target.group(1).strip().lower() if target else ""
    related = [w.strip().lower() for w in re.findall(r"^- (.+)$", c.first, re.M)]
    if target_word and c.chance(8, 3):
        return f"CLUE: it is like {target_word}"  # breaks the rule: the game aborts
    if c.chance(10, 4):
        return "I would describe it as something common."  # no CLUE: tag
    banned = [w[:4] for w in [target_word] + related if w]
    clues = [x for x in TABOO_CLUES if not any(w[:4] in banned for w in x.split())]
    letters = f" and it has {len(target_word)} letters" if target_word and c.turn > 0 else ""
    return f"CLUE: {c.pick(clues or TABOO_CLUES, 5)}{letters}"


def taboo_guesser(c: Conversation) -> str:
    if c.chance(10, 6):
        return "Maybe a tree?"  # no GUESS: tag
    length = re.search(r"has (\d+) letters", c.last)
    options = [w for w in WORDS if length and len(w) == int(length.group(1))] or WORDS
    return f"GUESS: {c.pick(options, 7)}"


# --- wordle ------------------------------------------------------------------

def wordle_candidates(c: Conversation) -> List[str]:
    """The words of FIVE that agree with every guess_feedback so far."""
    keep = list(FIVE)
    for text in c.users:
        for line in re.findall(r"guess_feedback:\s*([^\n]+)", text):
            marks = re.findall(r"([a-z])<(green|yellow|red)>", line)
            if len(marks) != 5:
                continue

            def fits(word: str) -> bool:
                for i, (letter, colour) in enumerate(marks):
                    if colour == "green" and word[i] != letter:
                        return False
                    if colour == "yellow" and (word[i] == letter or letter not in word):
                        return False
                    if colour == "red" and letter in word and all(
                        m[0] != letter or m[1] == "red" for m in marks
                    ):
                        return False
                return True

            keep = [w for w in keep if fits(w)]
    return keep


def wordle_guesser(c: Conversation) -> str:
    previous = [m.group(1) for t in c.mine for m in [re.search(r"guess:\s*(\w+)", t)] if m]
    if "guess_agreement: yes" in c.last and previous:
        return f"explanation: the critic agrees, so I keep my guess.\nguess: {previous[-1]}"
    if c.chance(8, 8):
        return f"guess: {c.pick(FIVE, 9)}"  # no explanation first
    candidates = [w for w in wordle_candidates(c) if w not in previous] or FIVE
    return f"explanation: this word fits the feedback so far.\nguess: {c.pick(candidates, 10)}"


def wordle_critic(c: Conversation) -> str:
    agree = c.pick(["yes", "yes", "no"], 11)
    return f"explanation: the guess {'fits' if agree == 'yes' else 'does not fit'} the clue.\nagreement: {agree}"


# --- codenames ---------------------------------------------------------------

def codenames_cluegiver(c: Conversation) -> str:
    team = re.search(r"(?:Your team words are|Your remaining team words are):\s*([^\n]+)", c.last)
    words = words_list(team.group(1)) if team else []
    if not words:
        return "CLUE: nothing\nTARGETS: nothing"
    first = c.pick(words, 12)
    targets = [first] + ([w for w in words if w != first][:1] if c.chance(96, 13) else [])
    return f"CLUE: {first[::-1]}\nTARGETS: {', '.join(targets)}"


def codenames_guesser(c: Conversation) -> str:
    lines = [line for line in c.last.strip().split("\n") if line.strip()]
    board = words_list(lines[-1]) if lines else []
    clue = re.search(r"with the word '([^']+)'", c.last)
    count = re.search(r"up to (\d+) words", c.last)
    n = int(count.group(1)) if count else 1
    guesses: List[str] = []
    if clue and clue.group(1)[::-1] in board and not c.chance(40, 14):
        guesses.append(clue.group(1)[::-1])
    for k in range(n):
        if len(guesses) >= n or not board or (guesses and c.chance(128, 15 + k)):
            break
        w = c.pick(board, 20 + k)
        if w not in guesses:
            guesses.append(w)
    return "GUESS: " + ", ".join(guesses or board[:1])


# --- guesswhat ---------------------------------------------------------------

QUESTIONS = [
    "Is it a living thing?", "Is it related to sports?", "Is it an object?",
    "Is it something abstract?", "Is it related to politics?", "Can you hear it?",
]


def guesswhat_guesser(c: Conversation) -> str:
    listed = re.search(r"List of candidate words:\s*(\[[^\]]*\])", c.first)
    try:
        candidates = [str(w) for w in ast.literal_eval(listed.group(1))] if listed else []
    except (SyntaxError, ValueError):
        candidates = []
    if candidates and c.turn >= 1 + c.byte(16) % 4:
        return f"GUESS: {c.pick(candidates, 17)}"
    return f"QUESTION: {QUESTIONS[c.turn % len(QUESTIONS)]}"


def guesswhat_answerer(c: Conversation) -> str:
    if c.chance(8, 18):
        return "yes"  # no ANSWER: tag
    return c.pick(["ANSWER: yes", "ANSWER: No.", "ANSWER: No", "ANSWER: Yes."], 19)


# --- hellogame ---------------------------------------------------------------

def hellogame_greeter(c: Conversation) -> str:
    name = re.search(r"with the name:\s*\n\s*(\S[^\n]*)", c.first)
    who = name.group(1).strip() if name else "friend"
    return c.pick([f"GREET: Hello {who}, welcome!", f"GREET: Hello {who}!", f"Hello {who}, welcome!",
                   f"GREET: Hello and welcome, {who}."], 20)


# --- imagegame ---------------------------------------------------------------

EMPTY = ("▢", "□")


def grid_rows(block: str) -> List[List[str]]:
    """The rows of the first grid in `block` (lines of space-separated cells)."""
    rows: List[List[str]] = []
    for line in block.split("\n"):
        cells = line.split()
        if cells and all(len(x) == 1 for x in cells) and len(cells) >= 3:
            rows.append(cells)
        elif rows:
            break
    return rows


def imagegame_giver(c: Conversation) -> str:
    target = grid_rows(after(c.first, "which is a "))
    commands = []
    for r, row in enumerate(target):
        for letter in sorted({x for x in row if x not in EMPTY}):
            cols = [str(i + 1) for i, x in enumerate(row) if x == letter]
            commands.append(f"Command: Put {letter} in row {r + 1} columns {', '.join(cols)}")
    if c.chance(20, 22) and commands:
        commands.pop(c.byte(23) % len(commands))  # forgets one
    return commands[c.turn] if c.turn < len(commands) else "Command: DONE"


def imagegame_follower(c: Conversation) -> str:
    size = re.search(r"size (\d+) by (\d+)", c.first)
    rows, cols = (int(size.group(1)), int(size.group(2))) if size else (5, 5)
    grid = [["▢"] * cols for _ in range(rows)]
    for text in c.users:
        for letter, r, cs in re.findall(r"Put (\w) in row (\d+) columns ([\d, ]+)", text):
            for col in re.findall(r"\d+", cs):
                if 0 < int(r) <= rows and 0 < int(col) <= cols:
                    grid[int(r) - 1][int(col) - 1] = letter
    return "\n".join(" ".join(row) for row in grid)


# --- matchit_ascii -----------------------------------------------------------

def matchit_player(c: Conversation) -> str:
    mine = grid_rows(after(c.first, "This is your grid:"))
    filled = [sum(x not in EMPTY for x in row) for row in mine]
    if "come to a decision" in c.last:
        return c.pick(["DECISION: same grid", "DECISION: different grids"], 24)
    if 'Start your answer with "ANSWER:"' in c.last:
        asked = re.search(r"row (\d)", c.last)
        r = int(asked.group(1)) - 1 if asked else 0
        return f"ANSWER: my row {r + 1} has {filled[r] if r < len(filled) else 0} filled cells."
    if "ask a question" in c.last:
        return f"QUESTION: How many filled cells are in row {1 + (c.turn + c.byte(25)) % 5}?"
    return "DESCRIPTION: filled cells per row: " + ", ".join(map(str, filled))


# --- privateshared -----------------------------------------------------------

def privateshared_answerer(c: Conversation) -> str:
    if c.last.startswith("ME:"):
        return c.pick(["ASIDE: yes", "ASIDE: no", "ASIDE: Yes, I think so.", "yes"], 26)
    facts = [line.strip() for line in c.first.split("\n") if ":" in line and len(line) < 120]
    fact = c.pick(facts, 27) if facts else "that is fine"
    return c.pick([f"ANSWER: {fact}", f"ANSWER: {fact}", f"ANSWER: {fact}\nAnd more.", fact], 28)


# --- referencegame -----------------------------------------------------------

def count_filled(block: str) -> int:
    return sum(x not in EMPTY for row in grid_rows(block) for x in row)


def referencegame_giver(c: Conversation) -> str:
    n = count_filled(after(c.first, "Target grid:"))
    return c.pick([f"Expression: the grid with {n} filled cells", "Expression: the one in the middle"], 29)


def referencegame_follower(c: Conversation) -> str:
    said = re.search(r"grid with (\d+) filled cells", c.last)
    counts = [count_filled(after(c.last, f"{name}:")) for name in ("First", "Second", "Third")]
    names = ["first", "second", "third"]
    if said and int(said.group(1)) in counts:
        choice = names[counts.index(int(said.group(1)))]
    else:
        choice = c.pick(names, 30)
    return f"Answer: {choice}"


# --- textmapworld ------------------------------------------------------------

def room_now(text: str) -> str:
    found = re.findall(r"(?:You are in the|You are in|entered a|entered|You are still in the) ([A-Z][\w ]*?)\.", text)
    return found[-1] if found else ""


def textmapworld_move(c: Conversation) -> Tuple[str, List[str]]:
    """'GO: direction' or 'DONE', and the rooms seen so far."""
    rooms: List[str] = []
    for text in c.users:
        r = room_now(text)
        if r and r not in rooms:
            rooms.append(r)
    target = re.search(r"The target room is (?:a |an )?([A-Z][\w ]*?)\.", c.first)
    if target and room_now(c.last) == target.group(1):
        return "DONE", rooms
    doors = re.findall(r"Currently available directions: ([a-z, ]+)\.", c.last)
    if not doors or c.turn >= 4 + c.byte(31) % 12:
        return "DONE", rooms
    return f"GO: {c.pick(words_list(doors[-1]), 32)}", rooms


def textmapworld_explorer(c: Conversation) -> str:
    return textmapworld_move(c)[0]


def textmapworld_graph(c: Conversation) -> str:
    action, rooms = textmapworld_move(c)
    graph = {"nodes": rooms, "edges": {"north": [], "south": [], "east": [], "west": []}}
    return json.dumps({"action": action, "graph": graph})


# --- adventuregame -----------------------------------------------------------

def adventuregame_player(c: Conversation) -> str:
    goal = after(c.first, "goal for this game is:").split("\n")[0]
    goals = re.findall(r"the ([a-z][a-z ]*?) (?:on|in) the ([a-z][a-z ]*?)(?=,| and|\.)", goal)
    held = set()
    for mine, reply in zip(c.mine, c.users[1:]):
        command = mine.strip().lstrip(">").strip().split("\n")[0]
        took = re.match(r"take (.+)", command)
        put = re.match(r"put (.+?) (?:on|in) ", command)
        if took and reply.startswith("You take"):
            held.add(took.group(1).strip())
        if put and reply.startswith("You put"):
            held.discard(put.group(1).strip())
    room = next((t for t in reversed(c.users) if "You are in" in t), "")
    things = room[room.find("There "):] if "There " in room else ""
    seen = re.findall(r"\ban? ([a-z][a-z ]*?)(?=,| and |\.)", things.split("passage")[0])
    closed = re.findall(r"The ([a-z][a-z ]*?) is closed\.", room)
    doors = re.search(r"passages? to (.+?) here", room)
    passages = words_list(re.sub(r"\ban? ", "", doors.group(1))) if doors else []
    opened = {m.group(1).strip() for t in c.mine for m in [re.match(r">\s*open (.+)", t.strip())] if m}
    action = ""
    if c.turn >= 14 + c.byte(33) % 10:
        action = "done"
    for obj, dest in goals if not action else []:
        if obj in held and dest in seen:
            action = f"put {obj} on {dest}"
            break
        if obj in seen and obj not in held:
            action = f"take {obj}"
            break
    shut = [x for x in closed if x not in opened]
    if not action and shut:
        action = f"open {shut[0]}"
    if not action:
        action = f"go {c.pick(passages, 34)}" if passages else f"examine {c.pick(seen or ['room'], 34)}"
    if c.chance(8, 35):
        return action  # no '>'
    if "Next actions:" in c.first:
        return f"> {action}\nNext actions: {c.pick(['look around', 'go back', 'take the next object'], 36)}"
    return f"> {action}"


# --- dispatch ----------------------------------------------------------------

ROLES: List[Tuple[Callable[[str], bool], Callable[[Conversation], str]]] = [
    (lambda f: "describe a target word for another player" in f, taboo_describer),
    (lambda f: "guess a target word that another player describes" in f, taboo_guesser),
    # clemcore 3.3 gives wordle's critic no initial prompt, only the guess.
    (lambda f: "agree or disagree with my guess" in f or f.startswith("clue:") and "guess:" in f, wordle_critic),
    (lambda f: "Welcome to Wordle" in f, wordle_guesser),
    (lambda f: "Provide one single-word clue" in f, codenames_cluegiver),
    (lambda f: "closely associated with the word" in f, codenames_guesser),
    (lambda f: "ask a series of questions to find out which of the words" in f, guesswhat_guesser),
    (lambda f: "answer the other player's questions" in f, guesswhat_answerer),
    (lambda f: "greet and happily welcome" in f, hellogame_greeter),
    (lambda f: "I want you to describe this grid to me" in f, imagegame_giver),
    (lambda f: "Let us draw something together" in f, imagegame_follower),
    (lambda f: "This is your grid:" in f, matchit_player),
    (lambda f: "generate a referring expression" in f, referencegame_giver),
    (lambda f: "select the grid that matches" in f, referencegame_follower),
    (lambda f: '"graph"' in f and "Currently available directions" in f, textmapworld_graph),
    (lambda f: "Currently available directions" in f, textmapworld_explorer),
    (lambda f: "text adventure game" in f, adventuregame_player),
    (lambda f: "will start with" in f and "ASIDE" in f, privateshared_answerer),
]


def answer(messages: List[Dict[str, Any]]) -> str:
    c = Conversation(messages)
    for recognises, play in ROLES:
        if recognises(c.first):
            return play(c)
    return ["Answer: first", "Answer: second", c.pick(WORDS, 0)][c.byte(2) % 3]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--max-seconds", type=float, default=900.0)
    p.add_argument("--answer", action="store_true", help="print the answer to the messages (JSON) on stdin and exit")
    p.add_argument("--log", metavar="FILE", help="append each request's messages and answer to FILE (JSON lines)")
    args = p.parse_args()
    log_lock = threading.Lock()
    if args.answer:
        print(answer(json.load(sys.stdin)))
        return

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:
            pass

        def _send(self, code: int, obj: Dict[str, Any]) -> None:
            body = json.dumps(obj).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._send(200, {"object": "list", "data": [{"id": "loopback", "object": "model"}]})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            request = json.loads(self.rfile.read(length) or b"{}")
            if args.latency_ms:
                time.sleep(args.latency_ms / 1000)
            text = answer(request.get("messages", []))
            if args.log:
                with log_lock, open(args.log, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"messages": request.get("messages", []), "answer": text}) + "\n")
            self._send(200, {
                "id": "chatcmpl-loopback", "object": "chat.completion", "created": 0,
                "model": request.get("model", "loopback"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            })

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def server_bind(self) -> None:
            import socket

            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().server_bind()

    server = Server(("127.0.0.1", args.port), Handler)
    print(server.server_address[1], flush=True)
    threading.Timer(args.max_seconds, server.shutdown).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
