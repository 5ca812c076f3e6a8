//! `ballast rules prometheus`: recording and alerting rules computing the guard's distribution,
//! saturation and reload signals from HAProxy's exporter metrics and from ballast's own.
