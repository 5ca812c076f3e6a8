//! One pool's window reduced to what the detectors read of each server: its counters' rise
//! through the window (knowing a restart when a counter goes down), its in-flight and latency
//! figures summed over the samples, its up↔down changes, and whether it stayed in rotation.
//!
//! The distribution and error detectors both judge a pool from these figures, so a round
//! walks each server's samples once for both: at fleet scale the older samples are not in
//! cache, and the walk was most of a round (BENCHMARKS.md, the guard). A window whose samples
//! each continue the one before ([`continues`], which the watcher notes as each sample
//! arrives) is read from its two ends and its gauges alone: nothing in it went down or
//! changed state, so no step between samples needs a look.

#[cfg(test)]
use ballast_core::sample::{Counters, Gauge};
use ballast_core::sample::{PoolSample, ResponseClasses, ServerSample, ServerState};

/// How a counter behaved through the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Rise<T> {
    /// It went down: a restart; nothing to judge.
    Restarted,
    /// Seen once: no difference to take.
    Unknown,
    Rose(T),
}

/// One server through one pool's window.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServerWindow<'a> {
    /// The server in the window's latest sample, at `index` there.
    pub(crate) now: &'a ServerSample,
    pub(crate) index: usize,
    /// Its responses by class through the window.
    pub(crate) responses: Rise<ResponseClasses>,
    pub(crate) requests: Rise<u64>,
    /// Its mean reported latency over the samples that report one.
    pub(crate) latency_ms: Option<f64>,
    /// How many samples report one.
    pub(crate) latency_samples: u32,
    /// Up↔down changes between consecutive samples that list it.
    pub(crate) flaps: usize,
    /// Listed in every sample of the window, up, with a weight above 0 and in the tier it is
    /// in now: it competed for traffic throughout.
    pub(crate) in_rotation: bool,
    /// Its in-flight counts summed over the samples that list it.
    pub(crate) in_flight: u64,
    /// Its weight was not the same in every sample that lists it.
    pub(crate) weight_changed: bool,
}

/// Every server of the window's latest pool through `series` (the pool's samples, oldest
/// first), into a buffer kept across pools.
pub(crate) fn servers_into<'a>(series: &[&'a PoolSample], out: &mut Vec<ServerWindow<'a>>) {
    out.clear();
    let Some(last) = series.last() else {
        return;
    };
    let same_layout = super::same_layout(series);
    let noted = |p: &&PoolSample| {
        p.noted.gauges.len() == p.servers.len() && p.noted.counters.len() == p.servers.len()
    };
    if same_layout
        && series.len() >= 2
        && series[1..].iter().all(|p| p.noted.continues)
        && series.iter().all(noted)
    {
        steady_servers(series, out);
        return;
    }
    out.extend(
        last.servers
            .iter()
            .enumerate()
            .map(|(index, now)| server(now, index, series, same_layout)),
    );
}

/// [`servers_into`] into a new vector.
pub(crate) fn servers<'a>(series: &[&'a PoolSample]) -> Vec<ServerWindow<'a>> {
    let mut out = Vec::new();
    servers_into(series, &mut out);
    out
}

