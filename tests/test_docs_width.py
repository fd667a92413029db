"""Every transcript in docs/*.md and README.md reads cleanly in an 80-column terminal.

The rule, block by block (fenced with ``` or ~~~):

- A block is **read as terminal text** (checked) when its info string is ``console``, ``text`` or
  ``shell-session``, or when it has none: a transcript (``$ `` lines are commands, the lines after
  each its output), output shown without its command, a usage synopsis, a diagram. Blocks tagged
  with a language (``python``, ``yaml``, ``json``, ``sh``, ``bash``, ``ini``, ...) are source and
  are not checked: output must not be tagged as one.
- In a checked block every line is at most 80 characters, trailing spaces not counted (a terminal
  shows none): commands (long ones are shell-continued with ``\\``), comments and output.
- Exempt: ``error:`` and ``hint:`` lines, which the CLI keeps whole on one line by design (a
  message to grep and copy; the terminal wraps it); and the output of a command run with ``-o wide`` (it may pass the terminal, as kubectl's
  does, and the docs say so), and of one printing JSON (``--json``, ``-o json``, or piped to
  ``jq``), whose strings no tool folds.

``KNOWN_WIDE`` lists the blocks still wider, each with why (mostly the reports of bench/ scripts,
other programs' own output, JSON shown without its command); a listed block that now fits, or is gone, fails the test too, so the list
only shrinks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WIDTH = 80
TRANSCRIPT_TAGS = {"console", "text", "shell-session"}
FENCE = re.compile(r"^\s*(```+|~~~+)\s*([^\s`]*)")
WIDE_OUTPUT = re.compile(r"(^|\s)(-o\s+wide|--output[ =]wide|--json|-o\s+json)(\s|$)|\|\s*jq\b")

WHOLE_LINES = ("error: ", "hint: ")

KNOWN_WIDE: dict[tuple[str, str], str] = {
    # (file, how the block's first line begins) -> why it is still wider than 80 columns
    ("docs/health.md", "$ bash lifecycle/slurm/hold-node.sh"): "hold-node.sh's and scontrol's own output",
    ("docs/jobs.md", "$ .venv/bin/torchrun --standalone"): "torchrun's and the reference job's own log",
    ("docs/jobs.md", '{"event_type": "checkpoint"'):
        "an excerpt of the reference job's JSON events in the Slurm test's log (elided with ...), not rerun",
    ("docs/security.md", "statement mutation:"):
        "the IAM statement-mutation test's report (its identifiers kept whole); the test takes 215-425 s here",
    ("docs/slurm.md", "2026-11-22T22:50:02.420Z [on_create]"): "the node's bootstrap log",
    ("docs/slurm.md", "$ sinfo -N"): "sinfo's own output",
}


@dataclass(frozen=True)
class Block:
    path: str
    start: int
    """Line number (1-based) of the opening fence."""
    tag: str
    lines: tuple[tuple[int, str], ...]
    """(line number, text) of each line inside the fences."""

    @property
    def first_line(self) -> str:
        """What names the block in KNOWN_WIDE: its first line that is not blank."""
        return next((text.strip() for _, text in self.lines if text.strip()), "")

    @property
    def transcript(self) -> bool:
        return not self.tag or self.tag in TRANSCRIPT_TAGS


def blocks(path: str, text: str) -> list[Block]:
    """The fenced blocks of a document; a block indented under a list item loses that indentation
    (Markdown's, not the terminal's)."""
    found, opened, tag, inside, indent = [], None, "", [], ""
    for number, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line)
        if fence and opened is None:
            opened, tag, inside = number, fence.group(2).lower(), []
            indent = line[: len(line) - len(line.lstrip())]
        elif fence and not fence.group(2):
            found.append(Block(path, opened, tag, tuple(inside)))
            opened = None
        elif opened is not None:
            inside.append((number, line[len(indent):] if line.startswith(indent) else line))
    return found


def too_wide(block: Block) -> list[tuple[int, int]]:
    """(line number, width) of each line of a transcript wider than the terminal, exempt output left out."""
    out, exempt, continued = [], False, False
    for number, line in block.lines:
        if line.startswith("$ ") or continued:
            if line.startswith("$ "):
                command = line
            else:
                command += " " + line
            continued = line.rstrip().endswith("\\")
            exempt = bool(WIDE_OUTPUT.search(command))
            if len(line.rstrip()) > WIDTH:  # the command line itself always counts
                out.append((number, len(line.rstrip())))
            continue
        if not exempt and not line.startswith(WHOLE_LINES) and len(line.rstrip()) > WIDTH:
            out.append((number, len(line.rstrip())))
    return out


def documents() -> list[tuple[str, str]]:
    paths = sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]
    return [(str(p.relative_to(REPO)), p.read_text()) for p in paths]


def transcripts() -> list[Block]:
    return [b for path, text in documents() for b in blocks(path, text) if b.transcript]


def known(block: Block) -> tuple[str, str] | None:
    """The KNOWN_WIDE entry naming this block, if any."""
    return next((key for key in KNOWN_WIDE if key[0] == block.path and block.first_line.startswith(key[1])), None)


def test_every_transcript_fits_80_columns():
    wide = [f"{b.path}:{number}: {width} characters (block at line {b.start}: {b.first_line[:60]!r})"
            for b in transcripts() if known(b) is None for number, width in too_wide(b)]
    assert not wide, "transcripts wider than 80 columns (rerun at COLUMNS=80):\n" + "\n".join(wide)


@pytest.mark.parametrize("key", sorted(KNOWN_WIDE))
def test_a_known_wide_transcript_is_still_there_and_still_wide(key):
    matches = [b for b in transcripts() if known(b) == key]
    assert matches, f"{key} is no longer in the docs: take it out of KNOWN_WIDE"
    assert any(too_wide(b) for b in matches), f"{key} fits now: take it out of KNOWN_WIDE"


SAMPLE = f"""
```python
{"x = 1  # " + "s" * 90}
```
```
usage line with no command {"u" * 80}
```
```
$ gpufleet status
{"a" * 81}
$ gpufleet status -o wide
{"w" * 120}
$ gpufleet status --json | jq .pools
{"j" * 120}
$ gpufleet plan \\
    --stacks-dir stacks -o wide
{"v" * 120}
$ gpufleet plan
{"b" * 80}{" " * 20}
```
```console
{"c" * 81}
```
"""


def test_the_rule_on_a_sample():
    found = blocks("sample.md", SAMPLE)
    assert [b.tag for b in found] == ["python", "", "", "console"]
    assert [b.transcript for b in found] == [False, True, True, True]
    assert too_wide(found[1]) == [(6, 107)]
    assert too_wide(found[2]) == [(10, 81)]  # wide and JSON output exempt, trailing spaces not counted
    assert too_wide(found[3]) == [(22, 81)]
