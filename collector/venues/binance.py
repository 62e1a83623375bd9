"""Binance options (eapi) market data: URLs, parameters, status codes, error JSON and weight headers.

Returns the raw JSON it was given; raises ExchangeError subclasses with the status, code and message.
Knows nothing of the database. The httpx client comes from outside, so tests point it at our fake exchange.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import httpx

from collector.deadline import Deadline
from collector.errors import ExchangeError, FatalExchangeError, NotSentError, RetriableExchangeError
from collector.records import Pair, bounded_code, clean_text
from collector.source.gate import ExchangeGate

EXCHANGE_INFO = "/eapi/v1/exchangeInfo"
OPEN_INTEREST = "/eapi/v1/openInterest"
log = logging.getLogger("collector.exchange")
_BANNED_UNTIL = re.compile(r"banned until ([0-9]{12,})")
_SECONDS = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")
_LAST_DATETIME_S = 253_402_300_799  # 9999-12-31 23:59:59 UTC: the last moment a datetime can hold
# An openInterest answer is some 50 kB and exchangeInfo some 2 MB: a body past this is not an answer.
MAX_BODY_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Retry:
    """How hard to try again after a 5xx or a network fault: exponential backoff with jitter."""

    attempts: int = 5
    base_s: float = 0.5
    cap_s: float = 8.0

    def delay(self, attempt: int) -> float:
        """Full-size backoff halved at random, so many collectors do not retry in step."""
        return random.uniform(0.5, 1.0) * min(self.cap_s, self.base_s * 2.0 ** (attempt - 1))


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
        deadline: Deadline | float,
        retry: Retry = Retry(),
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.gate = gate
        self.deadline = deadline if isinstance(deadline, Deadline) else Deadline(deadline)
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
        answered: RetriableExchangeError | None = None  # the last answer the exchange gave to this request
        while True:
            attempt += 1
            try:
                return Answer(await self._get_once(path, params, what), attempt)
            except RetriableExchangeError as error:
                error.attempts = attempt
                if isinstance(error, NotSentError):
                    # Held back after the exchange answered (its 418, say): that answer is what happened.
                    if answered is not None:
                        answered.attempts = attempt - 1
                        raise answered from error
                    raise
                answered = error
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
        if attempt >= self.retry.attempts or delay >= self.deadline.remaining():
            raise error
        log.info("%s; retry %d in %.1f s", error, attempt, delay, extra={"pair": what.partition(" ")[2]})
        await asyncio.sleep(delay)

    async def _get_once(self, path: str, params: dict[str, str], what: str) -> object:
        probe = await self.gate.enter(self.deadline, what)
        response: httpx.Response | None = None
        try:
            response = await self._request(self.base_url + path, params, what)
        finally:
            self.gate.leave(
                response.headers if response else None,
                response.status_code if response else None,
                probe=probe,
            )
        return parse_response(response, what)

    async def _request(self, url: str, params: dict[str, str], what: str) -> httpx.Response:
        """The whole answer within one deadline (not only per read: a body dripped a byte a second never
        trips a read timeout), read up to MAX_BODY_BYTES."""
        budget = min(self.http.timeout.read or 10.0, self.deadline.remaining())
        if budget <= 0:
            raise NotSentError(what, "the cycle's deadline has passed")
        try:
            async with asyncio.timeout(budget), self.http.stream("GET", url, params=params) as streamed:
                body = await _read_capped(streamed, what)
        except TimeoutError as error:
            raise RetriableExchangeError(
                f"{what}: timed out (no whole answer within {budget:.1f} s) from {url}"
            ) from error
        except httpx.TimeoutException as error:
            raise RetriableExchangeError(f"{what}: timed out ({type(error).__name__}) from {url}") from error
        except httpx.TransportError as error:
            raise RetriableExchangeError(f"{what}: {type(error).__name__} from {url}: {error}") from error
        except httpx.HTTPError as error:  # a body that does not decode (gzip), too many redirects
            raise FatalExchangeError(f"{what}: {type(error).__name__} from {url}: {error}") from error
        return httpx.Response(
            streamed.status_code, headers=streamed.headers, content=body, request=streamed.request
        )


async def _read_capped(response: httpx.Response, what: str) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise FatalExchangeError(
                f"{what}: HTTP {response.status_code} with a body over"
                f" {MAX_BODY_BYTES // 1_000_000} MB: not read",
                status=response.status_code,
            )
    return bytes(body)


def _ban_end(error: ExchangeError) -> float | None:
    """Epoch seconds of a ban's end: the later of Retry-After and ``banned until <ms>``; None if neither.
    (The gate clamps it to the longest ban the exchange documents.)"""
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
        retry_after_s=parse_retry_after(response.headers.get("Retry-After"), time.time()),
        banned_until=_banned_until(message),
    )


def decode_json(content: bytes) -> object | None:
    """The JSON value of a body, numbers as exact Decimals (never a float); None when it is not JSON, or is
    JSON no answer can be (NaN, nesting too deep to decode, an integer of thousands of digits)."""
    try:
        value: object = json.loads(content, parse_float=Decimal, parse_constant=_no_constant)
    except Exception:  # RecursionError as well as ValueError: either way, not an answer we can read
        return None
    return value


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number")


def _json_or_none(response: httpx.Response) -> object | None:
    return decode_json(response.content)


def _exchange_error(body: object) -> tuple[int | None, str | None]:
    """The exchange's ``{"code", "msg"}``, the code bounded to what the journal holds, the text made safe."""
    if isinstance(body, dict) and "code" in body and "msg" in body:
        code, msg = body["code"], body["msg"]
        bounded = bounded_code(code)
        text = msg if isinstance(msg, str) else _json_text(msg)
        if bounded is None and code is not None:
            text = f"{text} (code {_json_text(code)[:40]} is not an exchange code)"
        return bounded, clean_text(text)
    return None, None


def _json_text(value: object) -> str:
    try:
        return json.dumps(value, default=str)[:1000]
    except Exception:
        return f"<{type(value).__name__}>"


def _describe(
    status: int, code: int | None, message: str | None, not_json: bool, response: httpx.Response
) -> str:
    if code is not None:
        return f"HTTP {status}, exchange code {code}: {message}"
    if message is not None:
        return f"HTTP {status}: {message}"
    if not_json:
        kind = "an HTML page" if b"<html" in response.content[:512].lower() else "a body that is not JSON"
        snippet = clean_text(response.content[:80].decode("utf-8", "replace").replace("\n", " "), 80)
        return f"HTTP {status} with {kind} ({len(response.content)} bytes: {snippet!r})"
    return f"HTTP {status}"


def parse_retry_after(header: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now``: whole or decimal seconds, or an HTTP date; None when absent or
    unreadable. Not clamped here: the gate clamps pauses and bans to what the exchange documents."""
    text = (header or "").strip()
    if _SECONDS.fullmatch(text):
        return float(text)
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)


def _banned_until(message: str | None) -> datetime | None:
    """``banned until <ms>`` in the message, as an aware datetime (at most the last one a datetime holds)."""
    match = _BANNED_UNTIL.search(message or "")
    if not match:
        return None
    seconds = int(match[1][:16]) / 1000 if len(match[1]) <= 16 else _LAST_DATETIME_S
    return datetime.fromtimestamp(min(seconds, _LAST_DATETIME_S), UTC)
