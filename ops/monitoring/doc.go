// Package monitoring holds what a Prometheus and Grafana set-up needs to
// watch the metrics of keepalive exporter (package metrics): alerts.yml,
// the alerting rules, with their unit tests in alerts_test.yml, and
// dashboard.json, a Grafana dashboard. It has no Go API; its tests check
// the files with promtool and against the metrics the exporter exports.
package monitoring
