"""Seeded built-in text generators: Lua programs, TinyStories-style stories, child-directed English.

They stand in for The Stack's Lua subset, TinyStories and BabyLM's CHILDES part when no real corpus
is given (no package registry ships those). Each document is composed from a small grammar with
random names, values and nesting, so the domain's structure repeats while the exact text does not:
a model has to learn the patterns (`end` closes `then`/`do`, a pronoun follows its character's
name), it cannot memorise the documents.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable

from featstore.errors import FeatstoreError

# ---------------------------------------------------------------------------------------------------
# Lua
# ---------------------------------------------------------------------------------------------------

LUA_NOUNS = (
    "item player count name value result node list buffer line word total index score config "
    "entry key data queue stack path chunk token user record cache frame level size width height "
    "speed color msg text state child parent tree map set row col offset limit step"
).split()
LUA_VERBS = (
    "get set make build update load save parse format find remove insert check reset draw "
    "push pop merge split count scan render apply collect visit"
).split()
LUA_MODULES = ("utils", "game", "config", "server", "parser", "ui", "store", "graph", "player", "net")
LUA_STRINGS = (
    "hello", "done", "error: %s", "value = %d", "%s: %d", "loading", "ok", "missing key",
    "[%d] %s", "player %s joined", "n/a", "total: %.2f", "---", "saving %s", "%s=%s",
)
LUA_COMMENTS = (
    "TODO: handle the empty case", "keep this in sync with the server", "cache the result",
    "fast path", "walk the list once", "clamp to the valid range", "returns nil on failure",
    "called once per frame", "copy so the caller can modify it", "1-based, like everything in Lua",
    "build the lookup table", "see the README for the format", "avoid global lookups",
)


class _LuaWriter:
    """Writes one Lua program; keeps the names in scope so expressions use defined variables."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.lines: list[str] = []
        self.scope: list[str] = []
        self.functions: list[tuple[str, int]] = []
        self.tables: list[str] = []
        self.loop_vars: list[str] = []  # read-only in Lua 5.4

    def assignable(self) -> list[str]:
        return [v for v in self.scope if v not in self.loop_vars]

    def name(self) -> str:
        rng = self.rng
        noun = rng.choice(LUA_NOUNS)
        style = rng.random()
        if style < 0.25:
            noun = noun + rng.choice(LUA_NOUNS).capitalize()
        elif style < 0.35:
            noun = noun + "_" + rng.choice(LUA_NOUNS)
        elif style < 0.45:
            noun = noun[0]
        return noun

    def fresh(self) -> str:
        name = self.name()
        while name in self.scope or name in {"end", "do", "if", "in", "or", "and", "not", "for"}:
            name = name + str(self.rng.randint(1, 9))
        self.scope.append(name)
        return name

    def emit(self, depth: int, text: str) -> None:
        self.lines.append("  " * depth + text)

    def value(self) -> str:
        rng = self.rng
        kind = rng.random()
        if kind < 0.3:
            return str(rng.choice([0, 1, 2, 3, 5, 8, 10, 16, 42, 100, 255, 1000, rng.randint(0, 999)]))
        if kind < 0.4:
            return f"{rng.uniform(0, 10):.{rng.randint(1, 2)}f}"
        if kind < 0.6:
            return '"' + rng.choice(LUA_STRINGS).replace("%", "") + '"'
        if kind < 0.7:
            return rng.choice(["true", "false", "nil"])
        if kind < 0.85 and self.scope:
            return rng.choice(self.scope)
        return "{}"

    def expr(self, depth: int = 0) -> str:
        rng = self.rng
        if not self.scope or depth > 1:
            return self.value()
        var = rng.choice(self.scope)
        kind = rng.random()
        if kind < 0.2:
            return f"{var} {rng.choice(['+', '-', '*', '/', '%', '//'])} {self.value() if rng.random() < 0.6 else self.expr(depth + 1)}"
        if kind < 0.3:
            return f"#{var}"
        if kind < 0.45:
            return f'{var} .. "{rng.choice(LUA_STRINGS).replace("%", "")}"'
        if kind < 0.6:
            fmt = rng.choice([s for s in LUA_STRINGS if "%" in s])
            args = ", ".join(rng.choice(self.scope) for _ in range(fmt.count("%")))
            return f'string.format("{fmt}", {args})'
        if kind < 0.7:
            return f"{rng.choice(['string.upper', 'string.lower', 'tostring', 'tonumber', 'type', 'math.floor', 'math.abs'])}({var})"
        if kind < 0.78:
            return f"string.sub({var}, {rng.randint(1, 3)}, {rng.choice(['-1', str(rng.randint(4, 12)), '#' + var])})"
        if kind < 0.86 and self.functions:
            fname, arity = rng.choice(self.functions)
            return f"{fname}({', '.join(self.expr(depth + 1) for _ in range(arity))})"
        if kind < 0.93:
            return f"{var}.{self.name()}"
        key = rng.choice(["1", "i", "#" + var, '"' + self.name() + '"'])
        return f"{var}[{key}]"

    def condition(self) -> str:
        rng = self.rng
        if not self.scope:
            return rng.choice(["true", "false"])
        var = rng.choice(self.scope)
        return rng.choice(
            [
                f"{var} == nil",
                f"not {var}",
                f"{var} ~= nil",
                f"{var} > {rng.randint(0, 100)}",
                f"#{var} == 0",
                f"type({var}) == \"{rng.choice(['table', 'string', 'number', 'function'])}\"",
                f"{var} and {rng.choice(self.scope)}",
                f"{var} <= {rng.choice(self.scope)}",
            ]
        )

    def block(self, depth: int, n: int) -> None:
        outer = len(self.scope)
        for _ in range(n):
            self.statement(depth)
        if depth > 1 and self.rng.random() < 0.15:
            self.emit(depth, f"return {self.expr()}")  # Lua allows return only as a block's last statement
        del self.scope[outer:]

    def statement(self, depth: int) -> None:
        rng = self.rng
        kind = rng.random()
        nested = depth < 4
        if kind < 0.08:
            self.emit(depth, "-- " + rng.choice(LUA_COMMENTS))
            self.statement(depth)
        elif kind < 0.3:
            value = self.expr()
            self.emit(depth, f"local {self.fresh()} = {value}")
        elif kind < 0.38 and self.assignable():
            self.emit(depth, f"{rng.choice(self.assignable())} = {self.expr()}")
        elif kind < 0.5 and nested:
            self.emit(depth, f"if {self.condition()} then")
            self.block(depth + 1, rng.randint(1, 3))
            if rng.random() < 0.3:
                self.emit(depth, f"elseif {self.condition()} then")
                self.block(depth + 1, rng.randint(1, 2))
            if rng.random() < 0.4:
                self.emit(depth, "else")
                self.block(depth + 1, rng.randint(1, 2))
            self.emit(depth, "end")
        elif kind < 0.58 and nested:
            index = rng.choice(["i", "j", "k", "n"])
            stop = rng.choice([str(rng.randint(2, 20)), f"#{rng.choice(self.scope)}" if self.scope else "10"])
            step = rng.choice(["", "", "", ", 2", ", -1"])
            self.emit(depth, f"for {index} = 1, {stop}{step} do")
            self.scope.append(index)
            self.loop_vars.append(index)
            self.block(depth + 1, rng.randint(1, 3))
            self.scope.pop()
            self.loop_vars.pop()
            self.emit(depth, "end")
        elif kind < 0.66 and nested and (self.tables or self.scope):
            source = rng.choice(self.tables or self.scope)
            iterator = rng.choice(["ipairs", "pairs"])
            key, val = ("i", "v") if iterator == "ipairs" else ("k", "v")
            if rng.random() < 0.5:
                key, val = ("_", self.name()) if iterator == "ipairs" else (self.name(), self.name())
            self.emit(depth, f"for {key}, {val} in {iterator}({source}) do")
            self.scope += [key, val]
            self.loop_vars += [key, val]
            self.block(depth + 1, rng.randint(1, 3))
            del self.scope[-2:]
            del self.loop_vars[-2:]
            self.emit(depth, "end")
        elif kind < 0.7 and nested and self.assignable():
            var = rng.choice(self.assignable())
            if rng.random() < 0.5:
                self.emit(depth, f"while {var} > 0 do")
                self.emit(depth + 1, f"{var} = {var} - 1")
                self.block(depth + 1, rng.randint(1, 2))
                self.emit(depth, "end")
            else:
                self.emit(depth, "repeat")
                self.block(depth + 1, rng.randint(1, 2))
                self.emit(depth, f"until {self.condition()}")
        elif kind < 0.8 and self.tables:
            table = rng.choice(self.tables)
            self.emit(depth, rng.choice([f"table.insert({table}, {self.expr()})", f"{table}[#{table} + 1] = {self.expr()}",
                                         f"table.sort({table})", f"table.remove({table}, 1)"]))
        elif kind < 0.9:
            call = f"print({self.expr()})" if rng.random() < 0.6 else f"io.write({self.expr()}, '\\n')"
            self.emit(depth, call)
        else:
            value = self.table_literal()
            self.emit(depth, f"local {self.fresh()} = {value}")

    def table_literal(self) -> str:
        rng = self.rng
        if rng.random() < 0.5:
            items = [self.value() for _ in range(rng.randint(0, 5))]
        else:
            items = [f"{self.name()} = {self.value()}" for _ in range(rng.randint(1, 4))]
        return "{" + ", ".join(items) + "}"

    def function(self, module: str | None) -> None:
        rng = self.rng
        fname = f"{rng.choice(LUA_VERBS)}{rng.choice(LUA_NOUNS).capitalize()}"
        params = []
        for _ in range(rng.randint(0, 3)):
            param = self.name()
            if param not in params:
                params.append(param)
        if rng.random() < 0.3:
            self.emit(0, "-- " + rng.choice(LUA_COMMENTS))
        if module and rng.random() < 0.6:
            sep = rng.choice([".", ":"])
            header = f"function {module}{sep}{fname}({', '.join(params)})"
            if sep == ":":
                params = ["self"] + params
            self.functions.append((f"{module}.{fname}", len(params)))
        else:
            header = f"{'local ' if rng.random() < 0.7 else ''}function {fname}({', '.join(params)})"
            self.functions.append((fname, len(params)))
        self.emit(0, header)
        outer = self.scope
        self.scope = list(params)
        self.block(1, rng.randint(2, 6))
        if rng.random() < 0.7:
            self.emit(1, f"return {self.expr()}")
        self.scope = outer
        self.emit(0, "end")
        self.emit(0, "")


