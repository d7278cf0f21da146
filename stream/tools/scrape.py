"""A worker's ``/metrics``, read as samples: what the demo's live view and the bench read.

Its own module (not the demo's) so that the bench, which ``stream engine-profile`` imports too,
does not pull in the demo's terminal UI.
"""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Samples", "scrape", "total"]

#: metric sample name -> (labels, value) of every sample with that name
Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(url: str, token: bytes | None = None, timeout: float = 2.0) -> Samples:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", "Bearer " + token.decode())
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        v for lab, v in samples.get(name, []) if all(lab.get(k) == x for k, x in labels.items())
    )
