"""Run the featstore CLI with a fault injected at one call of one function (for the crash tests).

    python tests/fault_runner.py TARGET ACTION WHEN N -- featstore arguments...

TARGET is `module:attribute.path` (e.g. `featstore.warehouse.storage:write_sorted`), ACTION is
`kill` (SIGKILL, as `kill -9`), `sigint` (as Ctrl-C), `sleep<seconds>`, `waitfor<file>` (until
the file exists, at most 300 s) or `touch<file>`, or several joined by `+` (done in order), WHEN is `before` or
`after` the N-th call. Nothing in featstore knows about this: the function is wrapped from outside.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys
import time


def act(actions: str) -> None:
    for action in actions.split("+"):
        act_once(action)


def act_once(action: str) -> None:
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "sigint":
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)  # the handler raises KeyboardInterrupt in the main thread meanwhile
    elif action.startswith("touch"):
        open(action.removeprefix("touch"), "a").close()
    elif action.startswith("waitfor"):
        deadline = time.monotonic() + 300
        while not os.path.exists(action.removeprefix("waitfor")) and time.monotonic() < deadline:
            time.sleep(0.1)
    else:
        time.sleep(float(action.removeprefix("sleep")))


def inject(target: str, action: str, when: str, nth: int) -> None:
    module_name, path = target.split(":")
    *owners, name = path.split(".")
    owner = importlib.import_module(module_name)
    for part in owners:
        owner = getattr(owner, part)
    raw = owner.__dict__.get(name) if isinstance(owner, type) else None
    original = getattr(owner, name)
    calls = 0

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == nth and when == "before":
            act(action)
        result = original(*args, **kwargs)
        if calls == nth and when == "after":
            act(action)
        return result

    setattr(owner, name, staticmethod(wrapper) if isinstance(raw, staticmethod) else wrapper)


if __name__ == "__main__":
    split = sys.argv.index("--")
    target, action, when, nth = sys.argv[1:split]
    inject(target, action, when, int(nth))
    from cli import main

    main(sys.argv[split + 1:], prog_name="featstore")
