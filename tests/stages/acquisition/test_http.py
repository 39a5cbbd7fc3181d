"""The `http` source: pagination, secret headers, retries, rate limit and failure modes, on a local server."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from stages.acquire import acquire, parse_sources
from stages.acquisition.http import retry_after_seconds
from stages.core.errors import InputDataError, ParamsError
from stages.core.io import write_table

TOKEN = "tok-3f9c2a7e51"


def paged_route(pages: dict[int, list[dict[str, Any]]], token: str | None = None):
    """Serve `pages` by the `page` query parameter under `{"data": {"items": [...]}}`, checking the token."""

    def route(query: dict[str, str], headers: dict[str, str]):
        if token is not None and headers.get("Authorization") != f"Bearer {token}":
            return 401, {}, {"error": "unauthorized"}
        page = int(query.get("page", "1"))
        return 200, {}, {"data": {"items": pages.get(page, [])}, "page": page}

    return route


def items(first: int, count: int) -> list[dict[str, Any]]:
    return [
        {"id": number, "body": f"message {number}", "meta": {"intent": f"intent_{number % 2}"}}
        for number in range(first, first + count)
    ]


def http_source(server_url: str, **overrides: Any) -> dict[str, Any]:
    source = {
        "name": "tickets",
        "type": "http",
        "url": server_url,
        "records_path": "data.items",
        "columns": {"text": "body", "label": "meta.intent"},
        "pagination": {"type": "page"},
        "retry": {"max_retries": 2, "backoff_s": 0.5},
    }
    source.update(overrides)
    return source


def test_page_pagination_reads_every_page(json_server, recorded_sleeps, read_source, monkeypatch):
    monkeypatch.setenv("API_TOKEN", TOKEN)
    json_server.routes["/tickets"] = paged_route(
        {1: items(1, 2), 2: items(3, 2), 3: items(5, 1)}, token=TOKEN
    )
    raw = http_source(
        json_server.url("/tickets"), headers_env={"Authorization": {"env": "API_TOKEN", "prefix": "Bearer "}}
    )

    batch = read_source(raw)

    assert batch.records["body"].tolist() == [f"message {number}" for number in range(1, 6)]
    assert batch.records["source_row"].tolist() == [1, 2, 3, 4, 5]
    assert batch.records["meta.intent"].tolist() == [
        "intent_1",
        "intent_0",
        "intent_1",
        "intent_0",
        "intent_1",
    ]
    assert batch.records["source_query"].iloc[0] == json_server.url("/tickets?page=1")
    assert batch.records["source_query"].iloc[4] == json_server.url("/tickets?page=3")
    assert batch.records["acquired_at"].notna().all()
    assert batch.location == json_server.url("/tickets")
    assert batch.extra["pages_read"] == 4  # the fourth page is the empty one that ends the read
    assert batch.extra["complete"] is True
    sent = json_server.requests_to("/tickets")
    assert [request.headers["Authorization"] for request in sent] == [f"Bearer {TOKEN}"] * 4


def test_page_size_stops_on_short_page(json_server, recorded_sleeps, read_source):
    json_server.routes["/tickets"] = paged_route({1: items(1, 2), 2: items(3, 1)})
    raw = http_source(
        json_server.url("/tickets"),
        pagination={"type": "page", "page_size_param": "per_page", "page_size": 2},
    )

    batch = read_source(raw)

    assert len(batch.records) == 3
    assert [request.query["per_page"] for request in json_server.requests_to("/tickets")] == ["2", "2"]


def test_cursor_pagination_follows_cursor(json_server, recorded_sleeps, read_source):
    cursors = {"": ("c1", items(1, 2)), "c1": ("c2", items(3, 2)), "c2": (None, items(5, 2))}

    def route(query, headers):
        next_cursor, page = cursors[query.get("after", "")]
        return 200, {}, {"results": page, "meta": {"next": next_cursor}}

    json_server.routes["/cursor"] = route
    raw = http_source(
        json_server.url("/cursor"),
        records_path="results",
        pagination={"type": "cursor", "cursor_param": "after", "cursor_path": "meta.next"},
    )

    batch = read_source(raw)

    assert batch.records["id"].tolist() == ["1", "2", "3", "4", "5", "6"]
    assert [request.query.get("after") for request in json_server.requests_to("/cursor")] == [
        None,
        "c1",
        "c2",
    ]
    assert batch.records["source_query"].iloc[5].endswith("after=c2")


def test_repeated_cursor_fails(json_server, recorded_sleeps, read_source):
    json_server.routes["/loop"] = lambda query, headers: (
        200,
        {},
        {"results": items(1, 1), "next_cursor": "same"},
    )
    raw = http_source(json_server.url("/loop"), records_path="results", pagination={"type": "cursor"})

    with pytest.raises(InputDataError, match=r"`next_cursor` = 'same' a second time"):
        read_source(raw)


def test_next_link_pagination_follows_relative_links(json_server, recorded_sleeps, read_source):
    def route(query, headers):
        page = int(query.get("p", "1"))
        link = f"/linked?p={page + 1}" if page < 3 else None
        return 200, {}, {"items": items(page * 10, 1), "links": {"next": link}}

    json_server.routes["/linked"] = route
    raw = http_source(
        json_server.url("/linked"),
        records_path="items",
        pagination={"type": "next_link", "next_link_path": "links.next"},
    )

    batch = read_source(raw)

    assert batch.records["id"].tolist() == ["10", "20", "30"]
    assert batch.records["source_query"].tolist() == [
        json_server.url("/linked"),
        json_server.url("/linked?p=2"),
        json_server.url("/linked?p=3"),
    ]


def test_next_link_to_other_origin_fails(json_server, recorded_sleeps, read_source):
    json_server.routes["/away"] = lambda query, headers: (
        200,
        {},
        {"items": items(1, 1), "next": "http://127.0.0.2:9/steal"},
    )
    raw = http_source(json_server.url("/away"), records_path="items", pagination={"type": "next_link"})

    with pytest.raises(InputDataError, match=r"another origin than `url`"):
        read_source(raw)
    assert len(json_server.requests) == 1


def test_retry_after_on_429_is_honoured(json_server, recorded_sleeps, read_source):
    calls = {"count": 0}

    def route(query, headers):
        calls["count"] += 1
        if calls["count"] == 1:
            return 429, {"Retry-After": "3"}, {"error": "slow down"}
        return 200, {}, {"data": {"items": items(1, 2)}}

    json_server.routes["/limited"] = route
    batch = read_source(
        http_source(
            json_server.url("/limited"),
            pagination={"type": "none"},
            retry={"max_retries": 2, "max_wait_s": 10},
        )
    )

    assert len(batch.records) == 2
    assert recorded_sleeps == [3.0]
    assert batch.extra["retries"] == 1
    assert batch.extra["requests"] == 2


def test_500_is_retried_with_backoff(json_server, recorded_sleeps, read_source):
    calls = {"count": 0}

    def route(query, headers):
        calls["count"] += 1
        if calls["count"] <= 2:
            return 500, {}, {"error": "boom"}
        return 200, {}, {"data": {"items": items(1, 1)}}

    json_server.routes["/flaky"] = route
    batch = read_source(
        http_source(
            json_server.url("/flaky"), pagination={"type": "none"}, retry={"max_retries": 3, "backoff_s": 0.5}
        )
    )

    assert len(batch.records) == 1
    assert recorded_sleeps == [0.5, 1.0]


def test_persistent_500_fails_after_retries(json_server, recorded_sleeps, read_source):
    json_server.routes["/down"] = lambda query, headers: (503, {}, {"error": "down"})

    with pytest.raises(
        InputDataError, match=r"source `tickets` .*page 1 could not be read: HTTP 503 .*after 3 attempts"
    ):
        read_source(http_source(json_server.url("/down")))
    assert len(json_server.requests) == 3


def test_retry_after_above_limit_fails(json_server, recorded_sleeps, read_source):
    json_server.routes["/later"] = lambda query, headers: (429, {"Retry-After": "600"}, {})

    with pytest.raises(
        InputDataError, match=r"asked to wait 600 s \(Retry-After\), more than retry.max_wait_s"
    ):
        read_source(http_source(json_server.url("/later"), pagination={"type": "none"}))
    assert recorded_sleeps == []


def test_retry_after_parses_http_date():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_malformed_json_page_fails(json_server, recorded_sleeps, read_source):
    def route(query, headers):
        if query["page"] == "2":
            return 200, {}, '{"data": {"items": [ {"id": 3, '
        return 200, {}, {"data": {"items": items(1, 2)}}

    json_server.routes["/broken"] = route
    with pytest.raises(
        InputDataError,
        match=r"page 2 could not be read: the response is not valid JSON .*on_error: keep_partial",
    ):
        read_source(http_source(json_server.url("/broken")))


def test_keep_partial_keeps_pages_and_reports_missing(json_server, recorded_sleeps):
    def route(query, headers):
        if query["page"] == "3":
            return 200, {}, "<html>gateway error</html>"
        return 200, {}, {"data": {"items": items(int(query["page"]) * 10, 2)}}

    json_server.routes["/partial"] = route
    configs = parse_sources([http_source(json_server.url("/partial"), on_error="keep_partial")])

    table, _, metrics = acquire(configs, seed=0)

    assert table["text"].tolist() == ["message 10", "message 11", "message 20", "message 21"]
    source = metrics["sources"]["tickets"]
    assert source["complete"] is False
    assert source["pages_read"] == 2
    assert source["failed_page"]["page"] == "page 3"
    assert source["failed_page"]["url"] == json_server.url("/partial?page=3")
    assert "not valid JSON" in source["failed_page"]["error"]
    assert source["missing_pages"] == "page 3 and every page after it (not requested)"
    assert [request.query["page"] for request in json_server.requests] == ["1", "2", "3"]


def test_missing_records_path_fails(json_server, recorded_sleeps, read_source):
    json_server.routes["/shape"] = lambda query, headers: (200, {}, {"results": items(1, 1)})

    with pytest.raises(
        InputDataError, match=r"the response has no `data.items` \(top level: \['results'\]\).*records_path"
    ):
        read_source(http_source(json_server.url("/shape"), pagination={"type": "none"}))


def test_records_path_not_a_list_fails(json_server, recorded_sleeps, read_source):
    json_server.routes["/object"] = lambda query, headers: (200, {}, {"data": {"items": {"id": 1}}})

    with pytest.raises(InputDataError, match=r"`data.items` is a JSON dict, expected a list of records"):
        read_source(http_source(json_server.url("/object"), pagination={"type": "none"}))


def test_missing_environment_variable_fails_before_requests(
    json_server, recorded_sleeps, read_source, monkeypatch
):
    monkeypatch.delenv("MISSING_TOKEN", raising=False)
    raw = http_source(json_server.url("/tickets"), headers_env={"Authorization": "MISSING_TOKEN"})

    with pytest.raises(
        InputDataError,
        match=r"source `tickets`: environment variable MISSING_TOKEN "
        r"\(named by `acquire.sources\[0\].headers_env.Authorization`\) is not set",
    ):
        read_source(raw)
    assert json_server.requests == []


def test_unauthorized_names_the_variable(json_server, recorded_sleeps, read_source, monkeypatch):
    monkeypatch.setenv("API_TOKEN", "wrong-token")
    json_server.routes["/tickets"] = paged_route({1: items(1, 1)}, token=TOKEN)

    with pytest.raises(
        InputDataError, match=r"HTTP 401 Unauthorized\. Check the credentials in API_TOKEN"
    ) as caught:
        read_source(http_source(json_server.url("/tickets"), headers_env={"Authorization": "API_TOKEN"}))
    assert "wrong-token" not in str(caught.value)
    assert len(json_server.requests) == 1  # a 4xx other than 429 is not retried


def test_unreachable_host_fails(recorded_sleeps, read_source):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    raw = http_source(f"http://127.0.0.1:{closed_port}/tickets", retry={"max_retries": 1, "backoff_s": 0.25})

    with pytest.raises(
        InputDataError, match=r"page 1 could not be read: could not connect .*after 2 attempts.*is reachable"
    ):
        read_source(raw)
    assert recorded_sleeps == [0.25]


def test_non_object_records_are_rejected(json_server, recorded_sleeps):
    json_server.routes["/mixed"] = lambda query, headers: (
        200,
        {},
        {"data": {"items": [items(1, 1)[0], "stray text", 7]}},
    )
    configs = parse_sources([http_source(json_server.url("/mixed"), pagination={"type": "none"})])

    table, quarantine, _ = acquire(configs, seed=0)

    assert len(table) == 1
    rejected = quarantine.frame()
    assert rejected["quarantine_reason"].tolist() == ["not_an_object", "not_an_object"]
    assert rejected["source_row"].tolist() == [2, 3]
    assert rejected["text"].tolist() == ['"stray text"', "7"]


def test_lone_surrogate_records_are_rejected(json_server, recorded_sleeps, tmp_path):
    # A \ud83d escape without its low half decodes to a string that UTF-8, and so Parquet, cannot store.
    body = (
        '{"data": {"items": [{"id": 1, "body": "fine \\ud83d\\ude00", "meta": {"intent": "a"}}, '
        '{"id": 2, "body": "broken \\ud83d", "meta": {"intent": "b"}}, "\\udfff"]}}'
    )
    json_server.routes["/unicode"] = lambda query, headers: (200, {}, body)
    configs = parse_sources([http_source(json_server.url("/unicode"), pagination={"type": "none"})])

    table, quarantine, _ = acquire(configs, seed=0)

    assert table["text"].tolist() == ["fine \U0001f600"]
    rejected = quarantine.frame()
    assert rejected["quarantine_reason"].tolist() == ["invalid_unicode", "invalid_unicode"]
    assert rejected["source_row"].tolist() == [2, 3]
    assert rejected["quarantine_detail"].tolist() == [
        "record 2, field `body`: a \\u escape encodes a lone surrogate, which is not valid Unicode text",
        "record 3: a \\u escape encodes a lone surrogate, which is not valid Unicode text",
    ]
    write_table(rejected, tmp_path / "quarantine.parquet")  # the raw records are stored escaped


def test_rate_limit_spaces_requests(json_server, recorded_sleeps, read_source):
    json_server.routes["/tickets"] = paged_route({1: items(1, 1), 2: items(2, 1), 3: items(3, 1)})

    read_source(http_source(json_server.url("/tickets"), rate_limit_per_s=4))

    # Four requests (the last page is empty); on the fake clock each after the first waits 1/4 s.
    assert recorded_sleeps == [0.25, 0.25, 0.25]


def test_max_pages_stops_early(json_server, recorded_sleeps, read_source):
    json_server.routes["/tickets"] = paged_route({page: items(page, 1) for page in range(1, 10)})

    batch = read_source(http_source(json_server.url("/tickets"), max_pages=2))

    assert len(batch.records) == 2
    assert batch.extra["stopped_at_max_pages"] is True
    assert len(json_server.requests) == 2


def test_secret_query_parameter_stays_out_of_provenance(
    json_server, recorded_sleeps, read_source, monkeypatch
):
    monkeypatch.setenv("API_KEY", TOKEN)
    json_server.routes["/keyed"] = lambda query, headers: (200, {}, {"data": {"items": items(1, 1)}})

    batch = read_source(
        http_source(
            json_server.url("/keyed"),
            pagination={"type": "none"},
            params={"lang": "en"},
            params_env={"api_key": "API_KEY"},
        )
    )

    assert json_server.requests[0].query == {"lang": "en", "api_key": TOKEN}
    assert batch.records["source_query"].tolist() == [json_server.url("/keyed?lang=en")]


def test_literal_credential_header_is_rejected(read_source):
    raw = http_source("http://127.0.0.1:9/tickets", headers={"Authorization": f"Bearer {TOKEN}"})

    with pytest.raises(
        ParamsError, match=r"`acquire.sources\[0\].headers.Authorization` is a credential"
    ) as caught:
        read_source(raw)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"url": "ftp://127.0.0.1/data"}, r"must be an http:// or https:// URL"),
        ({"url": "http://user:pw@127.0.0.1/data"}, r"must not contain a user or password"),
        ({"watermark": "updated_at"}, r"set both `watermark`"),
        ({"on_error": "ignore"}, r"`acquire.sources\[0\].on_error` is invalid"),
        ({"pagination": {"type": "page", "page_size": 10}}, r"set both `page_size_param` and `page_size`"),
    ],
)
def test_invalid_params_are_rejected(overrides, message):
    with pytest.raises(ParamsError, match=message):
        parse_sources([http_source("http://127.0.0.1:9/tickets", **overrides)])


def test_keep_partial_with_no_pages_read_fails(json_server, recorded_sleeps, read_source):
    json_server.routes["/empty"] = lambda query, headers: (200, {}, "not json")

    with pytest.raises(
        InputDataError, match=r"the API returned no records before page 1 failed: the response is not"
    ):
        read_source(http_source(json_server.url("/empty"), on_error="keep_partial"))
