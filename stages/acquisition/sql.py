"""Reader for SQL databases through SQLAlchemy: a query with bound parameters, read in chunks.

The database URL comes from params (`url`, without a password) or from an environment variable
(`url_env`); `password_env` sets the password from another variable. Provenance and logs show the
URL with the password and password-like query values replaced by `***`.

Query parameters are bound by the driver (`sqlalchemy.text(query)` with `:name` placeholders and
the `parameters` mapping), never formatted into the SQL text. A literal colon followed by a word
inside the SQL must be written `\\:word`, as SQLAlchemy's `text()` requires.

The connection only reads: it is closed without a commit, so a statement with side effects is
rolled back.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import pandas as pd
import sqlalchemy as sa
from pydantic import Field, model_validator
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from tqdm.auto import tqdm

from stages.acquisition.base import ReadContext, SourceBatch, register
from stages.acquisition.incremental import IncrementalSourceConfig, finish_read, open_snapshot, watermark_text
from stages.acquisition.live import RecordCollector
from stages.acquisition.secrets import ENV_NAME_PATTERN, MASK, read_env_secret, redact, redacted_library_logs
from stages.core.errors import InputDataError, ParamsError

logger = logging.getLogger(__name__)

# Bind parameter that carries the stored watermark into an incremental query.
WATERMARK_PARAMETER = "acquire_watermark"
# Alias of the user's query when it is wrapped for incremental reads.
SUBQUERY_ALIAS = "acquire_source"
# URL query options whose values are hidden in provenance and logs.
SECRET_OPTION = re.compile(r"pass|pwd|secret|token|key", re.IGNORECASE)

ParameterValue = str | int | float | bool | None


class SqlSourceConfig(IncrementalSourceConfig):
    type: Literal["sql"] = "sql"
    # SQLAlchemy URL without a password, e.g. sqlite:///data/sources/tickets.sqlite.
    url: str | None = Field(default=None, min_length=1)
    # Environment variable that contains the whole URL (it may include the password).
    url_env: str | None = Field(default=None, pattern=ENV_NAME_PATTERN)
    # Environment variable that contains the password, set into the URL.
    password_env: str | None = Field(default=None, pattern=ENV_NAME_PATTERN)
    query: str = Field(min_length=1)
    # Values for the `:name` placeholders of the query.
    parameters: dict[str, ParameterValue] = Field(default_factory=dict)
    # Rows fetched from the database per round trip.
    chunk_size: int = Field(default=10_000, gt=0)

    @model_validator(mode="after")
    def _one_url(self) -> SqlSourceConfig:
        if (self.url is None) == (self.url_env is None):
            raise ValueError(
                "set exactly one of `url` (a URL without a password) "
                "and `url_env` (a variable holding the URL)"
            )
        if WATERMARK_PARAMETER in self.parameters:
            raise ValueError(
                f"the parameter name `{WATERMARK_PARAMETER}` is reserved for the incremental watermark"
            )
        return self


def resolve_url(config: SqlSourceConfig, key: str) -> tuple[URL, list[str]]:
    """Build the database URL from params and environment; return it with the secrets it contains."""
    if config.url_env is not None:
        raw = read_env_secret(config.url_env, f"{key}.url_env", config.name)
        origin = f"environment variable {config.url_env}"
    else:
        raw = config.url or ""
        origin = f"`{key}.url`"
    try:
        url = sa.make_url(raw)
    except ArgumentError:
        # The text may hold a password, so it is not repeated in the message.
        raise InputDataError(
            f"source `{config.name}`",
            f"{origin} is not a valid SQLAlchemy URL",
            "Use the form dialect+driver://user@host:port/database, for example "
            "postgresql+psycopg://reader@127.0.0.1:5432/tickets or sqlite:///data/sources/tickets.sqlite.",
        ) from None

    secrets = [raw] if config.url_env is not None else []
    if url.password is not None:
        if config.url_env is None:
            raise ParamsError(
                f"{key}.url",
                url.render_as_string(hide_password=True),
                "contains a password, and params.yaml is tracked by git and copied into dvc.lock",
                f"Remove the password from the URL and set `{key}.password_env` to the name of a variable "
                "that holds it, or move the whole URL into a variable named by `url_env`.",
            )
        secrets.append(str(url.password))
    if config.password_env is not None:
        password = read_env_secret(config.password_env, f"{key}.password_env", config.name)
        url = url.set(password=password)
        secrets.append(password)
    for option, value in url.query.items():
        if SECRET_OPTION.search(option):
            secrets.extend([value] if isinstance(value, str) else list(value))
    return url, secrets


def public_location(url: URL) -> str:
    """Return the URL as text with the password and password-like query values replaced by `***`."""
    query = {option: (MASK if SECRET_OPTION.search(option) else value) for option, value in url.query.items()}
    # The renderer percent-encodes query values; the mask is shown as it is.
    return url.set(query=query).render_as_string(hide_password=True).replace(quote(MASK, safe=""), MASK)


def check_parameters(config: SqlSourceConfig, key: str) -> sa.TextClause:
    """Return the query as a text clause after checking that params give exactly its placeholders."""
    statement = sa.text(config.query)
    placeholders = set(statement.compile().params)
    placeholders.discard(WATERMARK_PARAMETER)
    missing = sorted(placeholders - set(config.parameters))
    unused = sorted(set(config.parameters) - placeholders)
    if missing:
        raise ParamsError(
            f"{key}.parameters",
            config.parameters,
            f"has no value for the query placeholder(s) {[':' + name for name in missing]}",
            "Add them under `parameters`.",
        )
    if unused:
        raise ParamsError(
            f"{key}.parameters",
            config.parameters,
            f"sets {unused}, which the query does not use",
            "Remove them, or add `:name` placeholders to the query.",
        )
    return statement


def incremental_statement(
    config: SqlSourceConfig, engine: sa.Engine, watermark: Any
) -> tuple[sa.TextClause, dict[str, Any]]:
    """Wrap the query so that it returns only rows past `watermark`, ordered by the watermark column."""
    column = engine.dialect.identifier_preparer.quote(str(config.watermark))
    inner = config.query.strip().rstrip(";").rstrip()
    sql = f"SELECT * FROM ({inner}) AS {SUBQUERY_ALIAS}"
    parameters: dict[str, Any] = dict(config.parameters)
    if watermark is not None:
        sql += f" WHERE {SUBQUERY_ALIAS}.{column} > :{WATERMARK_PARAMETER}"
        parameters[WATERMARK_PARAMETER] = watermark
    sql += f" ORDER BY {SUBQUERY_ALIAS}.{column}"
    return sa.text(sql), parameters


def describe_query(sql: str, parameters: dict[str, Any]) -> str:
    """Return the query with its bound values, as recorded in `source_query`."""
    if not parameters:
        return sql
    shown = {
        name: watermark_text(value) if value is not None else None
        for name, value in sorted(parameters.items())
    }
    return f"{sql}\n-- parameters: {json.dumps(shown, sort_keys=True, ensure_ascii=False)}"


def _check_sqlite_file(url: URL, location: str, key: str) -> None:
    # SQLite creates a missing database file on connect, so a typo would read an empty database.
    database = url.database
    if (
        url.get_backend_name() != "sqlite"
        or not database
        or database == ":memory:"
        or database.startswith("file:")
    ):
        return
    if not Path(database).is_file():
        raise InputDataError(
            location,
            "SQLite database file not found",
            f"Check `{key}.url` (paths are relative to the repository root).",
        )


def _short_message(exc: Exception, secrets: list[str]) -> str:
    """Return the first line of a driver or SQLAlchemy error, with secrets masked."""
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return redact(lines[0] if lines else type(exc).__name__, secrets)


@register("sql", SqlSourceConfig)
def read_sql(config: SqlSourceConfig, index: int, context: ReadContext | None = None) -> SourceBatch:
    """Run the source's query and return its rows; an incremental source extends its snapshot."""
    key = f"acquire.sources[{index}]"
    statement = check_parameters(config, key)
    url, secrets = resolve_url(config, key)
    location = public_location(url)
    _check_sqlite_file(url, location, key)
    definition = {
        "location": location,
        "query": config.query,
        "parameters": config.parameters,
        "watermark": config.watermark,
        "key": config.key,
    }
    snapshot = open_snapshot(config, context, index, definition)

    try:
        engine = sa.create_engine(url)
    except (NoSuchModuleError, ImportError) as exc:
        raise ParamsError(
            f"{key}.url",
            url.drivername,
            f"names a database driver that is not installed ({redact(str(exc), secrets)})",
            "Install the driver (for PostgreSQL: `pip install 'psycopg[binary]'` and a URL starting "
            "postgresql+psycopg://), or fix the URL's dialect.",
        ) from None
    except ArgumentError as exc:
        # For example a SQLite URL with a password, which the SQLite dialect rejects.
        raise InputDataError(
            location,
            f"the database URL is invalid for its dialect ({_short_message(exc, secrets)})",
            f"Check `{key}.url` (or the variables named by `url_env` and `password_env`).",
        ) from None

    parameters: dict[str, Any] = dict(config.parameters)
    if snapshot is not None:
        statement, parameters = incremental_statement(config, engine, snapshot.watermark)
    query_text = describe_query(statement.text, parameters)
    collector = RecordCollector(location=location)
    logger.info("source %s: querying %s in chunks of %d rows", config.name, location, config.chunk_size)

    with redacted_library_logs(secrets):
        try:
            try:
                connection = engine.connect()
            except DBAPIError as exc:
                raise InputDataError(
                    location,
                    f"could not connect to the database: {_short_message(exc, secrets)}",
                    "Check that the server is running and reachable, and the URL, user and password "
                    f"(`{key}.url`, `url_env` or `password_env`).",
                ) from None
            with connection:
                _read_rows(
                    config, connection, statement, parameters, query_text, collector, location, secrets, key
                )
        finally:
            engine.dispose()

    if snapshot is None and collector.record_count == 0:
        raise InputDataError(
            location, "the query returned no rows", f"Check `{key}.query` and `{key}.parameters`."
        )
    logger.info("source %s: read %d rows", config.name, collector.record_count)
    return finish_read(
        config, snapshot, collector, definition, complete=True, extra={"rows_read": collector.record_count}
    )