def lua_program(rng: random.Random) -> str:
    """A Lua file: optional module table, requires, local tables, functions, top-level code."""
    w = _LuaWriter(rng)
    if rng.random() < 0.5:
        w.emit(0, f"-- {rng.choice(LUA_MODULES)}.lua: {rng.choice(LUA_COMMENTS)}")
    for dep in rng.sample(LUA_MODULES, rng.randint(0, 2)):
        w.emit(0, f'local {dep} = require("{dep}")')
        w.scope.append(dep)
    module = rng.choice(LUA_MODULES) if rng.random() < 0.5 else None
    if module:
        w.emit(0, f"local {module} = {{}}")
    for _ in range(rng.randint(0, 2)):
        table = w.fresh()
        w.tables.append(table)
        w.emit(0, f"local {table} = {w.table_literal()}")
    w.emit(0, "")
    for _ in range(rng.randint(1, 4)):
        w.function(module)
    w.block(0, rng.randint(1, 4))
    if module:
        w.emit(0, f"return {module}")
    return "\n".join(w.lines).strip() + "\n"


# ---------------------------------------------------------------------------------------------------
# TinyStories-style stories
# ---------------------------------------------------------------------------------------------------

NAMES = {
    "she": "Lily Mia Sue Amy Lucy Anna Emma Zoe Ruby Ella Rose Kate Jane Sara".split(),
    "he": "Tom Ben Max Sam Tim Jack Leo Bob Joe Finn Jake Noah Ollie Pip".split(),
}
ANIMALS = "cat dog bunny bird frog fox bear duck mouse puppy kitten owl pig lamb".split()
ADJECTIVES = "little happy small kind brave shy curious silly big friendly tired sleepy".split()
PLACES = "park garden forest beach house yard pond farm school town hill river".split()
TOYS = "ball kite doll toy car teddy bear red block book drum balloon boat".split()
FEELINGS = "happy sad scared excited proud angry surprised glad".split()
ACTIVITIES = (
    "play with her ball|run in the grass|look at the stars|draw pictures|sing songs|jump in puddles|"
    "build towers with blocks|read books|dig in the sand|climb trees|help mom in the kitchen|pick flowers"
).split("|")
PROBLEMS = (
    "{obj} got stuck in a tall tree|{obj} fell into the pond|it started to rain very hard|"
    "{friend} was crying under a tree|a big dog barked at {them}|{obj} was lost and could not be found|"
    "the wind took {obj} far away|{friend} did not want to share"
).split("|")
MORALS = (
    "sharing is caring|it is good to help your friends|being brave is not the same as not being scared|"
    "you should always say sorry|friends make everything better|it is important to listen"
).split("|")


