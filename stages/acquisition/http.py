"""Reader for JSON HTTP APIs: pagination, secret headers from the environment, retries and a rate limit.

Each response is a JSON document; `records_path` (a dotted path such as `data.items`) leads to the
list of records in it. Pages are followed by page number, by a cursor taken from the response, or
by a next-page link taken from the response. Requests that fail with 429 or 5xx, or that cannot
connect or time out, are retried with exponential backoff; a `Retry-After` header sets the wait.

Secrets (tokens, API keys) come from environment variables named in `headers_env` and
`params_env`. They are sent with every request but left out of provenance, metrics and logs: the
`source_query` of a row is the page URL without the secret query parameters.

When a page fails after its retries, `on_error: fail` raises InputDataError, and
`on_error: keep_partial` keeps the records of the pages read so far and records in the metrics
which page failed and that no later page was requested.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from time import monotonic, sleep
from typing import Any, Literal
from urllib.parse import parse_qsl, urljoin, urlsplit

import pandas as pd
import requests
from pydantic import Field, field_validator, model_validator
from tqdm.auto import tqdm

from stages.acquisition.base import INVALID_UNICODE, ReadContext, SourceBatch, lone_surrogate_field, register
from stages.acquisition.incremental import IncrementalSourceConfig, finish_read, open_snapshot, watermark_text
from stages.acquisition.live import RecordCollector, dotted_get
from stages.acquisition.secrets import ENV_NAME_PATTERN, read_env_secret, redact, redacted_library_logs
from stages.core.errors import InputDataError, ParamsError
from stages.core.params import StageConfig

logger = logging.getLogger(__name__)

# Header names whose values are credentials; they are accepted only through `headers_env`.
CREDENTIAL_HEADERS = {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"}
# Characters of an invalid response body quoted in an error message.
BODY_PREVIEW_CHARS = 200

ScalarValue = str | int | float | bool


class EnvHeader(StageConfig):
    """A header value read from an environment variable, with an optional prefix such as "Bearer "."""

    env: str = Field(pattern=ENV_NAME_PATTERN)
    prefix: str = ""


class Pagination(StageConfig):
    """Pagination scheme of an API and the fields and parameters it uses."""

    # none: one request. page: a page-number query parameter, until a page has no records (or fewer
    # than `page_size`). cursor: the response contains the cursor of the next page, which is sent back
    # as a query parameter. next_link: the response contains the URL of the next page.
    type: Literal["none", "page", "cursor", "next_link"] = "none"
    page_param: str = Field(default="page", min_length=1)
    start_page: int = Field(default=1, ge=0)
    # Query parameter and value for the page size, when the API takes one.
    page_size_param: str | None = Field(default=None, min_length=1)
    page_size: int | None = Field(default=None, gt=0)
    cursor_param: str = Field(default="cursor", min_length=1)
    # Dotted path of the next cursor in the response; a missing, null or empty cursor ends the read.
    cursor_path: str = Field(default="next_cursor", min_length=1)
    # Dotted path of the next page URL (absolute or relative) in the response.
    next_link_path: str = Field(default="next", min_length=1)

    @model_validator(mode="after")
    def _page_size_pair(self) -> Pagination:
        if (self.page_size_param is None) != (self.page_size is None):
            raise ValueError("set both `page_size_param` and `page_size`, or neither")
        return self


class Retry(StageConfig):
    """Retries of a request that got 429 or 5xx, could not connect, or timed out."""

    max_retries: int = Field(default=5, ge=0)
    # Wait before the first retry, in seconds; it doubles for each further retry.
    backoff_s: float = Field(default=1.0, ge=0)
    # Maximum single wait in seconds. A Retry-After above it fails the page instead of waiting.
    max_wait_s: float = Field(default=60.0, gt=0)


class HttpSourceConfig(IncrementalSourceConfig):
    type: Literal["http"] = "http"
    url: str = Field(min_length=1)
    # Dotted path of the list of records in each response; empty when the response is the list.
    records_path: str = ""
    # Query parameters sent with the first request (a next-page link carries its own).
    params: dict[str, ScalarValue] = Field(default_factory=dict)
    # Query parameters read from environment variables: parameter name -> variable name.
    params_env: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    # Headers read from environment variables: header name -> variable name, or {env, prefix}.
    headers_env: dict[str, str | EnvHeader] = Field(default_factory=dict)
    pagination: Pagination = Pagination()
    # Seconds to wait for the server to connect and to send each part of the response.
    timeout_s: float = Field(default=30.0, gt=0)
    retry: Retry = Retry()
    # Maximum requests per second, retries included; None sends requests as fast as they complete.
    rate_limit_per_s: float | None = Field(default=None, gt=0)
    # Stop after this many pages, even when the API has more.
    max_pages: int | None = Field(default=None, gt=0)
    on_error: Literal["fail", "keep_partial"] = "fail"
    # Query parameter that sends the stored watermark; the API must return only records past it.
    watermark_param: str | None = Field(default=None, min_length=1)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not contain a user or password; send credentials with `headers_env`")
        return value

    @field_validator("params_env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value.values():
            EnvHeader(env=name)
        return value

    @model_validator(mode="after")
    def _watermark_needs_param(self) -> HttpSourceConfig:
        if (self.watermark is None) != (self.watermark_param is None):
            raise ValueError(
                "set both `watermark` (the record field) and `watermark_param` "
                "(the query parameter that sends it), or neither"
            )
        return self


class PageError(Exception):
    """One page could not be read; the message names what failed and the fix."""

    def __init__(self, problem: str, fix: str):
        self.problem = problem
        self.fix = fix
        # The page that failed: its label and its URL without secrets, set by `iterate_pages`.
        self.page = ""
        self.page_url = ""
        super().__init__(problem)


@dataclass
class PageRequest:
    """One request: its label in provenance and metrics, its URL and its non-secret parameters."""

    label: str
    url: str
    params: dict[str, Any] = field(default_factory=dict)


class RateLimiter:
    """Spaces requests at least 1 / rate seconds apart."""

    def __init__(self, per_second: float | None):
        self.interval = 0.0 if per_second is None else 1.0 / per_second
        self.next_allowed = 0.0

    def wait(self) -> None:
        if self.interval == 0.0:
            return
        now = monotonic()
        if now < self.next_allowed:
            sleep(self.next_allowed - now)
            now = self.next_allowed
        self.next_allowed = now + self.interval


def retry_after_seconds(value: str | None) -> float | None:
    """Return the wait in seconds that a Retry-After header requests (seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _status_fix(status: int, config: HttpSourceConfig, key: str) -> str:
    if status in (401, 403):
        variables = sorted(
            {header if isinstance(header, str) else header.env for header in config.headers_env.values()}
            | set(config.params_env.values())
        )
        named = f" in {', '.join(variables)}" if variables else ""
        return f"Check the credentials{named} (`{key}.headers_env` / `params_env`) and their access rights."
    if status == 404:
        return f"Check `{key}.url` and the pagination settings."
    return f"Check `{key}.url`, `params` and `headers`."


class HttpSession:
    """Sends GET requests with the source's headers, secret parameters, rate limit and retries."""

    def __init__(
        self,
        config: HttpSourceConfig,
        key: str,
        secret_headers: dict[str, str],
        secret_params: dict[str, str],
    ):
        self.config = config
        self.key = key
        self.secret_params = secret_params
        self.secrets = [*secret_headers.values(), *secret_params.values()]
        self.limiter = RateLimiter(config.rate_limit_per_s)
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/json", **config.headers, **secret_headers})
        self.requests_sent = 0
        self.retries = 0

    def close(self) -> None:
        self.session.close()

    def _with_secret_params(self, url: str, params: dict[str, Any]) -> dict[str, Any]:
        # A next-page link may already carry a secret parameter; it is not sent twice.
        present = {name for name, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)}
        return {
            **params,
            **{name: value for name, value in self.secret_params.items() if name not in present},
        }

    def get_json(self, page: PageRequest) -> Any:
        """Return the decoded JSON body of one page, retrying transient failures; raise PageError else."""
        retry = self.config.retry
        for attempt in range(retry.max_retries + 1):
            self.limiter.wait()
            self.requests_sent += 1
            problem, wait = self._attempt(page)
            if problem is None:
                return wait
            if attempt == retry.max_retries:
                raise PageError(
                    f"{problem} (after {attempt + 1} attempts)",
                    f"Check that the server at `{self.key}.url` is reachable and healthy, "
                    f"or raise `{self.key}.retry.max_retries`.",
                )
            delay = min(retry.backoff_s * 2**attempt, retry.max_wait_s) if wait is None else wait
            if delay > retry.max_wait_s:
                raise PageError(
                    f"{problem}; the server asked to wait {delay:.0f} s (Retry-After), "
                    "more than retry.max_wait_s",
                    f"Try again later, or raise `{self.key}.retry.max_wait_s`.",
                )
            self.retries += 1
            logger.warning(
                "source %s: %s: %s; retry %d of %d in %.1f s",
                self.config.name,
                page.label,
                problem,
                attempt + 1,
                retry.max_retries,
                delay,
            )
            sleep(delay)
        raise AssertionError("unreachable")

    def _attempt(self, page: PageRequest) -> tuple[str | None, Any]:
        """Send one request; return (None, body), or (problem, Retry-After seconds or None) to retry."""
        try:
            response = self.session.get(
                page.url,
                params=self._with_secret_params(page.url, page.params),
                timeout=self.config.timeout_s,
            )
        except requests.Timeout:
            return f"timed out after {self.config.timeout_s:g} s", None
        except requests.ConnectionError as exc:
            reason = redact(str(exc.args[0] if exc.args else exc), self.secrets)
            return f"could not connect ({_short(reason)})", None
        except requests.RequestException as exc:
            raise PageError(
                f"the request failed ({redact(str(exc), self.secrets)})", f"Check `{self.key}.url`."
            ) from None

        status = response.status_code
        if status == 429 or 500 <= status < 600:
            return f"HTTP {status} {response.reason}", retry_after_seconds(
                response.headers.get("Retry-After")
            )
        if status >= 400:
            raise PageError(f"HTTP {status} {response.reason}", _status_fix(status, self.config, self.key))
        try:
            return None, response.json()
        except (json.JSONDecodeError, requests.JSONDecodeError) as exc:
            body = redact(response.text[:BODY_PREVIEW_CHARS], self.secrets)
            raise PageError(
                f"the response is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                f"it starts with {body!r}",
                f"Check `{self.key}.url`: it must return JSON.",
            ) from None


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def extract_records(body: Any, path: str, key: str) -> list[Any]:
    """Return the list of records at `path` in one response body, or raise PageError."""
    found, value = dotted_get(body, path)
    if not found:
        keys = sorted(body) if isinstance(body, dict) else f"a JSON {type(body).__name__}"
        raise PageError(
            f"the response has no `{path}` (top level: {keys})",
            f"Set `{key}.records_path` to the dotted path of the list of records.",
        )
    if not isinstance(value, list):
        where = f"`{path}`" if path else "the response"
        raise PageError(
            f"{where} is a JSON {type(value).__name__}, expected a list of records",
            f"Set `{key}.records_path` to the dotted path of the list of records.",
        )
    return value


