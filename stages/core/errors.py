"""Error types that stage entry points turn into one readable line instead of a traceback."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class for every error caused by input data, params or a failed gate."""

    exit_code = 1


class ParamsError(PipelineError):
    """A params.yaml value is missing, unknown, of the wrong type or out of range."""

    def __init__(self, key: str, value: object, expected: str, fix: str | None = None):
        self.key = key
        self.value = value
        message = f"params.yaml: `{key}` {expected}, got {value!r}"
        if fix:
            message += f". {fix}"
        super().__init__(message)


class InputDataError(PipelineError):
    """An input file or source cannot be read or does not have the expected shape."""

    def __init__(
        self,
        location: str,
        problem: str,
        fix: str,
        *,
        row: int | None = None,
        field: str | None = None,
    ):
        where = location
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field `{field}`"
        super().__init__(f"{where}: {problem}. {fix}")


class GateError(PipelineError):
    """A data-quality gate (expectation suite, leakage check, row accounting) failed."""

    exit_code = 2

    def __init__(self, gate: str, summary: str):
        self.gate = gate
        self.summary = summary
        super().__init__(f"gate `{gate}` failed:\n{summary}")


class RowAccountingError(GateError):
    """Rows in does not equal rows out plus rows quarantined."""

    def __init__(self, stage: str, rows_in: int, rows_out: int, rows_quarantined: int):
        summary = (
            f"{stage}: rows in ({rows_in}) != rows out ({rows_out}) + rows quarantined "
            f"({rows_quarantined}); {rows_in - rows_out - rows_quarantined} rows are unaccounted for. "
            "This is a bug in the stage: please report it with the input that caused it."
        )
        super().__init__("row_accounting", summary)
