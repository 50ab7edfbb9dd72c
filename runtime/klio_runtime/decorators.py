"""Klio's decorators: ``handle_klio``, ``serialize_klio_message``, ``set_klio_context``,
``inject_klio_context``, ``timeout``, ``retry``, ``profile``.

One error path (:func:`drop`): whatever goes wrong for one element — bytes that are not a
KlioMessage, the job's function raising or timing out, a payload that is not bytes — is logged
with the element id, counted under a reason (``klio_messages_dropped_total{reason}`` and Beam's
string set of dropped ids), and the element leaves on the ``drop`` tagged output (Klio's tag).
The pipeline keeps going.

Like Klio, a function whose first parameter is named ``self`` is treated as a method.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import time
import traceback
import types
import warnings
from collections.abc import Callable, Iterator
from enum import Enum
from typing import Any

import apache_beam as beam
from apache_beam import pvalue

from klio_runtime import message as kmessage
from klio_runtime.context import (
    LOGGER_NAME,
    JobLimits,
    KlioContext,
    bound_context,
    current_element,
)
from klio_runtime.proto.klio_pb2 import KlioMessage
from klio_runtime.transforms import klio_lines
from klio_runtime.transforms.handoff import READS_MESSAGES_MARK, reads_payload_objects

DROP_TAG = "drop"


# -- errors ------------------------------------------------------------------------------------
class KlioTimeoutError(Exception):
    """The decorated function ran longer than its ``@timeout``; its process was killed."""


class KlioRetriesExhausted(Exception):
    """``@retry`` ran out of tries."""


class KlioMessageException(Exception):
    """Klio's general KlioMessage exception (``klio.message.exceptions``)."""


class KlioMessagePayloadException(KlioMessageException, TypeError):
    """The job's function returned something that cannot become a payload (a TypeError too,
    as it is one)."""


def drop_reason(err: BaseException) -> str:
    """The counted reason for an exception raised by (or around) the job's code."""
    if isinstance(err, KlioTimeoutError):
        return "timeout"
    if isinstance(err, KlioRetriesExhausted):
        return "retries_exhausted"
    if isinstance(err, kmessage.MessageDecodeError):
        return "decode_error"
    if isinstance(err, KlioMessagePayloadException):
        return "bad_payload"
    return "run_error"


def drop(
    ctx: KlioContext,
    incoming: Any,
    where: str,
    err: BaseException,
    element: str | None = None,
    kmsg: KlioMessage | None = None,
) -> pvalue.TaggedOutput:
    """THE error path: log Klio's line (with the element id on the record), count by reason,
    tag the element ``drop``."""
    reason = drop_reason(err)
    element = element if element is not None else _best_element_id(incoming)
    detail = getattr(err, "_klio_traceback", "")
    show_tb = reason in ("run_error", "bad_payload", "retries_exhausted") and not detail
    shown = kmsg if kmsg is not None else incoming
    if kmsg is None and reason == "decode_error":  # what it was given is no KlioMessage
        if not ctx.config.job_config.allow_non_klio_messages:
            ctx.logger.error(klio_lines.CANNOT_PARSE, extra={"element_id": element})
        line = klio_lines.parse_dropped(incoming, err)
    elif isinstance(err, KlioMessagePayloadException):
        line = klio_lines.payload_dropped(shown, err)
    else:
        line = klio_lines.exception_dropped(where, shown, err, detail)
    ctx.logger.error(line, exc_info=err if show_tb else None, extra={"element_id": element})
    ctx.metrics.dropped(reason, element)
    return pvalue.TaggedOutput(DROP_TAG, incoming)


def _best_element_id(incoming: Any) -> str:
    if isinstance(incoming, bytes | bytearray):
        try:
            return kmessage.element_id(kmessage.parse(bytes(incoming)))
        except Exception:
            return repr(bytes(incoming)[:60])
    return repr(incoming)[:80]


# -- payload rules (Klio's from_klio_message) ------------------------------------------------------


