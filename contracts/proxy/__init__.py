"""`stemmock proxy`: real traffic judged against the specs, drift reported, recordings turned into examples.

- `drift.py`      where an answer or a callback differs from the spec (pure)
- `report.py`     the drift log: per operation counts, samples, the summary table and JSON
- `recording.py`  the JSON-lines recording, and `stemmock examples import` (recording -> overlay)
- `server.py`     the proxy itself: validate, forward, validate, hand back; the callback relay
- `cli.py`        `stemmock proxy`
"""
