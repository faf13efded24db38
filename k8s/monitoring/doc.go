// Package monitoring holds the sidecar's Prometheus alerts (rules.yaml and
// the PrometheusRule generated from it), their promtool unit tests
// (tests.yaml) and a Grafana dashboard (dashboard.json). It has no code: its
// tests check those files against each other, against the metrics the
// sidecar's source registers and, given -sidecar, against a live /metrics.
// See README.md in this directory; bash .ci/monitoring runs everything.
package monitoring
