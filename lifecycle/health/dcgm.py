"""Parser of ``dcgmi diag -r <level> -j`` (DCGM 3.x "DCGM GPU Diagnostic" and 4.x "DCGM Diagnostic")."""

from __future__ import annotations

import json
from dataclasses import dataclass


def command(level: int) -> tuple[str, ...]:
    return ("dcgmi", "diag", "-r", str(level), "-j")


@dataclass(frozen=True, kw_only=True)
class DiagOutcome:
    """One failing or warning result of the diagnostic."""

    category: str
    test: str
    status: str
    """``Fail`` or ``Warn`` as DCGM writes it."""
    gpu: str | None
    message: str


@dataclass(frozen=True, kw_only=True)
class DiagReport:
    version: str
    tests_run: int
    outcomes: tuple[DiagOutcome, ...]
    """Only the results that did not pass (skips are left out)."""

    @property
    def failed(self) -> tuple[DiagOutcome, ...]:
        return tuple(o for o in self.outcomes if o.status.lower() == "fail")


class DiagParseError(ValueError):
    """The output holds no DCGM diagnostic document."""


def parse_diag_json(text: str) -> DiagReport:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise DiagParseError("no JSON object in dcgmi output")
    try:
        doc = json.loads(text[start:end + 1])
    except json.JSONDecodeError as err:
        raise DiagParseError(f"dcgmi output is not JSON: {err}") from None
    body = doc.get("DCGM GPU Diagnostic") or doc.get("DCGM Diagnostic")
    if not isinstance(body, dict):
        raise DiagParseError("no 'DCGM GPU Diagnostic' / 'DCGM Diagnostic' object")
    outcomes = []
    tests_run = 0
    for category in body.get("test_categories", []):
        for test in category.get("tests", []):
            tests_run += 1
            for result in test.get("results", []):
                status = str(result.get("status", ""))
                if status.lower() not in {"fail", "warn"}:
                    continue
                messages = [w.get("warning", "") for w in result.get("warnings", []) if isinstance(w, dict)]
                messages += [str(i) for i in result.get("info", [])] if not messages else []
                outcomes.append(DiagOutcome(
                    category=str(category.get("category", "")), test=str(test.get("name", "")),
                    status=status, gpu=result.get("gpu_ids") or result.get("gpu_id"),
                    message="; ".join(m for m in messages if m) or status,
                ))
    return DiagReport(version=str(body.get("version", "")), tests_run=tests_run, outcomes=tuple(outcomes))