/// Server `now` (at `index` in the latest sample) through `pools`, in one pass without
/// allocating: a round over a fleet does this for every server.
fn server<'a>(
    now: &'a ServerSample,
    index: usize,
    pools: &[&'a PoolSample],
    same_layout: bool,
) -> ServerWindow<'a> {
    let mut seen = 0usize;
    let mut first: Option<&ServerSample> = None;
    let mut previous: Option<&ServerSample> = None;
    let (mut responses_fell, mut requests_fell) = (false, false);
    let (mut latency_sum, mut latency_count) = (0.0, 0u32);
    let mut flaps = 0;
    let mut in_rotation = true;
    let mut in_flight = 0u64;
    let mut weight_changed = false;
    for pool in pools {
        let Some(s) = super::server_in(pool, index, &now.name, same_layout) else {
            in_rotation = false;
            continue;
        };
        seen += 1;
        first.get_or_insert(s);
        if let Some(p) = previous {
            responses_fell |= s
                .responses
                .by_class()
                .iter()
                .zip(p.responses.by_class())
                .any(|(now, before)| *now < before);
            requests_fell |= s.requests < p.requests;
            if matches!(
                (p.state, s.state),
                (ServerState::Up, ServerState::Down) | (ServerState::Down, ServerState::Up)
            ) {
                flaps += 1;
            }
        }
        in_rotation &= s.state == ServerState::Up && s.weight > 0 && s.backup == now.backup;
        in_flight = in_flight.saturating_add(s.active);
        weight_changed |= s.weight != now.weight;
        if let Some(l) = s.counted_latency_ms() {
            latency_sum += l;
            latency_count += 1;
        }
        previous = Some(s);
    }
    let ends = match (first, previous) {
        (Some(first), Some(last)) if seen >= 2 => Some((first, last)),
        _ => None,
    };
    let responses = match ends {
        None => Rise::Unknown,
        Some(_) if responses_fell => Rise::Restarted,
        Some((first, last)) => {
            Rise::Rose(rise(first.responses.by_class(), last.responses.by_class()))
        }
    };
    let requests = match ends {
        None => Rise::Unknown,
        Some(_) if requests_fell => Rise::Restarted,
        Some((first, last)) => Rise::Rose(last.requests - first.requests),
    };
    ServerWindow {
        now,
        index,
        responses,
        requests,
        latency_ms: (latency_count > 0).then(|| latency_sum / f64::from(latency_count)),
        latency_samples: latency_count,
        flaps,
        in_rotation,
        in_flight,
        weight_changed,
    }
}

/// Whether `current` continues `previous`, the pool's sample just before it: the same
/// servers at the same places, none of whose counters went down and none of whose state,
/// weight or tier changed. Read once as a sample arrives, from the two samples' noted
/// counters (`false` where either has none); a window of such samples is then reduced from
/// its ends ([`servers_into`]).
pub(crate) fn continues(previous: &PoolSample, current: &PoolSample) -> bool {
    let (before, now) = (&previous.noted, &current.noted);
    before.layout != 0
        && before.layout == now.layout
        && before.counters.len() == previous.servers.len()
        && now.counters.len() == current.servers.len()
        && before.counters.len() == now.counters.len()
        && now
            .counters
            .iter()
            .zip(&before.counters)
            .all(|(now, before)| now.continue_from(before))
}

/// [`servers_into`] for a window whose samples each continue the one before: every server is
/// listed throughout at its place, its counters rose from the first sample to the last, no
/// state, weight or tier changed; only its in-flight counts and latencies are summed, from
/// each sample's compact gauges, in the order the general walk adds them, so the figures are
/// the same to the bit.
fn steady_servers<'a>(series: &[&'a PoolSample], out: &mut Vec<ServerWindow<'a>>) {
    let (first, last) = (series[0], series[series.len() - 1]);
    let ends = last.noted.counters.iter().zip(&first.noted.counters);
    out.extend(
        last.servers
            .iter()
            .zip(ends)
            .enumerate()
            .map(|(index, (now, (ended, began)))| {
                ServerWindow {
                    now,
                    index,
                    responses: Rise::Rose(rise(began.responses, ended.responses)),
                    requests: Rise::Rose(ended.requests - began.requests),
                    // The sum, until every sample is read.
                    latency_ms: Some(0.0),
                    latency_samples: 0,
                    flaps: 0,
                    in_rotation: ended.state == ServerState::Up && ended.weight > 0,
                    in_flight: 0,
                    weight_changed: false,
                }
            }),
    );
    for pool in series {
        for (w, g) in out.iter_mut().zip(&pool.noted.gauges) {
            w.in_flight = w.in_flight.saturating_add(g.active);
            if g.latency_ms >= 0.0
                && let Some(sum) = &mut w.latency_ms
            {
                *sum += g.latency_ms;
                w.latency_samples += 1;
            }
        }
    }
    for w in out.iter_mut() {
        w.latency_ms = w
            .latency_ms
            .filter(|_| w.latency_samples > 0)
            .map(|sum| sum / f64::from(w.latency_samples));
    }
}