class Pager:
    """Produces the page requests of one read, following the configured pagination."""

    def __init__(self, config: HttpSourceConfig, key: str, first_params: dict[str, Any]):
        self.config = config
        self.pagination = config.pagination
        self.key = key
        self.first_params = first_params
        self.page_number = self.pagination.start_page
        self.cursor: str | None = None
        self.next_url: str | None = None
        self.seen: set[str] = set()
        self.done = False
        self.pages = 0

    def current(self) -> PageRequest:
        """Return the request of the next page to read."""
        pagination = self.pagination
        params = dict(self.first_params)
        if pagination.page_size_param is not None:
            params[pagination.page_size_param] = pagination.page_size
        if pagination.type == "page":
            params[pagination.page_param] = self.page_number
            return PageRequest(f"page {self.page_number}", self.config.url, params)
        if pagination.type == "cursor":
            if self.cursor is None:
                return PageRequest("first page", self.config.url, params)
            params[pagination.cursor_param] = self.cursor
            return PageRequest(f"cursor {self.cursor}", self.config.url, params)
        if pagination.type == "next_link" and self.next_url is not None:
            return PageRequest(f"page {self.pages + 1}", self.next_url, {})
        return PageRequest(
            "page 1" if pagination.type == "next_link" else "single page", self.config.url, params
        )

    def advance(self, body: Any, record_count: int, request: PageRequest) -> None:
        """Move to the next page after `body` was read, or mark the read done."""
        self.pages += 1
        pagination = self.pagination
        if pagination.type == "none":
            self.done = True
        elif pagination.type == "page":
            short_page = pagination.page_size is not None and record_count < pagination.page_size
            self.done = record_count == 0 or short_page
            self.page_number += 1
        elif pagination.type == "cursor":
            self.cursor = self._follow(body, pagination.cursor_path, "pagination.cursor_path")
            self.done = self.cursor is None
        else:
            link = self._follow(body, pagination.next_link_path, "pagination.next_link_path")
            self.next_url = None if link is None else self._same_origin(urljoin(request.url, link))
            self.done = self.next_url is None

    def _follow(self, body: Any, path: str, setting: str) -> str | None:
        found, value = dotted_get(body, path)
        if not found and self.pages == 1:
            logger.warning(
                "source %s: the first response has no `%s`, so only one page is read; check `%s.%s`",
                self.config.name,
                path,
                self.key,
                setting,
            )
        if not found or value is None or value == "":
            return None
        if not isinstance(value, (str, int)):
            raise PageError(
                f"`{path}` is a JSON {type(value).__name__}, expected a string",
                f"Check `{self.key}.{setting}`.",
            )
        text = str(value)
        if text in self.seen:
            raise PageError(
                f"the API returned `{path}` = {text!r} a second time, so the pages would repeat forever",
                f"Check `{self.key}.{setting}`.",
            )
        self.seen.add(text)
        return text

    def _same_origin(self, url: str) -> str:
        # The session sends the secret headers with every request, so it never follows a link elsewhere.
        first, following = urlsplit(self.config.url), urlsplit(url)
        if (first.scheme, first.netloc) != (following.scheme, following.netloc):
            raise PageError(
                f"the next-page link points to {following.scheme}://{following.netloc}, "
                "another origin than `url`",
                "The reader only follows links on the same scheme, host and port; check the API or the URL.",
            )
        return url