def _character(rng: random.Random) -> dict[str, str]:
    pronoun = rng.choice(["she", "he"])
    if rng.random() < 0.35:
        kind = rng.choice(ANIMALS)
        name = rng.choice(NAMES[pronoun])
        intro = f"a {rng.choice(ADJECTIVES)} {kind} named {name}"
    else:
        name = rng.choice(NAMES[pronoun])
        intro = f"a {rng.choice(ADJECTIVES)} {'girl' if pronoun == 'she' else 'boy'} named {name}"
    return {
        "name": name, "intro": intro, "he": pronoun, "He": pronoun.capitalize(),
        "his": "her" if pronoun == "she" else "his", "him": "her" if pronoun == "she" else "him",
    }


def story(rng: random.Random) -> str:
    """A short story: introduction, a wish, a problem, a helper, a resolution, often a moral."""
    hero, friend = _character(rng), _character(rng)
    while friend["name"] == hero["name"]:
        friend = _character(rng)
    obj = f"{hero['his']} {rng.choice(TOYS)}"
    place = rng.choice(PLACES)
    activity = rng.choice(ACTIVITIES).replace("her ", hero["his"] + " ")
    problem = rng.choice(PROBLEMS).format(obj=obj, friend=friend["name"], them=hero["him"])
    opening = rng.choice(["Once upon a time, there was", "One day, there was", "There once was"])
    s = [f"{opening} {hero['intro']}. {hero['He']} liked to {activity}."]
    s.append(rng.choice([
        f"Every day, {hero['name']} went to the {place} with {hero['his']} mom.",
        f"{hero['He']} lived in a small house near the {place}.",
        f"{hero['name']} had a best friend called {friend['name']}.",
    ]))
    s.append(f"One day, {hero['name']} went to the {place}. {hero['He']} was very {rng.choice(FEELINGS)}.")
    s.append(f"But then, {problem}. {hero['name']} felt {rng.choice(['sad', 'scared', 'worried'])}.")
    if rng.random() < 0.5:
        s.append(f'"What can I do?" {hero["name"]} said. "I want to {activity.split(" with")[0]}!"')
    s.append(rng.choice([
        f"{friend['name']} saw {hero['him']} and came to help.",
        f"Then {friend['name']} had an idea.",
        f"{hero['He']} thought and thought. Then {hero['he']} had a good idea.",
    ]))
    s.append(rng.choice([
        "They worked together, and soon everything was fine again.",
        f"{friend['name']} said, \"Don't worry, I will help you.\" And {friend['he']} did.",
        "They tried again and again. At last, they did it!",
    ]))
    s.append(f"{hero['name']} was {rng.choice(['happy', 'so happy', 'very glad', 'proud'])}. "
             f"{hero['He']} said, \"Thank you, {friend['name']}!\"")
    if rng.random() < 0.6:
        s.append(f"From that day on, {hero['name']} and {friend['name']} were best friends. "
                 f"They learned that {rng.choice(MORALS)}.")
    else:
        s.append(f"They played in the {place} until the sun went down. The end.")
    return " ".join(s) + "\n"


