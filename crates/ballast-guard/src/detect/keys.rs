//! Hashing keys: when a source sees a hashing pool's keys (nginx's access log carrying the
//! key's variables), what the keys themselves do to its shares. A hash on a key with few
//! values (every client behind one proxy address, a header with one value) sends most of the
//! traffic to one server, and the balancer is doing exactly what its algorithm says: the
//! cause is the key, so it is `PoolKeyConcentrated` (the keys predict the skew), while
//! `PoolSkewed` judges the balancer's fidelity to the keys (`distribution`, on the predicted
//! shares). Pools whose keys are not visible keep `PoolSkewed` with its wider band.

use ballast_core::distribution::evenness;
use ballast_core::sample::{PoolSample, Promise, Sample};

use super::distribution::{Candidate, Thresholds, candidates};
use super::{Finding, Layer, Level, RuleSpec, Text, by_name, figures, percent, pool_series};

pub const POOL_KEY_CONCENTRATED: &str = "PoolKeyConcentrated";

/// The largest share of a window's requests whose key the source did not see for the keys
/// to stand for the pool's traffic.
const MAX_UNSEEN_SHARE: f64 = 0.01;

/// The rules this detector raises.
pub const RULES: &[RuleSpec] = &[RuleSpec {
    alertname: POOL_KEY_CONCENTRATED,
    layer: Layer::Distribution,
    for_ms: 2_000,
    meaning: "A hashing pool's keys, as the load balancer's own hash places them, send one \
              server more than its weight's share (R > 1.5 warning, R > 2 critical, χ² p < \
              0.001): few key values carry most of the traffic (one client address behind a \
              proxy or NAT, a header or cookie with one value). The balancer does what its \
              algorithm says; the cause is the key. The hot server is the `server` label, the \
              commonest key is in the description.",
    response: "Hash on a key with many values (`hash $http_x_user consistent` instead of the \
               client address behind a proxy; `$remote_addr` from `real_ip` when a proxy is in \
               front), or balance without affinity where none is needed. If a configuration \
               change introduced the hash, revert it; `ballast simulate` the fixed file with \
               the keys of the log before deploying it.",
}];

/// The requests each candidate's keys predict over the window, aligned with `candidates`;
/// `None` unless every sample of the window carries a prediction and nearly every request's
/// key was seen.
pub(crate) fn predicted_increase(
    window: &[&PoolSample],
    candidates: &[Candidate],
    thresholds: &Thresholds,
) -> Option<Vec<u64>> {
    let (first, last) = (window.first()?, window.last()?);
    let at = |p: &PoolSample, name: &str| -> Option<u64> {
        let k = p.predicted.as_ref()?;
        let i = p.servers.iter().position(|s| s.name == name)?;
        k.requests.get(i).copied()
    };
    if window.iter().any(|p| p.predicted.is_none()) {
        return None;
    }
    let rises: Vec<u64> = candidates
        .iter()
        .map(|c| at(last, &c.now.name)?.checked_sub(at(first, &c.now.name)?))
        .collect::<Option<_>>()?;
    let total: u64 = rises.iter().sum();
    let unseen = last
        .predicted
        .as_ref()?
        .unseen
        .checked_sub(first.predicted.as_ref()?.unseen)?;
    let seen_enough = unseen as f64 <= MAX_UNSEEN_SHARE * (total + unseen) as f64;
    (total >= thresholds.min_volume && seen_enough).then_some(rises)
}

