"""The README's result numbers come from committed reports, never typed from memory."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")


def quoted(text: str) -> list[str]:
    """The decimal numbers of a Markdown text outside code (commands and versions are code)."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`]*`", "", text)
    return DECIMAL.findall(text)


def report_numbers() -> set[float]:
    """Every decimal of the committed reports; comparison.csv's success rates (fractions at
    full precision) also as percentages, so 58.7 is checked against 0.58653 and not against
    the report's 58.65, which rounds either way."""
    numbers = set()
    for path in REPO.glob("results/**/report.md"):
        numbers.update(float(n) for n in DECIMAL.findall(path.read_text()))
    for path in REPO.glob("results/**/comparison.csv"):
        values = [float(n) for n in DECIMAL.findall(path.read_text())]
        numbers.update(values)
        numbers.update(100 * v for v in values if v <= 1)
    return numbers


def missing(text: str, numbers: set[float]) -> list[str]:
    """The quoted numbers that no committed report holds (to the quoted decimals)."""
    by_decimals: dict[int, set[float]] = {}
    out = []
    for n in quoted(text):
        k = len(n.split(".")[1])
        known = by_decimals.setdefault(k, {round(v, k) for v in numbers})
        if round(float(n), k) not in known:
            out.append(n)
    return out


def test_every_number_the_readme_quotes_is_in_a_committed_report():
    readme = (REPO / "README.md").read_text()
    numbers = report_numbers()
    assert len(quoted(readme)) >= 30  # the headline table is there
    assert missing(readme, numbers) == []


def test_a_number_typed_wrong_is_caught():
    numbers = {82.73, 0.0364}
    assert missing("Prompt-DT 82.7, Holm p 0.0364, `v2.13.0` ```x 1.5```", numbers) == []
    assert missing("Prompt-DT 82.6 and 0.0365", numbers) == ["82.6", "0.0365"]
