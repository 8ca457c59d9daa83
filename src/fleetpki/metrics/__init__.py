"""Prometheus metrics (docs/metrics.md): what the running server counts and measures, and the
`GET /metrics` endpoint of the admin listener.

- registry.py: the counters and the request-latency histogram, and the RA observer that feeds
  the counters (the RA itself never imports prometheus_client: ra/observer.py);
- collector.py: gauges read from the store at scrape time (expiring certificates, CRL and
  OCSP responder freshness, the audit log's head);
- http.py: the latency middleware of each listener, and the scrape endpoint;
- process.py: `fleetpki serve`'s worker processes share their counts through files
  (prometheus_client's multiprocess mode), set up by the parent before it forks.
"""
