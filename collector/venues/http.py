"""What every venue's requests share: the gate, retries with backoff, one deadline for a whole answer, a cap
on the body, and a JSON decode that never makes a float.

A venue gives a ``classify`` function that turns one response into its body, or raises the ExchangeError that
says what came back, with ``hold`` set when the answer asks us to pause (a rate limit) or to stop (a ban).
The httpx client comes from outside, so tests and benchmarks point it at our fakes.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import httpx

from collector.deadline import Deadline
from collector.errors import ExchangeError, FatalExchangeError, Hold, NotSentError, RetriableExchangeError
from collector.records import bounded_code, clean_text
from collector.venues.gate import ExchangeGate

log = logging.getLogger("collector.exchange")
_SECONDS = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")
# A venue's answer is some 50 kB to 2 MB: a body past this is not an answer.
MAX_BODY_BYTES = 32 * 1024 * 1024
Classify = Callable[[httpx.Response, str], object]
# A request gives up this long before the cycle's deadline, so that what it met (a timeout, say) is what the
# journal says, rather than the cycle's "no answer by the deadline".
_ANSWER_MARGIN_S = 0.2


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


class VenueHttp:
    """GET requests to one venue: every one passes the venue's gate; retriable failures are retried with
    backoff; a pause or a ban the answer asks for is honoured; nothing is sent or waited for past the
    deadline."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        gate: ExchangeGate,
        deadline: Deadline | float,
        classify: Classify,
        retry: Retry = Retry(),
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.gate = gate
        self.deadline = deadline if isinstance(deadline, Deadline) else Deadline(deadline)
        self.classify = classify
        self.retry = retry

    async def get(self, path: str, params: Mapping[str, str], what: str) -> Answer:
        attempt = 0
        answered: RetriableExchangeError | None = None  # the last answer the venue gave to this request
        while True:
            attempt += 1
            try:
                return Answer(await self._get_once(path, params, what), attempt)
            except RetriableExchangeError as error:
                error.attempts = attempt
                if isinstance(error, NotSentError):
                    # Held back after the venue answered (a ban, say): that answer is what happened.
                    if answered is not None:
                        answered.attempts = attempt - 1
                        raise answered from error
                    raise
                answered = error
                if error.hold == "backoff":
                    await self._back_off(error, attempt, what)
                    continue
                if error.hold == "ban":
                    self.gate.ban(error.ban_end(), what, error.status)
                else:
                    self.gate.pause(error.retry_after_s, what, error.status)
                if attempt >= self.retry.attempts:
                    raise

    async def _back_off(self, error: RetriableExchangeError, attempt: int, what: str) -> None:
        delay = self.retry.delay(attempt)
        if attempt >= self.retry.attempts or delay + 2 * _ANSWER_MARGIN_S >= self.deadline.remaining():
            raise error
        log.info("%s; retry %d in %.1f s", error, attempt, delay, extra={"request": what, "attempt": attempt})
        await asyncio.sleep(delay)

    async def _get_once(self, path: str, params: Mapping[str, str], what: str) -> object:
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
        return self.classify(response, what)

    async def _request(self, url: str, params: Mapping[str, str], what: str) -> httpx.Response:
        """The whole answer within one deadline (not only per read: a body dripped a byte a second never
        trips a read timeout), read up to MAX_BODY_BYTES."""
        budget = min(self.http.timeout.read or 10.0, self.deadline.remaining() - _ANSWER_MARGIN_S)
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


def failure(
    response: httpx.Response,
    what: str,
    venue: str,
    body: object | None,
    error: tuple[int | None, str | None],
    *,
    retriable: bool,
    hold: Hold = "backoff",
    banned_until: datetime | None = None,
    otherwise: str = "",
) -> ExchangeError:
    """The ExchangeError for an answer that is not rows: the venue's code and message when it sent them,
    else what the body was (``otherwise`` says what was missing from JSON that is not an error); with the
    status, ``Retry-After``, and what the answer asks of us (``hold``)."""
    status, (code, message) = response.status_code, error  # body: the decoded JSON, None when it was not
    if code is not None:
        detail = f"HTTP {status}, {venue} error {code}: {message}"
    elif message is not None:
        detail = f"HTTP {status}: {message}"
    elif body is None:
        detail = not_json(status, response)
    else:
        detail = f"HTTP {status}" + (f": {otherwise}" if otherwise else "")
    error_class = RetriableExchangeError if retriable else FatalExchangeError
    return error_class(
        f"{what}: {detail}",
        status=status,
        code=code,
        exchange_message=message,
        retry_after_s=parse_retry_after(response.headers.get("Retry-After"), time.time()),
        banned_until=banned_until,
        hold=hold,
    )


def not_json(status: int, response: httpx.Response) -> str:
    """How to say that a body was not the JSON expected: an HTML page or something else, and its start."""
    kind = "an HTML page" if b"<html" in response.content[:512].lower() else "a body that is not JSON"
    snippet = clean_text(response.content[:80].decode("utf-8", "replace").replace("\n", " "), 80)
    return f"HTTP {status} with {kind} ({len(response.content)} bytes: {snippet!r})"


def parse_retry_after(header: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now``: whole or decimal seconds, or an HTTP date; None when absent or
    unreadable. Not clamped here: the gate clamps pauses and bans to what the venue documents."""
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


def venue_error(code: object, message: object) -> tuple[int | None, str]:
    """A venue's error code and message as the journal holds them: the code when it is an int32, the text made
    safe (and saying so when the code was dropped)."""
    text = message if isinstance(message, str) else json_text(message)
    bounded = bounded_code(code)
    if bounded is None and code is not None:
        text = f"{text} (code {json_text(code)[:40]} is not an error code)"
    return bounded, clean_text(text)


def json_text(value: object) -> str:
    """A JSON value as short text for a message; never fails."""
    try:
        return json.dumps(value, default=str)[:1000]
    except Exception:
        return f"<{type(value).__name__}>"
