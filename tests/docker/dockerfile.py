"""A small Dockerfile reader for the checks that need no daemon: instructions, stages, args."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, COPY, RUN, ...
    value: str  # the rest of the (joined) line
    line: int  # 1-based line where it starts

    def exec_form(self) -> list[str]:
        """ENTRYPOINT/CMD in JSON (exec) form; shell form is refused: it breaks signal handling."""
        try:
            words = json.loads(self.value)
        except json.JSONDecodeError:
            msg = f"line {self.line}: {self.keyword} is not in exec (JSON) form"
            raise ValueError(msg) from None
        if not (isinstance(words, list) and all(isinstance(w, str) for w in words)):
            raise ValueError(f"line {self.line}: {self.keyword} must be a JSON list of strings")
        return words


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def last(self, keyword: str) -> Instruction | None:
        found = [i for i in self.instructions if i.keyword == keyword]
        return found[-1] if found else None


@dataclass
class Dockerfile:
    args: dict[str, str]  # ARGs before the first FROM, with their defaults
    stages: list[Stage]

    def resolve(self, text: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: self.args.get(m.group(1), m.group(0)), text)


def instructions(text: str) -> list[Instruction]:
    found: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, value = " ".join(p for p in pending if p).partition(" ")
        found.append(Instruction(keyword.upper(), value.strip(), start))
        pending = []
    if pending:
        raise ValueError(f"line {start}: instruction continues past the end of the file")
    return found


def parse(path: Path) -> Dockerfile:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for ins in instructions(path.read_text()):
        if ins.keyword == "FROM":
            words = shlex.split(ins.value)
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif not stages:
            if ins.keyword == "ARG":
                key, _, default = ins.value.partition("=")
                args[key.strip()] = default.strip()
        else:
            stages[-1].instructions.append(ins)
    if not stages:
        raise ValueError(f"{path}: no FROM")
    return Dockerfile(args=args, stages=stages)


def copy_sources(ins: Instruction) -> list[str]:
    """Source paths of a COPY from the build context (not --from=another stage)."""
    words = shlex.split(ins.value)
    if any(w.startswith("--from=") for w in words):
        return []
    paths = [w for w in words if not w.startswith("--")]
    return paths[:-1]
