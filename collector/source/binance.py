"""Binance options (eapi) market data: URLs, parameters, status codes, error JSON and weight headers.

Returns the raw JSON it was given; raises ExchangeError subclasses with the status, code and message.
Knows nothing of the database. The httpx client comes from outside, so tests point it at our fake exchange.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from collector.errors import FatalExchangeError, RetriableExchangeError
from collector.records import Pair

EXCHANGE_INFO = "/eapi/v1/exchangeInfo"
OPEN_INTEREST = "/eapi/v1/openInterest"
_USED_WEIGHT = re.compile(r"x-mbx-used-weight-(\d+[smhd])", re.IGNORECASE)
_BANNED_UNTIL = re.compile(r"banned until (\d{12,})")


@dataclass(frozen=True, slots=True)
class UsedWeight:
    """The last ``X-MBX-USED-WEIGHT-<interval>`` the exchange reported, e.g. 12 of the ``1m`` window."""

    interval: str
    used: int


class BinanceOptions:
    """The two calls oi-collector needs: what is listed, and the open interest of one pair."""

    def __init__(self, http: httpx.AsyncClient, base_url: str) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.used_weight: UsedWeight | None = None

    async def exchange_info(self) -> object:
        return await self._get(EXCHANGE_INFO, {}, "exchangeInfo")

    async def open_interest(self, pair: Pair) -> list[object]:
        params = {"underlyingAsset": pair.underlying, "expiration": pair.expiry}
        body = await self._get(OPEN_INTEREST, params, f"openInterest {pair}")
        if not isinstance(body, list):
            raise FatalExchangeError(
                f"openInterest {pair}: expected a JSON array, got {type(body).__name__}", status=200
            )
        return body

    async def _get(self, path: str, params: dict[str, str], what: str) -> object:
        try:
            response = await self.http.get(self.base_url + path, params=params)
        except httpx.TimeoutException as error:
            raise RetriableExchangeError(f"{what}: timed out ({type(error).__name__})") from error
        except httpx.TransportError as error:
            raise RetriableExchangeError(f"{what}: {type(error).__name__}: {error}") from error
        self._note_weight(response)
        return parse_response(response, what)

    def _note_weight(self, response: httpx.Response) -> None:
        for name, value in response.headers.items():
            match = _USED_WEIGHT.fullmatch(name)
            if match and value.isdigit():
                self.used_weight = UsedWeight(match[1].lower(), int(value))


def parse_response(response: httpx.Response, what: str) -> object:
    """The JSON body of a good answer, or the ExchangeError that says exactly what came back.

    The one place where HTTP status maps to an error class: 429, 418 and 5xx are retriable, every other
    non-2xx is fatal, and so is a 2xx that is not JSON or is the exchange's ``{"code", "msg"}`` error object.
    """
    body = _json_or_none(response)
    code, message = _exchange_error(body)
    status = response.status_code
    if response.is_success and body is not None and code is None:
        return body
    detail = _describe(status, code, message, body is None, response)
    error_class = RetriableExchangeError if status in (418, 429) or status >= 500 else FatalExchangeError
    raise error_class(
        f"{what}: {detail}",
        status=status,
        code=code,
        exchange_message=message,
        retry_after_s=_retry_after(response),
        banned_until=_banned_until(message),
    )


def _json_or_none(response: httpx.Response) -> object | None:
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def _exchange_error(body: object) -> tuple[int | None, str | None]:
    if isinstance(body, dict) and "code" in body and "msg" in body:
        code = body["code"]
        return (code if isinstance(code, int) else None), str(body["msg"])
    return None, None


def _describe(
    status: int, code: int | None, message: str | None, not_json: bool, response: httpx.Response
) -> str:
    if code is not None:
        return f"HTTP {status}, exchange code {code}: {message}"
    if not_json:
        kind = "an HTML page" if b"<html" in response.content[:512].lower() else "a body that is not JSON"
        snippet = response.text[:80].replace("\n", " ")
        return f"HTTP {status} with {kind} ({len(response.content)} bytes: {snippet!r})"
    return f"HTTP {status}"


def _retry_after(response: httpx.Response) -> float | None:
    header = response.headers.get("Retry-After", "").strip()
    return float(header) if header.isdigit() else None


def _banned_until(message: str | None) -> datetime | None:
    match = _BANNED_UNTIL.search(message or "")
    return datetime.fromtimestamp(int(match[1]) / 1000, UTC) if match else None