def read_secrets(config: HttpSourceConfig, key: str) -> tuple[dict[str, str], dict[str, str]]:
    """Return the secret headers and query parameters, read from the environment."""
    literal = sorted(name for name in config.headers if name.lower() in CREDENTIAL_HEADERS)
    if literal:
        raise ParamsError(
            f"{key}.headers.{literal[0]}",
            "(value not shown)",
            "is a credential, and params.yaml is tracked by git and copied into dvc.lock",
            f"Move it to `{key}.headers_env` and put the value in an environment variable.",
        )
    headers: dict[str, str] = {}
    for header, spec in config.headers_env.items():
        variable, prefix = (spec, "") if isinstance(spec, str) else (spec.env, spec.prefix)
        headers[header] = prefix + read_env_secret(variable, f"{key}.headers_env.{header}", config.name)
    params = {
        name: read_env_secret(variable, f"{key}.params_env.{name}", config.name)
        for name, variable in config.params_env.items()
    }
    return headers, params


def public_url(url: str, params: dict[str, Any], secrets: list[str]) -> str:
    """Return the request URL without the secret parameters, with any secret value masked."""
    prepared = requests.Request("GET", url, params=params).prepare().url or url
    return redact(prepared, secrets)


def iterate_pages(
    config: HttpSourceConfig, key: str, session: HttpSession, pager: Pager, secrets: list[str]
) -> Iterator[tuple[PageRequest, list[Any]]]:
    """Yield (request, records) page after page until the pagination ends or `max_pages` is reached.

    A PageError names the failed page. When a page was read but its next-page field is unusable,
    the page's records are yielded first and the error is raised for the page after it.
    """
    while not pager.done:
        if config.max_pages is not None and pager.pages >= config.max_pages:
            logger.info("source %s: stopped after max_pages=%d pages", config.name, config.max_pages)
            return
        request = pager.current()
        try:
            body = session.get_json(request)
            records = extract_records(body, config.records_path, key)
        except PageError as exc:
            exc.page, exc.page_url = request.label, public_url(request.url, request.params, secrets)
            raise
        try:
            pager.advance(body, len(records), request)
        except PageError as exc:
            exc.page, exc.page_url = (
                f"the page after {request.label}",
                public_url(request.url, request.params, secrets),
            )
            yield request, records
            raise
        yield request, records


