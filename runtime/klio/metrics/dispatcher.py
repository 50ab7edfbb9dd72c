"""``klio.metrics.dispatcher``: the types of the metrics ``ctx.metrics`` makes."""

from klio_runtime.metrics import Counter as CounterDispatcher
from klio_runtime.metrics import Gauge as GaugeDispatcher
from klio_runtime.metrics import Timer as TimerDispatcher
from klio_runtime.metrics import _Metric as BaseMetricDispatcher

__all__ = ["BaseMetricDispatcher", "CounterDispatcher", "GaugeDispatcher", "TimerDispatcher"]
