"""Binance options (eapi) market data: URLs, parameters, status codes, error JSON and weight headers.

Returns the raw JSON it was given; raises ExchangeError subclasses with the status, code and message.
Knows nothing of the database. The httpx client comes from outside, so tests point it at our fake exchange.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from collector.errors import ExchangeError, FatalExchangeError, NotSentError, RetriableExchangeError
from collector.records import Pair
from collector.source.gate import ExchangeGate

EXCHANGE_INFO = "/eapi/v1/exchangeInfo"
OPEN_INTEREST = "/eapi/v1/openInterest"
log = logging.getLogger("collector.exchange")
_BANNED_UNTIL = re.compile(r"banned until (\d{12,})")


@dataclass(frozen=True, slots=True)
class Retry:
    """How hard to try again after a 5xx or a network fault: exponential backoff with jitter."""

    attempts: int = 5
    base_s: float = 0.5
    cap_s: float = 8.0

    def delay(self, attempt: int) -> float:
        """Full-size backoff halved at random, so many collectors do not retry in step."""
        return random.uniform(0.5, 1.0) * min(self.cap_s, self.base_s * 2 ** (attempt - 1))


@dataclass(frozen=True, slots=True)
class Answer:
    body: object
    attempts: int


class BinanceOptions:
    """The two calls oi-collector needs: what is listed, and the open interest of one pair.

    Every request passes the gate (ban, 429 pause, weight budget); retriable failures are retried with
    backoff, but nothing is sent or waited for past ``deadline`` (epoch seconds: the next cycle's start).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        gate: ExchangeGate,
        deadline: float,
        retry: Retry = Retry(),
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.gate = gate
        self.deadline = deadline
        self.retry = retry

    async def exchange_info(self) -> object:
        body = (await self._get(EXCHANGE_INFO, {}, "exchangeInfo")).body
        if isinstance(body, dict):
            self.gate.set_limits(body.get("rateLimits"))
        return body

    async def open_interest(self, pair: Pair) -> Answer:
        params = {"underlyingAsset": pair.underlying, "expiration": pair.expiry}
        answer = await self._get(OPEN_INTEREST, params, f"openInterest {pair}")
        if not isinstance(answer.body, list):
            kind = type(answer.body).__name__
            raise FatalExchangeError(f"openInterest {pair}: expected a JSON array, got {kind}", status=200)
        return answer

    async def _get(self, path: str, params: dict[str, str], what: str) -> Answer:
        attempt = 0
        while True:
            attempt += 1
            try:
                return Answer(await self._get_once(path, params, what), attempt)
            except RetriableExchangeError as error:
                error.attempts = attempt
                if isinstance(error, NotSentError):
                    raise
                if error.status not in (418, 429):
                    await self._back_off(error, attempt, what)
                    continue
                if error.status == 418:
                    self.gate.ban(_ban_end(error), what)
                else:
                    self.gate.pause(error.retry_after_s, what)
                if attempt >= self.retry.attempts:
                    raise

    async def _back_off(self, error: RetriableExchangeError, attempt: int, what: str) -> None:
        delay = self.retry.delay(attempt)
        if attempt >= self.retry.attempts or time.time() + delay >= self.deadline:
            raise error
        log.info("%s; retry %d in %.1f s", error, attempt, delay, extra={"pair": what.partition(" ")[2]})
        await asyncio.sleep(delay)

    async def _get_once(self, path: str, params: dict[str, str], what: str) -> object:
        await self.gate.enter(self.deadline, what)
        headers = None
        try:
            timeout = max(0.1, min(self.http.timeout.read or 10.0, self.deadline - time.time()))
            response = await self.http.get(self.base_url + path, params=params, timeout=timeout)
            headers = response.headers
        except httpx.TimeoutException as error:
            raise RetriableExchangeError(f"{what}: timed out ({type(error).__name__})") from error
        except httpx.TransportError as error:
            raise RetriableExchangeError(f"{what}: {type(error).__name__}: {error}") from error
        finally:
            self.gate.leave(headers)
        return parse_response(response, what)


def _ban_end(error: ExchangeError) -> float | None:
    """Epoch seconds of a ban's end: the later of Retry-After and ``banned until <ms>``; None if neither."""
    ends = []
    if error.retry_after_s is not None:
        ends.append(time.time() + error.retry_after_s)
    if error.banned_until is not None:
        ends.append(error.banned_until.timestamp())
    return max(ends) if ends else None


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