@register("http", HttpSourceConfig)
def read_http(config: HttpSourceConfig, index: int, context: ReadContext | None = None) -> SourceBatch:
    """Read every page of a JSON API into records; an incremental source extends its snapshot."""
    key = f"acquire.sources[{index}]"
    secret_headers, secret_params = read_secrets(config, key)
    secrets = [*secret_headers.values(), *secret_params.values()]
    location = redact(config.url, secrets)
    definition = {
        "url": location,
        "params": config.params,
        "params_env": sorted(config.params_env),
        "records_path": config.records_path,
        "pagination": config.pagination.model_dump(),
        "watermark": config.watermark,
        "watermark_param": config.watermark_param,
        "key": config.key,
    }
    snapshot = open_snapshot(config, context, index, definition)
    first_params: dict[str, Any] = dict(config.params)
    if snapshot is not None and snapshot.watermark is not None and config.watermark_param is not None:
        first_params[config.watermark_param] = watermark_text(snapshot.watermark)

    session = HttpSession(config, key, secret_headers, secret_params)
    pager = Pager(config, key, first_params)
    collector = RecordCollector(location=location)
    logger.info("source %s: reading %s (pagination: %s)", config.name, location, config.pagination.type)
    try:
        with redacted_library_logs(secrets):
            pages_read, failure = _read_pages(config, key, session, pager, collector, secrets)
    finally:
        session.close()

    complete = failure is None
    extra: dict[str, Any] = {
        "pages_read": len(pages_read),
        "requests": session.requests_sent,
        "retries": session.retries,
        "complete": complete,
    }
    if failure is not None:
        extra["failed_page"] = failure
        extra["missing_pages"] = f"{failure['page']} and every page after it (not requested)"
    if config.max_pages is not None and complete and not pager.done:
        extra["stopped_at_max_pages"] = True
    if snapshot is None and collector.record_count == 0 and not collector.rejected:
        problem = "the API returned no records"
        if failure is not None:
            problem += f" before {failure['page']} failed: {failure['error']}"
        raise InputDataError(
            f"source `{config.name}` ({location})",
            problem,
            f"Check `{key}.url`, `params` and `records_path`.",
        )
    logger.info(
        "source %s: read %d records from %d pages", config.name, collector.record_count, len(pages_read)
    )
    return finish_read(config, snapshot, collector, definition, complete=complete, extra=extra)


