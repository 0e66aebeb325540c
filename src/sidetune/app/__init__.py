"""``sidetune serve``: a local web app for live grounding and for browsing predictions.

``browser`` holds the prediction browser's data (metrics, per-query rows, failure kinds);
``live`` the live-grounding jobs around :class:`sidetune.grounding.inference.Grounder`;
``server`` the Starlette routes; ``static/`` the page (plain HTML/JS/CSS, no CDN).
"""
