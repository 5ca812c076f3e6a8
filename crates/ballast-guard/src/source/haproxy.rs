//! HAProxy as a source: the stats socket (`show stat`, `show info`, `show servers state`), the
//! stats page's CSV and the built-in Prometheus exporter. Columns are read by header.