def _read_pages(
    config: HttpSourceConfig,
    key: str,
    session: HttpSession,
    pager: Pager,
    collector: RecordCollector,
    secrets: list[str],
) -> tuple[list[str], dict[str, Any] | None]:
    """Collect the records of every page; return the labels of the pages read and the failure, if any."""
    pages_read: list[str] = []
    with tqdm(desc=f"{config.name} pages", unit="page", leave=False) as progress:
        try:
            for request, items in iterate_pages(config, key, session, pager, secrets):
                _collect_page(config, collector, items, public_url(request.url, request.params, secrets))
                pages_read.append(request.label)
                progress.update(1)
                logger.debug("source %s: %s: %d records", config.name, request.label, len(items))
        except PageError as exc:
            if config.on_error == "fail":
                raise InputDataError(
                    f"source `{config.name}` ({exc.page_url})",
                    f"{exc.page} could not be read: {exc.problem}",
                    f"{exc.fix} To keep the pages read before a failure, set `{key}.on_error: keep_partial`.",
                ) from None
            logger.error(
                "source %s: %s could not be read (%s); keeping the %d records of %d earlier pages, "
                "later pages were not requested",
                config.name,
                exc.page,
                exc.problem,
                collector.record_count,
                len(pages_read),
            )
            return pages_read, {"page": exc.page, "url": exc.page_url, "error": exc.problem}
    return pages_read, None


def _collect_page(config: HttpSourceConfig, collector: RecordCollector, items: list[Any], query: str) -> None:
    positions = collector.reserve(len(items))
    objects: list[dict[str, Any]] = []
    object_positions: list[int] = []
    for position, item in zip(positions, items, strict=True):
        invalid_field = lone_surrogate_field(item)
        if invalid_field is not None:
            where = f"record {position}, field `{invalid_field}`" if invalid_field else f"record {position}"
            collector.add_rejected(
                position,
                json.dumps(item),
                INVALID_UNICODE,
                f"{where}: a \\u escape encodes a lone surrogate, which is not valid Unicode text",
                query,
            )
        elif isinstance(item, dict):
            objects.append(item)
            object_positions.append(position)
        else:
            raw = json.dumps(item, ensure_ascii=False)
            collector.add_rejected(
                position,
                raw,
                "not_an_object",
                f"record {position} is a JSON {type(item).__name__}, expected an object",
                query,
            )
    if not objects:
        return
    frame = pd.json_normalize(objects, sep=".")
    watermarks = None
    if config.watermark is not None:
        watermarks = [dotted_get(item, config.watermark)[1] for item in objects]
        watermarks = [
            None if isinstance(value, float) and math.isnan(value) else value for value in watermarks
        ]
    collector.add_records(frame, object_positions, query, watermarks)