def _read_rows(
    config: SqlSourceConfig,
    connection: sa.Connection,
    statement: sa.TextClause,
    parameters: dict[str, Any],
    query_text: str,
    collector: RecordCollector,
    location: str,
    secrets: list[str],
    key: str,
) -> None:
    try:
        result = connection.execution_options(stream_results=True, yield_per=config.chunk_size).execute(
            statement, parameters
        )
        columns = list(result.keys())
        if config.watermark is not None and config.watermark not in columns:
            raise InputDataError(
                location,
                f"watermark column `{config.watermark}` not found in the query result; columns are {columns}",
                f"Set `{key}.watermark` to one of them, or select it in the query.",
                field=config.watermark,
            )
        watermark_index = columns.index(config.watermark) if config.watermark is not None else None
        with tqdm(desc=f"{config.name} rows", unit="row", leave=False) as progress:
            for rows in result.partitions(config.chunk_size):
                frame = pd.DataFrame([tuple(row) for row in rows], columns=columns, dtype=object)
                watermarks = [row[watermark_index] for row in rows] if watermark_index is not None else None
                collector.add_records(frame, collector.reserve(len(frame)), query_text, watermarks)
                progress.update(len(frame))
    except DBAPIError as exc:
        raise InputDataError(
            location,
            f"the query failed: {_short_message(exc, secrets)}",
            f"Check `{key}.query`, its tables and columns"
            + (f", and `{key}.watermark`." if config.watermark else "."),
        ) from None
    except SQLAlchemyError as exc:
        raise InputDataError(
            location,
            f"the query failed: {_short_message(exc, secrets)}",
            f"Check `{key}.query` and `{key}.parameters`.",
        ) from None
