"""``sidetune serve``: a local web app for live grounding and for browsing predictions.

``browser``: the prediction browser's data (metrics, per-query rows, failure kinds);
``live``: live-grounding jobs around :class:`sidetune.grounding.inference.Grounder`;
``files``: allowed directories and uploads; ``defaults``: what a ``make demo`` run brings;
``server``: the Starlette routes; ``static/``: the page (plain HTML/JS/CSS, no CDN).
"""
