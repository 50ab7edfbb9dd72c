"""handle_klio and friends, called directly (no pipeline)."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam import pvalue
from klio_runtime import decorators as d
from klio_runtime.context import KlioContext
from klio_runtime.message import V1, KlioMessage
from klio_runtime.metrics import kmsg_timer_unit, process_hub

from tests.runtime.helpers import bound, dropped, make_config, msg_bytes, parsed


@pytest.fixture
def ctx() -> KlioContext:
    return bound(make_config())


def test_handle_klio_function_gets_ctx_and_data_and_str_sets_payload(ctx: KlioContext) -> None:
    seen: list[Any] = []

    @d.handle_klio
    def f(c: KlioContext, item: Any) -> str:
        seen.append((c, item.element))
        return "new payload"

    out = parsed(f(msg_bytes("e1", b"old")))
    assert seen == [(ctx, b"e1")]
    assert out.data.element == b"e1" and out.data.payload == b"new payload"


def test_returning_data_clears_the_payload_as_klio_documents(ctx: KlioContext) -> None:
    # state.rst: a value equal to the `data` argument clears the payload (no nested payloads)
    @d.handle_klio()
    def same(c: KlioContext, item: Any) -> Any:
        item.payload = b"changed"
        return item

    @d.handle_klio()
    def equal_copy(c: KlioContext, item: Any) -> Any:
        copy = type(item)()
        copy.CopyFrom(item)
        return copy

    @d.handle_klio()
    def keep(c: KlioContext, item: Any) -> Any:
        return item.payload

    assert parsed(same(msg_bytes("e1", b"old"))).data.payload == b""
    assert parsed(equal_copy(msg_bytes("e1", b"old"))).data.payload == b""
    assert parsed(keep(msg_bytes("e1", b"old"))).data.payload == b"old"


def test_returning_another_data_item_is_a_bad_payload(ctx: KlioContext) -> None:
    @d.handle_klio
    def other(c: KlioContext, item: Any) -> Any:
        copy = type(item)()
        copy.element = b"someone-else"
        return copy

    out = other(msg_bytes("e1", b"old"))
    assert isinstance(out, pvalue.TaggedOutput) and out.tag == "drop"
    assert dropped(ctx.config, "bad_payload") == 1


def test_returning_none_passes_the_message_on_with_the_payload_cleared(
    ctx: KlioContext, capsys: Any
) -> None:
    # Klio's from_klio_message(kmsg, None): the message goes on, its payload cleared.
    @d.handle_klio
    def f(c: KlioContext, item: Any) -> None:
        return None

    out = f(msg_bytes("e1", b"old"))
    assert isinstance(out, bytes)
    assert parsed(out).data.element == b"e1" and parsed(out).data.payload == b""
    assert dropped(ctx.config, "filtered") == 0
    assert "ERROR" not in capsys.readouterr().err


def test_dofn_yielding_none_emits_the_message_with_the_payload_cleared(ctx: KlioContext) -> None:
    class Fn(beam.DoFn):
        @d.handle_klio
        def process(self, item: Any) -> Any:
            yield None
            yield item
            yield b"second"

    outs = list(Fn().process(msg_bytes("e1", b"old")))
    assert [parsed(o).data.payload for o in outs] == [b"", b"", b"second"]
    assert dropped(ctx.config, "filtered") == 0


def test_empty_str_or_bytes_clear_and_tagged_none_keeps_its_tag(ctx: KlioContext) -> None:
    @d.handle_klio
    def empty(c: KlioContext, item: Any) -> Any:
        return ""

    @d.handle_klio
    def tagged_none(c: KlioContext, item: Any) -> Any:
        return pvalue.TaggedOutput("later", None)

    assert parsed(empty(msg_bytes("e1", b"old"))).data.payload == b""
    out = tagged_none(msg_bytes("e1", b"old"))
    assert isinstance(out, pvalue.TaggedOutput) and out.tag == "later"
    assert parsed(out.value).data.payload == b""


def test_tagged_output_keeps_its_tag(ctx: KlioContext) -> None:
    @d.handle_klio
    def f(c: KlioContext, item: Any) -> Any:
        return pvalue.TaggedOutput("odd", b"p")

    out = f(msg_bytes("e1"))
    assert isinstance(out, pvalue.TaggedOutput) and out.tag == "odd"
    assert parsed(out.value).data.payload == b"p"


def test_exception_drops_with_logged_counted_reason(ctx: KlioContext, capsys: Any) -> None:
    @d.handle_klio
    def f(c: KlioContext, item: Any) -> Any:
        raise ValueError("bad element")

    incoming = msg_bytes("boom-1")
    out = f(incoming)
    assert isinstance(out, pvalue.TaggedOutput) and out.tag == "drop" and out.value == incoming
    assert dropped(ctx.config, "run_error") == 1
    err = capsys.readouterr().err
    # Klio's line (the message as protobuf text), the element id on the record, the counted reason
    assert "[boom-1] Dropping KlioMessage - exception occurred when calling '" in err
    assert 'element: "boom-1"' in err and "Error: bad element" in err


def test_bytes_that_are_not_a_message_drop_as_decode_error(
    ctx: KlioContext, capsys: Any
) -> None:
    @d.handle_klio
    def f(c: KlioContext, item: Any) -> Any:
        raise AssertionError("must not run")

    out = f(b"\xff\xfe not a klio message")
    assert out.tag == "drop"
    assert dropped(ctx.config, "decode_error") == 1
    # Klio's two lines: its parser's hint, then the decorator's
    err = capsys.readouterr().err
    assert "Can not parse incoming message. To support non-Klio messages, add" in err
    assert (
        "Dropping KlioMessage - exception occurred when serializing "
        "'b'\\xff\\xfe not a klio message'' from bytes to a KlioMessage.\nError: " in err
    )


def test_unusable_return_value_drops_as_bad_payload_with_klios_lines(
    ctx: KlioContext, caplog: pytest.LogCaptureFixture
) -> None:
    @d.handle_klio
    def f(c: KlioContext, item: Any) -> Any:
        return 42

    @d.handle_klio
    def empty(c: KlioContext, item: Any) -> Any:
        return []  # empty, so the payload is cleared (as Klio's `if not payload`)

    with caplog.at_level("ERROR", logger="klio"):
        assert f(msg_bytes("e1")).tag == "drop"
    assert dropped(ctx.config, "bad_payload") == 1
    line = next(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert line.startswith("Dropping KlioMessage - exception occurred when deserializing '")
    assert (
        "' from a KlioMessage to bytes.\nError: Returned payload could not be coerced to " in line
    )
    assert "`bytes`.\nErroring payload: 42\nErroring KlioMessage: " in line
    assert parsed(empty(msg_bytes("e2", b"old"))).data.payload == b""


def test_only_a_v2_message_takes_the_returned_payload_as_in_klio(ctx: KlioContext) -> None:
    # Klio's from_klio_message sets the payload of a V2 message only: a V1 or untagged one
    # passes on with its own, whatever the function returned (nothing is dropped for it)
    v1 = KlioMessage(version=V1)
    v1.data.entity_id = "e1"
    v1.data.payload = b"theirs"
    untagged = KlioMessage()  # both ids: Klio leaves it untagged, and routes it as V1
    untagged.data.entity_id = "e2"
    untagged.data.element = b"e2"
    untagged.data.payload = b"theirs"
    to_return: list[Any] = []

    @d.handle_klio
    def returns(c: KlioContext, item: Any) -> Any:
        return to_return[0]

    class Yields(beam.DoFn):
        @d.handle_klio
        def process(self, item: Any) -> Any:
            yield {"not": "bytes"}
            yield b"new"

    for message in (v1, untagged):
        incoming = message.SerializeToString()
        for result in ({"not": "bytes"}, 42, b"new", "new", None):
            to_return[:] = [result]
            assert parsed(returns(incoming)).data.payload == b"theirs", (message, result)
        to_return[:] = [pvalue.TaggedOutput("side", 42)]
        tagged = returns(incoming)
        assert tagged.tag == "side" and parsed(tagged.value).data.payload == b"theirs"
        yielded = list(Yields().process(incoming))
        assert [parsed(o).data.payload for o in yielded] == [b"theirs"] * 2
    assert dropped(ctx.config, "bad_payload") == 0


def test_dofn_process_may_yield_several_and_gets_self_klio(ctx: KlioContext) -> None:
    class Split(beam.DoFn):
        @d.handle_klio
        def process(self, item: Any) -> Any:
            assert self._klio is ctx
            yield b"a"
            yield pvalue.TaggedOutput("other", b"b")

    outs = list(Split().process(msg_bytes("e1")))
    assert parsed(outs[0]).data.payload == b"a"
    assert outs[1].tag == "other" and parsed(outs[1].value).data.payload == b"b"


def test_expand_only_sets_context(ctx: KlioContext) -> None:
    class Composite(beam.PTransform):  # type: ignore[type-arg]
        @d.handle_klio
        def expand(self, pcoll: Any) -> Any:
            return (self._klio, pcoll)

    assert Composite().expand("pcoll") == (ctx, "pcoll")


def test_underscore_aliases_and_context_decorators(ctx: KlioContext) -> None:
    class Thing:
        @d._set_klio_context
        def meth(self) -> Any:
            return self._klio

        @d.inject_klio_context
        def injected(self, c: KlioContext, x: int) -> Any:
            return (c, x)

    assert Thing().meth() is ctx
    assert Thing().injected(3) == (ctx, 3)

    @d.inject_klio_context
    @d.serialize_klio_message
    def f(c: KlioContext, item: Any) -> bytes:
        return item.element + b"!"

    assert parsed(f(msg_bytes("e1"))).data.payload == b"e1!"
    assert d._handle_klio is not None


def test_timeout_kills_runaway_work_and_its_children(ctx: KlioContext, tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"

    @d.handle_klio
    @d.timeout(seconds=0.5)
    def slow(c: KlioContext, item: Any) -> Any:
        proc = subprocess.Popen(["sleep", "60"])
        pid_file.write_text(str(proc.pid))
        while True:  # a runaway loop: a thread could never be stopped
            pass

    start = time.monotonic()
    out = slow(msg_bytes("slow-1"))
    assert time.monotonic() - start < 5
    assert out.tag == "drop" and dropped(ctx.config, "timeout") == 1
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild):
        assert time.monotonic() < deadline, "the timed-out function's child survived"
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_timeout_returns_results_and_raises_errors_from_the_child() -> None:
    @d.timeout(seconds=5)
    def ok(x: int) -> int:
        return x * 2

    @d.timeout(seconds=5)
    def gen(x: int) -> Any:
        yield x
        yield x + 1

    @d.timeout(seconds=5)
    def bad() -> None:
        raise KeyError("inner")

    assert ok(21) == 42
    assert list(gen(1)) == [1, 2]
    with pytest.raises(KeyError) as info:
        bad()
    assert "inner" in getattr(info.value, "_klio_traceback", "")


@pytest.mark.parametrize("seconds", [1e10, float("inf")])
def test_a_time_limit_longer_than_the_os_waits_is_no_limit(seconds: float) -> None:
    # the OS waits at most ~24 days at once: a longer limit overflowed in every element
    @d.timeout(seconds=seconds)
    def add_one(x: int) -> int:
        return x + 1

    assert add_one(1) == 2


@pytest.mark.parametrize("seconds", [0, -1, "soon"])
def test_timeout_rejects_bad_seconds(seconds: Any) -> None:
    with pytest.raises(RuntimeError, match="seconds"):
        d.timeout(seconds=seconds)


def test_retry_tries_then_raises_retries_exhausted() -> None:
    calls: list[int] = []

    @d.retry(tries=3, delay=0.01)
    def flaky() -> None:
        calls.append(1)
        raise OSError("again")

    with pytest.raises(d.KlioRetriesExhausted) as info:
        flaky()
    assert len(calls) == 3 and isinstance(info.value.__cause__, OSError)


def test_retry_succeeds_later_and_only_retries_listed_exceptions() -> None:
    attempts = iter([OSError("1"), None])

    @d.retry(tries=5, exception=OSError)
    def second_time() -> str:
        err = next(attempts)
        if err:
            raise err
        return "ok"

    @d.retry(tries=5, exception=OSError)
    def wrong_kind() -> None:
        raise ValueError("not retried")

    assert second_time() == "ok"
    with pytest.raises(ValueError):
        wrong_kind()


def test_retry_needs_parentheses_and_valid_arguments() -> None:
    with pytest.raises(RuntimeError, match="parentheses"):
        d.retry(lambda: None)
    with pytest.raises(RuntimeError, match="tries"):
        d.retry(tries=0)
    with pytest.raises(RuntimeError, match="delay"):
        d.retry(delay=-1)


def test_retry_exhausted_under_handle_klio_is_a_counted_drop(ctx: KlioContext) -> None:
    @d.handle_klio
    @d.retry(tries=2)
    def f(c: KlioContext, item: Any) -> Any:
        raise OSError("down")

    assert f(msg_bytes("e1")).tag == "drop"
    assert dropped(ctx.config, "retries_exhausted") == 1


def test_thread_limit_bounds_concurrency() -> None:
    bound(make_config({"thread_pool_size": 2}))
    active, peak, lock = [0], [0], threading.Lock()

    @d.handle_klio
    def f(c: KlioContext, item: Any) -> Any:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return item

    threads = [threading.Thread(target=f, args=(msg_bytes(f"e{i}"),)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert peak[0] == 2


def test_profile_only_marks_the_function_no_effect_on_a_run(ctx: KlioContext) -> None:
    # Klio: "When running/testing a job normally and not profiling, this decorator has no effect."
    def work() -> int:
        return 7

    class Fn(beam.DoFn):
        @d.handle_klio
        @d.profile()
        def process(self, item: Any) -> Any:
            yield item

    assert d.profile(work) is work and work() == 7
    assert getattr(work, d.PROFILE_MARK) is True
    assert [parsed(o).data.element for o in Fn().process(msg_bytes("e1"))] == [b"e1"]


def test_profile_wraps_with_the_active_profiler_keeping_the_method_a_method(
    ctx: KlioContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `klio job profile` sets the profiler before the job's modules (and decorators) load.
    calls: list[str] = []

    def profiler(func: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            calls.append(func.__name__)
            return func(*args, **kwargs)

        return timed

    monkeypatch.setattr(d, "ACTIVE_PROFILER", profiler)

    class Fn(beam.DoFn):
        @d.handle_klio
        @d.profile
        def process(self, item: Any) -> Any:
            yield item

    @d.handle_klio
    @d.profile
    def work(ctx: Any, item: Any) -> Any:
        return item

    assert [parsed(o).data.element for o in Fn().process(msg_bytes("e1"))] == [b"e1"]
    assert parsed(work(msg_bytes("e2"))).data.element == b"e2"
    assert calls == ["process", "work"]


def test_logger_shows_info_by_default_debug_when_the_job_asks_and_escapes_ids(
    ctx: KlioContext, capsys: Any
) -> None:
    @d.handle_klio
    def f(c: KlioContext, item: Any) -> Any:
        c.logger.info("info line")
        c.logger.debug("debug line")
        return item

    f(msg_bytes("elem-7"))
    err = capsys.readouterr().err
    assert "[elem-7] info line" in err and "debug line" not in err
    ctx.logger.setLevel(logging.DEBUG)
    try:
        f(msg_bytes("elem-8"))
    finally:
        ctx.logger.setLevel(logging.INFO)
    assert "[elem-8] debug line" in capsys.readouterr().err
    # a control character in the id is escaped: it cannot start a forged line of its own
    f(msg_bytes("a\n2026-01-01 00:00:00,000 INFO klio [b] forged"))
    err = capsys.readouterr().err
    assert "[a\\n2026-01-01 00:00:00,000 INFO klio [b] forged] info line" in err
    assert len(err.strip().splitlines()) == 1


def test_job_config_timeout_and_retries_apply_to_every_element() -> None:
    ctx = bound(make_config({"timeout_seconds": 0.5, "retries": 1}))
    calls: list[str] = []

    @d.handle_klio
    def f(c: KlioContext, item: Any) -> Any:
        if item.element == b"slow":
            time.sleep(30)
        return item

    @d.handle_klio
    def always_fails(c: KlioContext, item: Any) -> Any:
        calls.append("x")  # runs in the forked child: the parent's list stays empty
        raise OSError("down")

    start = time.monotonic()
    assert parsed(f(msg_bytes("fine"))).data.element == b"fine"
    assert f(msg_bytes("slow")).tag == "drop"
    assert time.monotonic() - start < 5  # 2 tries x 0.5 s, not 30 s
    assert dropped(ctx.config, "retries_exhausted") == 1
    assert always_fails(msg_bytes("e")).tag == "drop" and calls == []
    assert dropped(ctx.config, "retries_exhausted") == 2


def _kmsg(ctx: KlioContext, name: str, transform: str) -> float:
    return process_hub().value(f"{ctx.metrics.prefix}_{name}", transform=transform)


def test_klios_per_transform_metrics_count_each_decorated_function(ctx: KlioContext) -> None:
    # Klio's documented decorator metrics: kmsg-received, -success, -drop-error, -timer
    @d.handle_klio
    def picky(c: KlioContext, item: Any) -> Any:
        if item.element == b"bad":
            raise ValueError("no")
        return item

    for element in ("a", "bad", "b"):
        picky(msg_bytes(element))
    ctx.metrics.flush()  # as the job's DoFns do at the end of each bundle
    where = "test_klios_per_transform_metrics_count_each_decorated_function.<locals>.picky"
    assert _kmsg(ctx, "kmsg_received_total", where) == 3
    assert _kmsg(ctx, "kmsg_success_total", where) == 2
    assert _kmsg(ctx, "kmsg_drop_error_total", where) == 1
    assert _kmsg(ctx, "kmsg_timer_seconds_count", where) == 3
    job = ctx.config.job_name
    processing = process_hub().value("klio_messages_processing_seconds_count", job=job)
    assert processing == 3


def test_a_generator_counts_a_success_per_item_and_keeps_items_yielded_before_it_raised(
    ctx: KlioContext,
) -> None:
    # Klio's generator path: kmsg-success per yielded item; on an error, what was yielded is
    # handed on and the element is dropped too
    class Split(beam.DoFn):
        @d.handle_klio
        def process(self, item: Any) -> Any:
            yield b"first"
            if item.element == b"bad":
                raise ValueError("no second")
            yield b"second"

    split = Split()
    good = list(split.process(msg_bytes("ok")))
    assert [parsed(o).data.payload for o in good] == [b"first", b"second"]
    *made, last = list(split.process(msg_bytes("bad")))
    assert [parsed(o).data.payload for o in made] == [b"first"]
    assert last.tag == "drop" and parsed(last.value).data.element == b"bad"
    ctx.metrics.flush()
    where = "test_a_generator_counts_a_success_per_item_and_keeps_items_yielded_before_it_raised"
    where += ".<locals>.Split.process"
    assert _kmsg(ctx, "kmsg_received_total", where) == 2
    assert _kmsg(ctx, "kmsg_success_total", where) == 3
    assert _kmsg(ctx, "kmsg_drop_error_total", where) == 1
    assert dropped(ctx.config, "run_error") == 1


def test_a_yielded_item_that_cannot_be_a_payload_is_dropped_alone(ctx: KlioContext) -> None:
    # Klio converts each yielded item on its own: one that cannot become the payload is
    # dropped (logged, counted), the items around it go on
    class Mixed(beam.DoFn):
        @d.handle_klio
        def process(self, item: Any) -> Any:
            yield b"one"
            yield 5
            yield b"three"

    out = list(Mixed().process(msg_bytes("mixed")))
    kept = [o for o in out if not isinstance(o, pvalue.TaggedOutput)]
    assert [parsed(o).data.payload for o in kept] == [b"one", b"three"]
    (bad,) = [o for o in out if isinstance(o, pvalue.TaggedOutput)]
    assert bad.tag == "drop" and parsed(bad.value).data.element == b"mixed"
    assert dropped(ctx.config, "bad_payload") == 1


def test_retry_and_timeout_count_klios_metrics_and_log_each_retry(
    ctx: KlioContext, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING, logger="klio")

    @d.handle_klio
    @d.retry(tries=3)
    def flaky(c: KlioContext, item: Any) -> Any:
        raise OSError("down")

    @d.handle_klio
    @d.timeout(seconds=0.2)
    def slow(c: KlioContext, item: Any) -> Any:
        time.sleep(30)

    assert flaky(msg_bytes("e1")).tag == "drop" and slow(msg_bytes("e2")).tag == "drop"
    retried = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Retrying")]
    prefix = "test_retry_and_timeout_count_klios_metrics_and_log_each_retry.<locals>"
    assert retried == [  # Klio's line, its trailing space too
        f"Retrying KlioMessage - attempt {n} of 3. '{prefix}.flaky' raised an exception: down "
        for n in (1, 2)
    ]
    exhausted = [r for r in caplog.records if "retries exhausted" in r.getMessage()]
    assert [(r.levelname, r.getMessage()) for r in exhausted] == [
        (
            "ERROR",
            f"Dropping KlioMessage - retries exhausted: Function '{prefix}.flaky' has reached "
            "the maximum 3 retries. Last exception: down",
        )
    ]
    assert _kmsg(ctx, "kmsg_retry_attempt_total", f"{prefix}.flaky") == 2
    assert _kmsg(ctx, "kmsg_drop_retry_error_total", f"{prefix}.flaky") == 1
    assert _kmsg(ctx, "kmsg_drop_timed_out_total", f"{prefix}.slow") == 1


def test_retry_on_a_process_that_yields_retries_what_its_body_raises(ctx: KlioContext) -> None:
    calls: list[int] = []

    class Flaky(beam.DoFn):
        @d.handle_klio
        @d.retry(tries=3)
        def process(self, item: Any) -> Any:
            calls.append(1)
            if len(calls) < 3:
                raise OSError("not yet")  # before the first item, as a generator body runs
            yield b"first"
            yield b"second"

    out = list(Flaky().process(msg_bytes("e1")))
    assert len(calls) == 3  # retried, not dropped at the first error
    assert [parsed(o).data.payload for o in out] == [b"first", b"second"]
    assert (
        _kmsg(
            ctx,
            "kmsg_retry_attempt_total",
            "test_retry_on_a_process_that_yields_"
            "retries_what_its_body_raises.<locals>.Flaky.process",
        )
        == 2
    )


def test_thread_limiter_logs_as_klios_at_debug(caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="klio.concurrency")
    limiter = d.ThreadLimiter(2, name="Step.process")
    with limiter:
        limiter.acquire()
        limiter.release()
    assert [r.getMessage() for r in caplog.records] == [
        "KlioThreadLimiter(name=Step.process) Initial semaphore value: 2",
        "KlioThreadLimiter(name=Step.process) Blocked – waiting on semaphore for an available"
        " thread (available threads: 2)",
        "KlioThreadLimiter(name=Step.process) Blocked – waiting on semaphore for an available"
        " thread (available threads: 1)",
        "KlioThreadLimiter(name=Step.process) Released semaphore (available threads: 1)",
        "KlioThreadLimiter(name=Step.process) Released semaphore (available threads: 2)",
    ]
    assert repr(d.ThreadLimiter()).startswith("KlioThreadLimiter(id=")
    caplog.clear()
    d.ThreadLimiter(d.ThreadLimit.NONE, name="Free")
    assert caplog.messages == ["KlioThreadLimiter(name=Free) Using unlimited semaphore"]
    caplog.clear()
    pickle.loads(pickle.dumps(limiter))  # a worker's copy: announced where it was made
    assert caplog.messages == []


@pytest.mark.parametrize(
    ("settings", "unit"),
    [
        ({}, "s"),
        ({"logger": {"timer_unit": "ms"}}, "ms"),
        ({"logger": {"timer_unit": "ms"}, "native": {"timer_unit": "microseconds"}}, "us"),
        ({"timer_unit": "ns", "native": {"timer_unit": "ms"}}, "ns"),
    ],
)
def test_kmsg_timer_unit_follows_klios_precedence(settings: dict[str, Any], unit: str) -> None:
    assert kmsg_timer_unit(settings) == unit


def test_kmsg_timer_unit_unknown_is_klios_default_and_warned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Klio's clients fall back to their default unit rather than fail the job
    assert kmsg_timer_unit({"native": {"timer_unit": "fortnights"}}) == "s"
    assert any(
        "job_config.metrics.native.timer_unit: 'fortnights' is none of" in m
        for m in caplog.messages
    )


def test_thread_limiter_takes_klios_limits() -> None:
    # Klio's docs: ThreadLimiter() is the CPU count; a callable, ThreadLimit.NONE, a number
    assert d.ThreadLimiter().max_thread_count == (os.cpu_count() or 1)
    assert d.ThreadLimiter(max_thread_count=lambda: 3).max_thread_count == 3
    unlimited = d.ThreadLimiter(max_thread_count=d.ThreadLimit.NONE)
    assert unlimited.max_thread_count is None
    with unlimited, unlimited:  # never blocks
        pass
    for bad in (0, -1, "4", True):
        with pytest.raises(ValueError, match="max_thread_count must be an int > 0"):
            d.ThreadLimiter(max_thread_count=bad)  # type: ignore[arg-type]
    # Klio's enum values, and its BoundedSemaphore's refusal to be released more than taken
    assert (d.ThreadLimit.NONE.value, d.ThreadLimit.DEFAULT.value) == (0, 1)
    two = d.ThreadLimiter(max_thread_count=2)
    with two:
        pass
    with pytest.raises(ValueError, match="released too many times"):
        two.release()