/// What holds for one load balancer's window, `window` its samples oldest first.
pub fn detect(window: &[Sample], thresholds: &Thresholds) -> Vec<Finding> {
    let mut found = Vec::new();
    let Some(now) = window.last() else {
        return found;
    };
    for (index, pool) in now.pools.iter().enumerate() {
        if pool.promise != Promise::KeyDependent || pool.predicted.is_none() {
            continue;
        }
        let series = pool_series(window, index, &pool.name);
        let candidates = candidates(&series);
        if candidates.len() < 2 {
            continue;
        }
        let Some(predicted) = predicted_increase(&series, &candidates, thresholds) else {
            continue;
        };
        let total_weight: u64 = candidates.iter().map(|c| u64::from(c.now.weight)).sum();
        let pairs: Vec<(u64, f64)> = candidates
            .iter()
            .zip(&predicted)
            .map(|(c, &p)| (p, f64::from(c.now.weight) / total_weight as f64))
            .collect();
        let e = evenness(&pairs);
        let level = if e.peak_ratio > thresholds.critical {
            Level::Critical
        } else if e.peak_ratio > thresholds.warning {
            Level::Warning
        } else {
            continue;
        };
        if e.chi2_p >= thresholds.p_value {
            continue;
        }
        let total: u64 = predicted.iter().sum();
        let (count, expected) = pairs[e.peak_index];
        let share = count as f64 / total as f64;
        let hot = &candidates[e.peak_index].now.name;
        let Some(keys) = by_name(&window[window.len() - 1].pools, index, &pool.name, |p| {
            &p.name
        })
        .and_then(|p| p.predicted.as_ref()) else {
            continue;
        };
        let top = match &keys.top_key {
            Some(k) => format!(
                "; in the last interval {} distinct value(s), the commonest `{k}` carrying {}",
                keys.distinct_keys,
                percent(keys.top_key_share)
            ),
            None => String::new(),
        };
        found.push(Finding {
            rule: POOL_KEY_CONCENTRATED,
            level,
            layer: Layer::Distribution,
            pool: Some(pool.name.clone()),
            server: Some(hot.clone()),
            text: Text::written(format!(
                "pool {} hashes on {}, whose values send {} of its requests to {hot}, {:.1}× its \
                 share of {}",
                pool.name,
                keys.key,
                percent(share),
                e.peak_ratio,
                percent(expected)
            ), format!(
                "The keys of the window's {total} requests, placed by the load balancer's own \
                 hash, send {} to {hot} against the {} its weight gives it (R = {:.2}, χ² p = \
                 {:.1e}){top}. The balancer follows its algorithm: the key has too few values.",
                percent(share),
                percent(expected),
                e.peak_ratio,
                e.chi2_p
            )),
            figures: figures(&[
                ("peak_ratio", e.peak_ratio),
                ("share", share),
                ("expected", expected),
                ("distinct_keys", keys.distinct_keys as f64),
                ("top_key_share", keys.top_key_share),
            ]),
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::distribution::{Verdict, judge};
    use crate::detect::testing::{pool, sample, server};
    use ballast_core::sample::{KeyPrediction, ServerSample};

    /// 6 samples of a hashing pool of three servers: each second server i is sent `sent[i]`
    /// and its keys predict `predicted[i]`.
    fn window(sent: [u64; 3], predicted: [u64; 3]) -> Vec<Sample> {
        (0..=5)
            .map(|t| {
                let servers: Vec<ServerSample> = (0..3)
                    .map(|i| ServerSample {
                        state_for_s: None,
                        requests: sent[i] * t,
                        ..server(&format!("app-{}", i + 1))
                    })
                    .collect();
                let mut p = pool("app", servers);
                p.promise = Promise::KeyDependent;
                p.predicted = Some(KeyPrediction {
                    key: "$http_x_tenant".into(),
                    requests: predicted.iter().map(|n| n * t).collect(),
                    unseen: 0,
                    distinct_keys: 1,
                    top_key: Some("tenant-0".into()),
                    top_key_share: 1.0,
                });
                sample(t, vec![p])
            })
            .collect()
    }

    fn verdict_of(w: &[Sample]) -> Verdict {
        let series: Vec<&PoolSample> = w.iter().map(|s| &s.pools[0]).collect();
        judge(&series, &Thresholds::default()).unwrap().verdict
    }

    #[test]
    fn one_key_value_is_the_keys_doing_not_a_skewed_balancer() {
        let w = window([0, 0, 80], [0, 0, 80]);
        let found = detect(&w, &Thresholds::default());
        assert_eq!(found.len(), 1, "{found:?}");
        let f = &found[0];
        assert_eq!(
            (f.rule, f.level, f.server.as_deref()),
            (POOL_KEY_CONCENTRATED, Level::Critical, Some("app-3"))
        );
        assert!(f.summary().contains("$http_x_tenant") && f.description().contains("`tenant-0`"));
        // The balancer sent the keys where its hash does: PoolSkewed has nothing to say.
        assert!(
            matches!(verdict_of(&w), Verdict::NotJudged { .. }),
            "{:?}",
            verdict_of(&w)
        );
    }

    #[test]
    fn the_balancer_is_judged_on_the_predicted_shares_with_the_normal_band() {
        // Keys spread evenly, and so are the requests: nothing.
        let w = window([40, 40, 40], [40, 40, 40]);
        assert!(detect(&w, &Thresholds::default()).is_empty());
        assert!(matches!(verdict_of(&w), Verdict::AsPromised { .. }));
        // The keys predict 40/40/40 but app-3 gets 70 of 120: R = 1.75 is a warning now, where the
        // wide band for hidden keys (×1.25) would have let it pass.
        let w = window([25, 25, 70], [40, 40, 40]);
        assert!(detect(&w, &Thresholds::default()).is_empty());
        assert!(
            matches!(verdict_of(&w), Verdict::Skewed { level: Level::Warning, ref server, .. } if server == "app-3"),
            "{:?}",
            verdict_of(&w)
        );
        // Keys not seen: the wide band as before.
        let mut hidden = w.clone();
        for s in &mut hidden {
            s.pools[0].predicted = None;
        }
        assert!(matches!(verdict_of(&hidden), Verdict::AsPromised { .. }));
    }

    #[test]
    fn many_requests_without_their_key_make_no_prediction() {
        let mut w = window([0, 0, 80], [0, 0, 80]);
        for (t, s) in w.iter_mut().enumerate() {
            s.pools[0].predicted.as_mut().unwrap().unseen = 10 * t as u64;
        }
        assert!(detect(&w, &Thresholds::default()).is_empty());
        // Judged as a hidden-key pool: the wide band still catches one key on three servers.
        assert!(matches!(verdict_of(&w), Verdict::Skewed { .. }));
    }
}
