"""Every ```python block of README.md runs as written, as a user would paste it into a script.

Each block is written to a script in an empty folder and run there with this interpreter (so the
repository is not on sys.path: flashsim_coffea is the installed one), on the bundled samples and
shipped models. A block that cannot run is a failure, never a skip: the README must only show code
that works.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

#: what a block prints when it works, keyed by a string of the block (checked where the block has it)
EXPECT = {
    "muons.matched_gen": r"muon pT / Gen pT: (0\.9|1\.0)\d*",       # FlashSim muons are matched to their Gen muon
    "VBFHmmProcessor(mode=\"flashsim\", folds=5)": r"'all': 10000\b",  # 2000 bundled events × 5 folds
    "chunk.info": r"'Muon': \{'n_gen': [1-9]\d*",
}


def python_blocks(text: str) -> list[str]:
    """The ```python fenced blocks of a Markdown text, in order."""
    blocks, current = [], None
    for line in text.splitlines():
        if current is None:
            if line.strip() == "```python":
                current = []
        elif line.strip() == "```":
            blocks.append("\n".join(current) + "\n")
            current = None
        else:
            current.append(line)
    assert current is None, "README.md: a ```python block is not closed"
    return blocks


BLOCKS = python_blocks(README.read_text())


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.slow  # the README's processors on the bundled samples (5-45 s each)
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path):
    block = BLOCKS[index]
    script = tmp_path / f"readme_block_{index}.py"
    script.write_text(block)
    proc = subprocess.run([sys.executable, script.name], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    where = f"README.md python block {index + 1}:\n{block}\n--- stderr ---\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, where
    assert proc.stdout.strip(), f"{where}\nprints nothing"
    for marker, pattern in EXPECT.items():
        if marker in block:
            assert re.search(pattern, proc.stdout), f"{where}\n--- stdout ---\n{proc.stdout}\nno match for {pattern!r}"
