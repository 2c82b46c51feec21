"""``index.html``: the inputs and annotated outputs side by side, every prediction, and what failed.

A static page with relative links, so the output folder can be copied anywhere and opened.

Example:
    >>> html = render({"model": "m.tflite", "images": [], "failures": [{"input": "x.txt", "reason": "not an image"}],
    ...                "latency": {}, "delegate": "XNNPACK"})
    >>> "not an image" in html
    True
"""

from __future__ import annotations

import html as _html
import json


def _e(text) -> str:
    return _html.escape(str(text), quote=True)


def conversions_line(record: dict) -> str:
    """The small caption line saying how a picture was converted for the model ('' when it was not).

    Args:
        record: one image's record of ``predictions.json`` (its ``conversions`` list is read).

    Returns:
        An HTML ``<div>`` string, or ``""``.

    Example:
        >>> conversions_line({"conversions": ["grayscale → RGB", "EXIF rotated 90°"]})
        '<div class=conv>converted: grayscale → RGB; EXIF rotated 90°</div>'
        >>> conversions_line({"conversions": []})
        ''
    """
    notes = record.get("conversions") or []
    return f"<div class=conv>converted: {_e('; '.join(notes))}</div>" if notes else ""


def render(predictions: dict) -> str:
    """The gallery page for a ``predictions.json`` document.

    Args:
        predictions: the ``predictions.json`` document (``model``, ``images``, ``failures``, ``latency``, ...).

    Returns:
        The complete HTML page, a string.

    Example:
        >>> render({"model": "m", "images": [], "failures": [], "latency": {}, "delegate": ""}).startswith("<!doctype html>")
        True
    """
    lat = predictions.get("latency") or {}
    rows = []
    for rec in predictions["images"]:
        tasks = {k: {kk: vv for kk, vv in v.items() if kk != "mask_png"} for k, v in rec["tasks"].items()}
        truth = rec.get("truth")
        rows.append(
            "<figure>"
            f"<div class=pair><a href='{_e(rec['input_view'])}'><img src='{_e(rec['input_view'])}' alt='input'></a>"
            f"<a href='{_e(rec['annotated'])}'><img src='{_e(rec['annotated'])}' alt='annotated'></a></div>"
            f"<figcaption><b>{_e(rec['input'])}</b> ({rec['size'][0]}x{rec['size'][1]}, {rec['latency_ms']:.2f} ms)"
            f"{conversions_line(rec)}"
            f"<pre>{_e(json.dumps(tasks, indent=1))}</pre>"
            + (f"<details><summary>ground truth</summary><pre>{_e(json.dumps(truth, indent=1))}</pre></details>" if truth else "")
            + "</figcaption></figure>"
        )
    failures = "".join(f"<li><code>{_e(f['input'])}</code>: {_e(f['reason'])}</li>" for f in predictions["failures"])
    summary = (
        f"{len(predictions['images'])} image(s) run, {len(predictions['failures'])} refused. "
        f"Latency: first {lat.get('first_ms', '-')} ms, median {lat.get('median_ms', '-')} ms, "
        f"p90 {lat.get('p90_ms', '-')} ms, {lat.get('images_per_s', '-')} images/s. Delegate: {_e(predictions.get('delegate', ''))}."
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>mtl-keras demo: {_e(predictions['model'])}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; background: #fafafa; }}
figure {{ display: inline-block; vertical-align: top; margin: 0 1em 1.5em 0; background: #fff; padding: .5em; border: 1px solid #ddd; }}
.pair img {{ height: 320px; margin-right: .3em; image-rendering: auto; }}
pre {{ font-size: 11px; max-width: 640px; max-height: 220px; overflow: auto; background: #f4f4f4; }}
.fail {{ color: #a00; }}
.conv {{ color: #666; font-size: 12px; }}
</style></head>
<body>
<h1>mtl-keras demo</h1>
<p>Model <code>{_e(predictions['model'])}</code> ({_e(predictions.get('mode', ''))}). {summary}</p>
{'<h2 class=fail>Refused inputs</h2><ul>' + failures + '</ul>' if failures else ''}
{''.join(rows)}
</body></html>
"""