# ---------------------------------------------------------------------------------------------------
# Child-directed English (CHILDES-style transcripts, as in BabyLM)
# ---------------------------------------------------------------------------------------------------

THINGS = "ball doggie kitty juice cookie book truck block spoon shoe hat duck baby milk apple banana bear car".split()
COLORS = "red blue green yellow big little".split()
ACTIONS = "eat|drink|read|play|throw it|sit down|go night night|wash hands|put it back".split("|")
ADULT_LINES = (
    "look at the {thing} !|what's that ?|is that a {thing} ?|can you say {thing} ?|where's the {thing} ?|"
    "do you want more {thing} ?|that's a {color} {thing} .|yes , that's right .|good job !|"
    "you like the {thing} , don't you ?|what does the {animal} say ?|let's put the {thing} in the box .|"
    "can you give mommy the {thing} ?|oh , you dropped your {thing} .|where did it go ?|"
    "no no , don't throw it .|shall we read a book ?|whose {thing} is that ?|how many {thing}s ?|"
    "one , two , three !|it's time for bath .|are you hungry ?|be gentle with the {animal} .|"
    "you're going to {action} now ?|that's the {color} one .|uh oh !|all gone .|thank you !|"
    "what color is the {thing} ?|can you find the {animal} ?|the {animal} says {sound} ."
).split("|")
CHILD_LINES = (
    "{thing} .|more {thing} .|my {thing} !|no !|want {thing} .|{sound} .|that {thing} .|uh oh .|"
    "mommy {thing} .|where {thing} ?|yeah .|all gone .|{color} {thing} .|me do it .|bye bye .|xxx .|"
    "{animal} !|I want {thing} .|there !|up !|again ."
).split("|")
ANIMAL_SOUNDS = {"doggie": "woof woof", "kitty": "meow", "cow": "moo", "duck": "quack quack", "sheep": "baa",
                 "pig": "oink oink", "horse": "neigh", "bird": "tweet tweet"}