/// The responses by class between two counts of them (in `ResponseClasses::by_class` order),
/// the later not below the earlier in any class.
fn rise(before: [u64; 6], after: [u64; 6]) -> ResponseClasses {
    ResponseClasses::from_classes(std::array::from_fn(|i| after[i] - before[i]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::{pool, server};

    /// A tiny deterministic generator (xorshift).
    struct Noise(u64);

    impl Noise {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n.max(1)
        }
    }

    /// Six samples of a pool of 12 servers whose counters rise by random steps, with random
    /// in-flight counts and latencies (some missing, some infinite), the layout and
    /// continuity taken as the watcher takes them.
    fn series(noise: &mut Noise) -> Vec<PoolSample> {
        let mut servers: Vec<ServerSample> = (0..12)
            .map(|i| {
                let mut s = server(&format!("s{i}"));
                s.weight = 1 + (i % 3) as u32;
                s.backup = i == 11;
                s.state = if i == 7 {
                    ServerState::Down
                } else {
                    ServerState::Up
                };
                s
            })
            .collect();
        let mut out: Vec<PoolSample> = Vec::new();
        for _ in 0..6 {
            for s in &mut servers {
                let ok = noise.below(300);
                let bad = noise.below(20);
                s.requests += ok + bad;
                s.responses.c2xx += ok;
                s.responses.c5xx += bad;
                s.active = noise.below(40);
                s.latency_ms = match noise.below(10) {
                    0 => None,
                    1 => Some(f64::INFINITY),
                    n => Some(n as f64 * 3.7 + noise.below(100) as f64 / 7.0),
                };
            }
            out.push(pool("app", servers.clone()));
        }
        note_arrivals(&mut out);
        out
    }

    fn note_arrivals(series: &mut [PoolSample]) {
        for p in series.iter_mut() {
            p.noted.layout = p.servers_layout();
            p.noted.gauges = p.servers.iter().map(Gauge::of).collect::<Vec<_>>().into();
            p.noted.counters = p
                .servers
                .iter()
                .map(Counters::of)
                .collect::<Vec<_>>()
                .into();
        }
        for i in 0..series.len() {
            let continued = i > 0 && continues(&series[i - 1], &series[i]);
            series[i].noted.continues = continued;
        }
    }

    /// Every server through the general walk, whatever the samples say of their continuity.
    fn walked<'a>(series: &[&'a PoolSample]) -> Vec<ServerWindow<'a>> {
        let last = series[series.len() - 1];
        let same = crate::detect::same_layout(series);
        last.servers
            .iter()
            .enumerate()
            .map(|(i, now)| super::server(now, i, series, same))
            .collect()
    }

    #[test]
    fn a_continuous_window_read_from_its_ends_gives_the_walks_figures() {
        let mut noise = Noise(0x2545_f491_4f6c_dd1d);
        for _ in 0..200 {
            let samples = series(&mut noise);
            let refs: Vec<&PoolSample> = samples.iter().collect();
            assert!(refs[1..].iter().all(|p| p.noted.continues));
            let mut read = Vec::new();
            servers_into(&refs, &mut read);
            assert_eq!(read, walked(&refs));
        }
    }

    #[test]
    fn a_break_anywhere_in_the_window_is_walked() {
        type Break = fn(&mut ServerSample);
        let breaks: [Break; 5] = [
            |s| s.requests = 0,
            |s| s.responses.c2xx = 0,
            |s| s.state = ServerState::Drain,
            |s| s.weight += 1,
            |s| s.backup = !s.backup,
        ];
        let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
        for round in 0..100 {
            let mut samples = series(&mut noise);
            let at = 1 + noise.below(5) as usize;
            let who = noise.below(12) as usize;
            breaks[round % breaks.len()](&mut samples[at].servers[who]);
            note_arrivals(&mut samples);
            assert!(!samples[at].noted.continues, "break {} at {at}", round % 5);
            let refs: Vec<&PoolSample> = samples.iter().collect();
            let mut read = Vec::new();
            servers_into(&refs, &mut read);
            assert_eq!(read, walked(&refs));
        }
    }
}