def payload_of(kmsg: KlioMessage, result: Any) -> bytes:
    """The next payload for what the job's function returned (Klio's ``from_klio_message``).

    ``str``/``bytes`` → that payload; the ``data`` it was given (or anything equal to it), ``None``
    or an empty value → the payload is cleared (so a payload never nests the message itself).
    A ``bytearray`` or ``memoryview`` is taken as its bytes (Klio refuses them).
    """
    if result is None or result is kmsg.data:
        return b""
    if isinstance(result, bytes):
        return result
    if isinstance(result, str):
        return result.encode("utf-8")
    if isinstance(result, KlioMessage.Data) and result == kmsg.data:
        return b""
    if isinstance(result, bytearray | memoryview):
        return bytes(result)
    try:
        empty = not result
    except Exception:  # no truth value (an array): not empty, and not bytes either
        empty = False
    if empty:
        return b""
    shown = str(result)
    if len(shown) > PAYLOAD_SHOWN:
        shown = f"{shown[:PAYLOAD_SHOWN]}… ({type(result).__name__}, cut)"
    raise KlioMessagePayloadException(  # Klio's text
        "Returned payload could not be coerced to `bytes`.\n"
        f"Erroring payload: {shown}\nErroring KlioMessage: {kmsg}"
    )


PAYLOAD_SHOWN = 1000
"""Characters of a refused payload shown in its drop line (Klio shows all of it)."""


def message_out(kmsg: KlioMessage, result: Any) -> Any:
    """Serialize ``kmsg`` with the payload :func:`payload_of` ``result``; a ``TaggedOutput`` keeps
    its tag. As Klio's ``from_klio_message``, only a V2 message takes a payload: a V1 or untagged
    one passes on with its own, whatever was returned."""
    if isinstance(result, pvalue.TaggedOutput):
        return pvalue.TaggedOutput(result.tag, message_out(kmsg, result.value))
    if kmsg.version == kmessage.V2:
        kmsg.data.payload = payload_of(kmsg, result)
    return kmessage.serialize(kmsg)