def childes_session(rng: random.Random) -> str:
    """A transcript of one play session: mother or father and child, CHILDES speaker tags."""
    adult = rng.choice(["*MOT", "*MOT", "*FAT"])
    topic = rng.sample(THINGS, 3)
    lines = []
    for _ in range(rng.randint(8, 30)):
        animal = rng.choice(list(ANIMAL_SOUNDS))
        fill = {
            "thing": rng.choice(topic) if rng.random() < 0.7 else rng.choice(THINGS),
            "color": rng.choice(COLORS), "animal": animal, "sound": ANIMAL_SOUNDS[animal],
            "action": rng.choice(ACTIONS),
        }
        speaker, pool = (adult, ADULT_LINES) if rng.random() < 0.65 else ("*CHI", CHILD_LINES)
        lines.append(f"{speaker}:\t{rng.choice(pool).format(**fill)}")
    return "\n".join(lines) + "\n"


GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "lua": lua_program,
    "stories": story,
    "childes": childes_session,
}


MAX_DOCS = 1_000_000  # held in memory (cached): about 2 GB of generated Lua


def check_request(kind: str, n_docs: int) -> None:
    """Refuse an unknown generator or a number of documents out of range, before generating any."""
    if kind not in GENERATORS:
        raise FeatstoreError(f"unknown generator {kind!r}; choose one of {', '.join(GENERATORS)}")
    if not 1 <= n_docs <= MAX_DOCS:
        raise FeatstoreError(f"generator {kind!r} needs docs from 1 to {MAX_DOCS:,}, got {n_docs}")


def generate_documents(kind: str, n_docs: int, seed: int = 0) -> list[str]:
    """`n_docs` documents of `kind` (lua | stories | childes); the same (kind, n_docs, seed) gives the same text."""
    check_request(kind, n_docs)
    return list(_generate(kind, n_docs, seed))


@functools.lru_cache(maxsize=8)
def _generate(kind: str, n_docs: int, seed: int) -> tuple[str, ...]:
    """Cached: training, the tokenizer sample and every evaluation read the same generated corpus again."""
    rng = random.Random(f"{kind}:{seed}")
    return tuple(GENERATORS[kind](rng) for _ in range(n_docs))
