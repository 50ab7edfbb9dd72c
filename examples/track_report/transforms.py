"""track-report: one HTML page per track from its two parents' outputs.

Data input 0 is the spectrogram PNG (spectrograms), data input 1 the loudness JSON (loudness);
the runtime runs this only once both exist. The page embeds the PNG (a data: URL, so the page
stands alone), links both source objects and lists the loudness numbers. The title is the job's
config key ``report_title``.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from klio.transforms import decorators
from klio_runtime.context import KlioContext
from klio_runtime.io.storage import DataStore

LEVELS = (
    ("RMS level", "rms_dbfs", "dBFS"),
    ("Peak level", "peak_dbfs", "dBFS"),
    ("Duration", "duration_seconds", "s"),
    ("Sample rate", "sample_rate", "Hz"),
)


def _value(facts: dict[str, Any], key: str, unit: str) -> str:
    value = facts.get(key)
    return "−∞ " + unit if value is None and unit == "dBFS" else f"{value} {unit}"


def render_report(
    element: str, title: str, png: bytes, png_path: str, loudness: dict[str, Any],
    loudness_path: str,
) -> str:
    """The page: a standalone HTML document (everything escaped)."""
    esc = html.escape
    rows = "\n".join(
        f"      <tr><th>{esc(label)}</th><td>{esc(_value(loudness, key, unit))}</td></tr>"
        for label, key, unit in LEVELS
    )
    image = base64.b64encode(png).decode("ascii")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{esc(title)}: {esc(element)}</title>
</head>
<body>
  <h1>{esc(title)}: {esc(element)}</h1>
  <h2>Mel spectrogram</h2>
  <img alt="mel spectrogram of {esc(element)}" src="data:image/png;base64,{image}">
  <p>From <a href="{esc(png_path)}">{esc(png_path)}</a></p>
  <h2>Loudness</h2>
  <table>
{rows}
  </table>
  <p>From <a href="{esc(loudness_path)}">{esc(loudness_path)}</a></p>
</body>
</html>
"""


def _link(path: str) -> str:
    """Where a report links to: a local path made absolute (the job runs in its own directory,
    the report is opened from elsewhere), a gs:// one as it is."""
    return path if "://" in path else os.path.abspath(path)


class WriteReport(beam.DoFn):
    """Reads ``<input 0>/<id>.png`` and ``<input 1>/<id>.json``, writes ``<output>/<id>.html``."""

    _klio: KlioContext  # set by handle_klio

    def setup(self) -> None:
        self._store = DataStore()

    @decorators.handle_klio
    def process(self, item: Any) -> Iterator[Any]:
        element = item.element.decode("utf-8")
        config = self._klio.config.job_config
        inputs = config.data.inputs
        if len(inputs) != 2:
            raise ValueError(
                f"job_config.data.inputs: track-report needs 2 (spectrogram PNG, loudness JSON), "
                f"got {len(inputs)}"
            )
        png_path, json_path = inputs[0].path_for(element), inputs[1].path_for(element)
        try:
            loudness = json.loads(self._store.read_bytes(json_path))
        except json.JSONDecodeError as err:
            raise ValueError(f"{json_path}: not JSON ({err})") from err
        page = render_report(
            element, str(getattr(config, "report_title", "Track report")),
            self._store.read_bytes(png_path), _link(png_path), loudness, _link(json_path),
        )
        self._store.write_bytes(config.data.outputs[0].path_for(element), page.encode("utf-8"))
        self._klio.logger.info("report of %s written", element)
        yield item
