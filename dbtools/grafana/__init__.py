"""Grafana: the dashboard (``dashboard``) and the alert rules (``alerts``) provisioned from the
monitoring tables, their panels' SQL over ``request_metrics`` from ``dbtools.store``; the
thresholds are verify's. Beside the report, never inside it: the report reads windows, Grafana
reads the tables live."""