# -- helpers ---------------------------------------------------------------------------------------
def _is_method(func: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return False
    return bool(params) and params[0] == "self"


def _name(func: Callable[..., Any]) -> str:
    return getattr(func, "__qualname__", getattr(func, "__name__", repr(func)))


def _reads_messages(wrapper: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a wrapper that parses what it receives: objects that stand for a message (audio's
    AudioItem) may be handed to it as they are (:mod:`klio_runtime.transforms.handoff`)."""
    setattr(wrapper, READS_MESSAGES_MARK, True)
    return wrapper


def _own_signature(wrapper: Callable[..., Any]) -> Callable[..., Any]:
    """Keep the name and docs of the wrapped function but show the wrapper's own parameters.

    Beam checks a callable's signature against what it will pass (one element for ``Map``);
    ``functools.wraps`` would make it see ``(ctx, item)``.
    """
    wrapper.__dict__.pop("__wrapped__", None)
    setattr(wrapper, KLIO_WRAPPER_MARK, True)
    return wrapper


KLIO_WRAPPER_MARK = "__klio_wrapper__"
"""Set on the wrappers Klio's decorators return (``@profile`` warns when it is given one)."""


def _context_of(self: Any) -> KlioContext:
    ctx = getattr(self, "_klio", None)
    if not isinstance(ctx, KlioContext):
        ctx = bound_context()
        self._klio = ctx
    return ctx


class ThreadLimit(Enum):
    """Klio's special values for ``max_thread_count``."""

    NONE = 0  # Klio's values
    DEFAULT = 1


CONCURRENCY_LOGGER = logging.getLogger("klio.concurrency")
BLOCKED = "Blocked – waiting on semaphore for an available thread"
RELEASED = "Released semaphore"


class ThreadLimiter:
    """Bounds how many elements run the job's code at once in this worker.

    Beam already calls ``process`` from its own bounded set of threads; this caps the number inside
    the job's code, so memory-heavy work cannot run N-threads-wide by accident. The tokens sit in a
    ``queue.SimpleQueue`` (implemented in C): taking one costs far less than a Python semaphore.
    As Klio's limiter does, each take and return is logged at DEBUG on ``klio.concurrency``.
    """

    def __init__(
        self,
        max_thread_count: int | ThreadLimit | Callable[[], int] | None = ThreadLimit.DEFAULT,
        name: str | None = None,
        *,
        announce: bool = True,
    ) -> None:
        """``max_thread_count`` as in Klio: a number, a callable returning one,
        :attr:`ThreadLimit.DEFAULT` (the CPU count) or :attr:`ThreadLimit.NONE` / None (no
        limit). ``announce``: log Klio's DEBUG line about the limit (Klio logs it when the job's
        code is imported; a limiter made at a step's first element stays quiet, or a job's
        test counting the records of that element would see one more)."""
        if max_thread_count is ThreadLimit.DEFAULT:
            max_thread_count = os.cpu_count() or 1
        elif max_thread_count is ThreadLimit.NONE:
            max_thread_count = None
        elif callable(max_thread_count):
            max_thread_count = max_thread_count()
        if max_thread_count is not None and (
            not isinstance(max_thread_count, int)
            or isinstance(max_thread_count, bool)
            or max_thread_count <= 0
        ):
            raise ValueError(f"max_thread_count must be an int > 0, not {max_thread_count!r}")
        self.name = name
        self.max_thread_count: int | None = max_thread_count
        self._tokens: queue.SimpleQueue[None] | None = None
        if max_thread_count:
            self._tokens = queue.SimpleQueue()
            for _ in range(max_thread_count):
                self._tokens.put(None)
            if announce:
                CONCURRENCY_LOGGER.debug("%r Initial semaphore value: %d", self, max_thread_count)
        elif announce:
            CONCURRENCY_LOGGER.debug("%r Using unlimited semaphore", self)

    def acquire(self) -> None:
        """Take a thread (blocks until one is free)."""
        if CONCURRENCY_LOGGER.isEnabledFor(logging.DEBUG):
            self.log(BLOCKED)
        if self._tokens is not None:
            self._tokens.get()

    def release(self) -> None:
        """Give the thread back.

        Raises:
            ValueError: released more often than taken, as Klio's (a BoundedSemaphore).
        """
        if self._tokens is not None:
            if self._tokens.qsize() >= (self.max_thread_count or 0):
                raise ValueError("Semaphore released too many times")
            self._tokens.put(None)
        if CONCURRENCY_LOGGER.isEnabledFor(logging.DEBUG):
            self.log(RELEASED)

    def log(self, message: str) -> None:
        """Klio's line: ``KlioThreadLimiter(name=…) <message> (available threads: N)``."""
        tokens = self._tokens
        available = "" if tokens is None else f" (available threads: {tokens.qsize()})"
        CONCURRENCY_LOGGER.debug("%r %s%s", self, message, available)

    def __repr__(self) -> str:
        return f"KlioThreadLimiter({f'name={self.name}' if self.name else f'id={id(self)}'})"

    def __enter__(self) -> ThreadLimiter:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_unpickled_limiter, (self.max_thread_count, self.name))


def _unpickled_limiter(max_thread_count: int | None, name: str | None) -> ThreadLimiter:
    """A limiter as a worker unpickles it: announced once already, where it was made."""
    return ThreadLimiter(max_thread_count, name, announce=False)


def _resolve_limit(max_thread_count: Any, ctx: KlioContext) -> int | None:
    if max_thread_count is ThreadLimit.NONE:
        return None
    if max_thread_count is None or max_thread_count is ThreadLimit.DEFAULT:
        configured = getattr(ctx.config.job_config, "thread_pool_size", None)
        return int(configured) if configured else (os.cpu_count() or 1)
    if callable(max_thread_count):
        return int(max_thread_count())
    return int(max_thread_count)


class _LazyLimiter:
    """The limiter of one decorated function, sized on first use from the job config."""

    def __init__(self, max_thread_count: Any, limiter: ThreadLimiter | None, name: str) -> None:
        # Klio's checks, when the function is decorated (RuntimeError: Beam does not catch it)
        if max_thread_count is not None and limiter is not None:
            raise RuntimeError("`max_thread_count` and `thread_limiter` are mutually exclusive")
        if limiter is not None and not isinstance(limiter, ThreadLimiter):
            raise RuntimeError(
                "'thread_limiter' must be an instance of `klio.utils.ThreadLimiter`."
            )
        if max_thread_count is not None and not (
            isinstance(max_thread_count, int | ThreadLimit) or callable(max_thread_count)
        ):
            raise RuntimeError(
                "Invalid type for handle_klio's argument 'max_thread_count'. Expected an `int`, "
                "a callable returning an `int`, or `klio.utils.ThreadLimit`, got "
                f"`{type(max_thread_count).__name__}`."
            )
        if isinstance(max_thread_count, int) and max_thread_count <= 0:
            raise RuntimeError("'max_thread_count' must be > 0; use ThreadLimit.NONE for no limit")
        self._max = max_thread_count
        self._limiter = limiter
        self._name = name
        self._lock = threading.Lock()

    def get(self, ctx: KlioContext) -> ThreadLimiter:
        if self._limiter is None:
            with self._lock:
                if self._limiter is None:
                    self._limiter = ThreadLimiter(
                        _resolve_limit(self._max, ctx), self._name, announce=False
                    )
        return self._limiter

    def __getstate__(self) -> dict[str, Any]:
        return {"_max": self._max, "_limiter": self._limiter, "_name": self._name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def _message_of(ctx: KlioContext, incoming: Any, func: Any) -> tuple[KlioMessage, Any]:
    """The message of ``incoming`` that is not carried (:func:`kmessage.take_carried` first),
    and what ``func`` is given instead of the message's ``data``, if anything: the object itself
    for a function that reads its payload itself (:func:`handoff.reads_payload_objects`)."""
    if type(incoming) is not bytes:
        if not isinstance(incoming, bytes | bytearray | memoryview):
            # An object carrying a parsed message (audio's AudioItem) hands it over as a
            # message: its payload is encoded once (or not at all), without serializing and
            # parsing the whole message again.
            bare_message = getattr(incoming, "bare_message", None)
            if bare_message is not None and reads_payload_objects(func):
                kmsg = bare_message()
                if isinstance(kmsg, KlioMessage):  # else its payload goes encoded, as below
                    return kmsg, incoming
            to_message = getattr(incoming, "to_message", None)
            if to_message is not None:
                kmsg = to_message()
                if isinstance(kmsg, KlioMessage):
                    return kmsg, None
        incoming = bytes(incoming)
    return fast_parse(incoming, allow_non_klio=ctx.config.job_config.allow_non_klio_messages), None


def _run_one(
    ctx: KlioContext,
    func: Callable[..., Any],
    call_args: tuple[Any, ...],
    kwargs: dict[str, Any],
    incoming: Any,
    where: str,
    many: bool,
    limiter: ThreadLimiter | None = None,
) -> list[Any]:
    """Parse → call → serialize one element, holding one of ``limiter``'s threads; every failure
    goes through :func:`drop`. Counted under Klio's per-transform metrics in Klio's order: the
    thread is taken, the message logged as received, handled, the thread given back, then its
    success or drop and its time are counted.

    A returned or yielded ``None`` passes the message on with its payload cleared, as Klio's
    ``from_klio_message`` does (its state.rst lists ``None`` beside ``data`` as clearing the
    payload); only a generator that yields nothing emits nothing. As in Klio, each item a
    generator yields counts as a success, and the items it yielded before raising are handed on
    beside the element's drop.
    """
    # One function, not one per stage: this runs once per element of a job's every step.
    stats = ctx.metrics.transform(where)
    log = stats.logging()
    tokens = None
    log_threads = False
    custom = limiter is not None and type(limiter) is not ThreadLimiter
    if custom:
        limiter.acquire()  # type: ignore[union-attr]  # a subclass's own acquire/release
    elif limiter is not None:
        tokens = limiter._tokens  # read here, not via acquire(): fewer calls per element
        log_threads = CONCURRENCY_LOGGER.isEnabledFor(logging.DEBUG)
        if log_threads:
            limiter.log(BLOCKED)
        if tokens is not None:
            tokens.get()
    start = time.perf_counter()
    passed, dropped = 1, False  # successes counted, and whether the element was dropped
    batched = False
    token = None
    element: bytes | None = None
    kmsg: KlioMessage | None = None
    try:
        batched = stats.arrived()
        if log:
            stats.log_received()
        kmsg = kmessage.take_carried(incoming)  # the common case: the job's last step made it
        given = None  # what the function gets instead of the message's data
        if kmsg is None:
            try:
                kmsg, given = _message_of(ctx, incoming, func)
            except Exception as err:
                passed, dropped = 0, True
                return [drop(ctx, incoming, where, err)]
            if kmsg.metadata.ping:
                # A ping skips the work (a job without data inputs sends it here, see
                # transforms.route); never carried, so only parsed messages need this check.
                return [incoming]
        data = kmsg.data  # one wrapper object, used thrice
        element = data.element
        token = current_element.set(element)  # decoded only if a log record needs it
        args = (*call_args, data if given is None else given)
        limits = ctx.job_limits
        result = (
            func(*args, **kwargs)
            if limits is None
            else _call_with_job_limits(ctx, limits, func, args, kwargs, where)
        )
        if type(result) is bytes:  # the most common case, kept shortest
            if kmsg.version == kmessage.V2:
                data.payload = result
            return [kmessage.carry(kmsg)]
        if type(result) is not types.GeneratorType:
            return [_carried_out(kmsg, result)]
        if not many:
            raise TypeError(f"{where} returned a generator: only a DoFn's process method may yield")
        results: list[Any] = []
        try:
            results.extend(result)  # the generator's body runs here
        except Exception as err:
            made, bad = _generated(ctx, incoming, where, kmsg, results, element)
            passed, dropped = len(made), True
            return [*made, *bad, drop(ctx, incoming, where, err, _shown(element), kmsg)]
        made, bad = _generated(ctx, incoming, where, kmsg, results, element)
        passed, dropped = len(made), bool(bad)
        return [*made, *bad]
    except Exception as err:
        passed, dropped = 0, True
        return [drop(ctx, incoming, where, err, _shown(element), kmsg)]
    finally:
        seconds = time.perf_counter() - start
        if token is not None:
            current_element.reset(token)
        if tokens is not None:
            tokens.put(None)
        if log_threads:
            limiter.log(RELEASED)  # type: ignore[union-attr]
        if custom:
            limiter.release()  # type: ignore[union-attr]
        stats.finished(passed, dropped, seconds, log, batched)


def _shown(element: bytes | None) -> str | None:
    return None if element is None else element.decode("utf-8", "backslashreplace")


def _generated(
    ctx: KlioContext,
    incoming: Any,
    where: str,
    kmsg: KlioMessage,
    results: list[Any],
    element: bytes | None,
) -> tuple[list[Any], list[Any]]:
    """What a generator yielded, each as its own message to hand on; an item that cannot be a
    message's payload is dropped alone (logged, counted), as Klio drops it, the others kept."""
    made: list[Any] = []
    bad: list[Any] = []
    for result in results:
        try:
            made.append(_carried_out(kmsg if len(results) == 1 else _copy(kmsg), result))
        except Exception as err:
            bad.append(drop(ctx, incoming, where, err, _shown(element), kmsg))
    return made, bad


def _carried_out(kmsg: KlioMessage, result: Any) -> Any:
    """:func:`message_out`, as bytes that carry the message to the job's next step."""
    if isinstance(result, pvalue.TaggedOutput):
        return pvalue.TaggedOutput(result.tag, _carried_out(kmsg, result.value))
    if kmsg.version == kmessage.V2:  # see message_out
        kmsg.data.payload = result if type(result) is bytes else payload_of(kmsg, result)
    return kmessage.carry(kmsg)


def _call_with_job_limits(
    ctx: KlioContext,
    limits: JobLimits,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    where: str,
) -> Any:
    """Call the job's function under the job-wide knobs (the KlioJob's ``timeoutSeconds`` and
    ``retries``, i.e. ``job_config.timeout_seconds`` / ``retries``), counted as ``@timeout`` and
    ``@retry`` count."""
    limit, retries = limits.timeout_seconds, limits.retries
    attempt = 0
    while True:
        attempt += 1
        try:
            if limit:
                message = f"Function '{where}' timed out after {float(limit)} seconds."
                return _run_with_timeout(
                    func,
                    float(limit),
                    KlioTimeoutError,
                    message,
                    args,
                    kwargs,
                    lambda: _count(ctx, KMSG_DROP_TIMED_OUT, where),
                )
            return func(*args, **kwargs)
        except Exception as err:
            if attempt > retries:
                if retries:
                    message = _retries_exhausted(ctx, where, attempt, err)
                    raise KlioRetriesExhausted(message) from err
                raise
            _retrying(ctx, where, attempt, retries + 1, 0.0, err)


KMSG_RETRY_ATTEMPT = "kmsg-retry-attempt"
KMSG_DROP_RETRY_ERROR = "kmsg-drop-retry-error"
KMSG_DROP_TIMED_OUT = "kmsg-drop-timed-out"


def _count(ctx: KlioContext | None, name: str, where: str) -> None:
    """Count one of Klio's per-transform error metrics (a rare path: made when needed)."""
    if ctx is not None:
        ctx.metrics.counter(name, transform=where).inc()


def _retrying(
    ctx: KlioContext | None, where: str, attempt: int, tries: int, delay: float, err: BaseException
) -> None:
    """Count a retry and log it as Klio does (its line ends with a space)."""
    _count(ctx, KMSG_RETRY_ATTEMPT, where)
    pause = f" in {delay} seconds" if delay > 0 else ""
    of = f" of {tries}" if tries > 0 else ""
    _logger_of(ctx).warning(
        "Retrying KlioMessage%s - attempt %d%s. '%s' raised an exception: %s ",
        pause,
        attempt,
        of,
        where,
        err,
    )


def _retries_exhausted(
    ctx: KlioContext | None, where: str, tries: int, err: BaseException, message: str | None = None
) -> str:
    """The last try failed: count it, log Klio's line, and return the message of the error to
    raise (``message``, else Klio's default)."""
    _count(ctx, KMSG_DROP_RETRY_ERROR, where)
    message = message or (
        f"Function '{where}' has reached the maximum {tries} retries. Last exception: {err}"
    )
    _logger_of(ctx).error("Dropping KlioMessage - retries exhausted: %s", message)
    return message


def _logger_of(ctx: KlioContext | None) -> logging.Logger:
    return ctx.logger if ctx is not None else logging.getLogger(LOGGER_NAME)


def _replay(items: list[Any]) -> Iterator[Any]:
    yield from items


def _context_in(args: tuple[Any, ...]) -> KlioContext | None:
    """The context of a decorated call: ``ctx`` or ``self._klio`` first, else the bound one."""
    first = args[0] if args else None
    if isinstance(first, KlioContext):
        return first
    own = getattr(first, "_klio", None)
    if isinstance(own, KlioContext):
        return own
    try:
        return bound_context()
    except RuntimeError:
        return None


# Kept under this name for callers of the first version.
fast_parse = kmessage.parse_own


def _copy(kmsg: KlioMessage) -> KlioMessage:
    out = KlioMessage()
    out.CopyFrom(kmsg)
    return out


# -- the decorators --------------------------------------------------------------------------------
def _handle_klio(
    *args: Any, max_thread_count: Any = None, thread_limiter: ThreadLimiter | None = None, **_: Any
) -> Any:
    def inner(func: Callable[..., Any]) -> Callable[..., Any]:
        where = _name(func)
        limiter = _LazyLimiter(max_thread_count, thread_limiter, where)

        if not _is_method(func):

            @functools.wraps(func)
            def func_wrapper(incoming: Any, *rest: Any, **kwargs: Any) -> Any:
                ctx = bound_context()
                # extra positional args of Map(f, a, b) go after the data
                call = _bind_rest(func, rest)
                return _run_one(
                    ctx, call, (ctx,), kwargs, incoming, where, False, limiter.get(ctx)
                )[0]

            return _reads_messages(_own_signature(func_wrapper))

        if func.__name__ == "expand":

            @functools.wraps(func)
            def expand_wrapper(self: Any, *rest: Any, **kwargs: Any) -> Any:
                _context_of(self)
                return func(self, *rest, **kwargs)

            return _own_signature(expand_wrapper)

        @functools.wraps(func)
        def method_wrapper(self: Any, incoming: Any, *rest: Any, **kwargs: Any) -> Any:
            ctx = _context_of(self)
            is_process = func.__name__ == "process" and isinstance(self, beam.DoFn)
            call = _bind_rest(func, rest)
            out = _run_one(
                ctx, call, (self,), kwargs, incoming, where, is_process, limiter.get(ctx)
            )
            return iter(out) if is_process else out[0]

        return _reads_messages(_own_signature(method_wrapper))

    if args and callable(args[0]):
        return inner(args[0])
    return inner


def _bind_rest(func: Callable[..., Any], rest: tuple[Any, ...]) -> Callable[..., Any]:
    if not rest:
        return func

    def call(first: Any, data: Any, **kwargs: Any) -> Any:
        return func(first, data, *rest, **kwargs)

    call.__name__ = getattr(func, "__name__", "call")
    return call


def _serialize_klio_message(func: Callable[..., Any]) -> Callable[..., Any]:
    where = _name(func)
    if _is_method(func):

        @functools.wraps(func)
        def method_wrapper(self: Any, incoming: Any, *rest: Any, **kwargs: Any) -> Any:
            ctx = _context_of(self)
            is_process = func.__name__ == "process" and isinstance(self, beam.DoFn)
            out = _run_one(
                ctx, _bind_rest(func, rest), (self,), kwargs, incoming, where, many=is_process
            )
            return iter(out) if is_process else out[0]

        return _reads_messages(_own_signature(method_wrapper))

    @functools.wraps(func)
    def func_wrapper(ctx: KlioContext, incoming: Any, *rest: Any, **kwargs: Any) -> Any:
        out = _run_one(ctx, _bind_rest(func, rest), (ctx,), kwargs, incoming, where, many=False)
        return out[0]

    return _reads_messages(_own_signature(func_wrapper))


def _set_klio_context(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def method_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        _context_of(self)
        return method(self, *args, **kwargs)

    return _own_signature(method_wrapper)


def _inject_klio_context(func: Callable[..., Any]) -> Callable[..., Any]:
    if _is_method(func):

        @functools.wraps(func)
        def method_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            return func(self, _context_of(self), *args, **kwargs)

        return _own_signature(method_wrapper)

    @functools.wraps(func)
    def func_wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(bound_context(), *args, **kwargs)

    return _own_signature(func_wrapper)


def handle_klio(
    *args: Any,
    max_thread_count: Any = None,
    thread_limiter: ThreadLimiter | None = None,
    **kwargs: Any,
) -> Any:
    """Parse the incoming bytes, give the function the context and ``data``, serialize the result.

    On a plain function ``f(ctx, data)``; on a DoFn's ``process(self, data)`` (may yield; the
    context is ``self._klio``); on a PTransform's ``expand`` (only sets ``self._klio``). Use with
    or without parentheses. At most ``max_thread_count`` elements (default
    ``job_config.thread_pool_size``, else the CPU count; :attr:`ThreadLimit.NONE` for no limit)
    run the function at once in this process.
    """
    return _handle_klio(
        *args, max_thread_count=max_thread_count, thread_limiter=thread_limiter, **kwargs
    )


def serialize_klio_message(func: Callable[..., Any]) -> Callable[..., Any]:
    """Only (de)serialize; the context comes from ``self._klio`` or ``@inject_klio_context``."""
    return _serialize_klio_message(func)


def set_klio_context(method: Callable[..., Any]) -> Callable[..., Any]:
    """Set ``self._klio`` (the running job's context) before the method runs."""
    return _set_klio_context(method)


def inject_klio_context(func: Callable[..., Any]) -> Callable[..., Any]:
    """Pass the context as the first argument (after ``self`` for methods)."""
    return _inject_klio_context(func)


# -- timeout ------------------------------------------------------------
def _child_main(
    conn: Any, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    os.setpgid(0, 0)  # its own group, so a timeout kills whatever it started too
    try:
        result = func(*args, **kwargs)
        if isinstance(result, types.GeneratorType):
            result = _Yielded(list(result))
        reply: tuple[Any, ...] = (True, result)
    except BaseException as err:
        tb = "Traceback (most recent call last):\n" + "".join(
            traceback.format_tb(err.__traceback__.tb_next if err.__traceback__ else None)
        )
        reply = (False, err, tb)
    try:
        conn.send_bytes(pickle.dumps(reply))
    except Exception as err:  # an unpicklable result or exception
        conn.send_bytes(pickle.dumps((False, RuntimeError(f"result not picklable: {err}"), "")))
    conn.close()


class _Yielded(list):
    """A generator's items, materialized in the child process."""


_LONGEST_WAIT = 2_000_000.0
"""Seconds: a time limit at or above this is waited for without one."""


def _run_with_timeout(
    func: Callable[..., Any],
    seconds: float,
    exc_type: type[BaseException],
    message: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timed_out: Callable[[], None] | None = None,
) -> Any:
    mp = multiprocessing.get_context("fork")
    parent_end, child_end = mp.Pipe(duplex=False)
    proc = mp.Process(
        target=_child_main,
        args=(child_end, func, args, kwargs),
        daemon=True,
        name=f"klio-timeout-{_name(func)}",
    )
    proc.start()
    child_end.close()
    try:
        # a wait longer than the OS's (about 24 days, in milliseconds of a C int) is no limit
        if not parent_end.poll(seconds if seconds < _LONGEST_WAIT else None):
            if timed_out is not None:
                timed_out()
            raise exc_type(message)
        try:
            reply = pickle.loads(parent_end.recv_bytes())
        except EOFError:
            raise RuntimeError(
                f"{_name(func)} died without an answer (exit code {proc.exitcode})"
            ) from None
    finally:
        if proc.pid is not None and proc.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.join(5)
        parent_end.close()
    if reply[0]:
        result = reply[1]
        return (item for item in result) if isinstance(result, _Yielded) else result
    err = reply[1]
    if reply[2]:
        err._klio_traceback = reply[2]
    raise err


def timeout(
    seconds: float,
    *args: Any,
    exception: type[BaseException] | None = None,
    exception_message: str | None = None,
    **kwargs: Any,
) -> Callable[..., Any]:
    """Run the function in a forked child process and kill it (and its process group) after
    ``seconds``.

    A thread cannot be stopped from outside, so, as Klio did, the work runs in a separate process: a
    runaway loop or a hung native call is really killed. The fork inherits the element and the code,
    so nothing needs to be importable; the result (or exception) comes back pickled. Side effects
    in the child (mutated objects, metric increments) stay in the child. Place under
    ``@handle_klio``.
    """
    try:
        limit = float(seconds)
    except (TypeError, ValueError):
        raise RuntimeError(f"timeout 'seconds' must be a number, not {seconds!r}") from None
    if not limit > 0:
        raise RuntimeError(f"timeout 'seconds' must be > 0, not {seconds!r}")
    exc_type = exception or KlioTimeoutError

    def inner(func: Callable[..., Any]) -> Callable[..., Any]:
        message = exception_message or f"Function '{_name(func)}' timed out after {limit} seconds."

        where = _name(func)

        @functools.wraps(func)
        def wrapper(*a: Any, **kw: Any) -> Any:
            def timed_out() -> None:
                _count(_context_in(a), KMSG_DROP_TIMED_OUT, where)

            return _run_with_timeout(func, limit, exc_type, message, a, kw, timed_out)

        return wrapper

    return inner


# -- retry -----------------------------------------------------------------------------------------
def retry(
    *args: Any,
    tries: int | None = None,
    delay: float | None = None,
    exception: type[BaseException] | tuple[type[BaseException], ...] | None = None,
    raise_exception: type[BaseException] | None = None,
    exception_message: str | None = None,
    **kwargs: Any,
) -> Callable[..., Any]:
    """Call again on failure: ``tries`` attempts in all (-1 = forever, Klio's default), ``delay`` s
    apart.

    Only ``exception`` (default ``Exception``) is retried; when tries run out ``raise_exception``
    (default :class:`KlioRetriesExhausted`) is raised, chained to the last error.
    """
    if len(args) == 1 and callable(args[0]):
        raise RuntimeError(
            f"The `retry` decorator needs parentheses on '{_name(args[0])}', e.g. `@retry()`."
        )
    n = -1 if tries is None else tries
    if not isinstance(n, int) or isinstance(n, bool) or n < -1 or n == 0:
        raise RuntimeError(f"retry 'tries' must be a positive int or -1 (forever), not {tries!r}")
    pause = 0.0 if delay is None else delay
    if not isinstance(pause, int | float) or pause < 0:
        raise RuntimeError(f"retry 'delay' must be a number >= 0, not {delay!r}")
    catch = exception or Exception
    final = raise_exception or KlioRetriesExhausted

    def inner(func: Callable[..., Any]) -> Callable[..., Any]:
        where = _name(func)

        @functools.wraps(func)
        def wrapper(*a: Any, **kw: Any) -> Any:
            attempt = 0
            while True:
                attempt += 1
                try:
                    result = func(*a, **kw)
                    if isinstance(result, types.GeneratorType):
                        # its body runs here, so what it raises is retried too (Klio's wrapper
                        # retries the first item; every item is kept here)
                        return _replay(list(result))
                    return result
                except catch as err:
                    if n != -1 and attempt >= n:
                        msg = _retries_exhausted(_context_in(a), where, n, err, exception_message)
                        raise final(msg) from err
                    _retrying(_context_in(a), where, attempt, n, pause, err)
                    if pause:
                        time.sleep(pause)

        return wrapper

    return inner


# Klio's underscore forms, which its own transforms and tests use: the same decorators.
_retry = retry
_timeout = timeout


# -- profile ---------------------------------------------------------------------------------------
PROFILE_MARK = "__klio_profile__"

ACTIVE_PROFILER: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None
"""Set by ``klio job profile`` (timeit, memory-per-line) before it imports the job's modules, as
Klio's ``ACTIVE_PROFILER``: ``@profile`` then wraps what it marks with it. Never set otherwise."""


def profile(func: Callable[..., Any] | None = None, **_: Any) -> Any:
    """Mark a function or method for ``klio job profile``; as in Klio, a normal run is unchanged.

    Outside profiling the function is returned itself (no wrapper, no cost), with
    ``__klio_profile__ = True``. Under ``klio job profile timeit`` or ``memory-per-line`` (the
    profiler is active when the job's modules are imported) it is wrapped by that line profiler;
    as in Klio, it must then be the innermost decorator (below ``@handle_klio``). Usable with or
    without parentheses.
    """

    def mark(target: Callable[..., Any]) -> Callable[..., Any]:
        profiler = ACTIVE_PROFILER
        if profiler is not None and getattr(target, KLIO_WRAPPER_MARK, False):
            warnings.warn(
                f"@profile is above a Klio decorator on {_name(target)}: it measures the"
                " decorator's wrapper, not the function; put @profile last (innermost), as Klio"
                " requires",
                stacklevel=3,
            )
        if profiler is not None:
            # wraps() keeps the signature other decorators read to tell methods from functions
            target = functools.wraps(target)(profiler(target))
        with contextlib.suppress(AttributeError, TypeError):
            setattr(target, PROFILE_MARK, True)
        return target

    return mark(func) if func is not None else mark
