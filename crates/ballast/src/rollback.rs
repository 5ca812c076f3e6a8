//! The canary inside `serve`: the guard's thread hands it every round's outcome; after each
//! applied reload it runs `ballast_guard::canary` for the `[rollback]` window and, on a revert,
//! asks the proxy to re-apply the previous configuration (the proxy's reload path), with the
//! evidence and the diff undone (computed here: the proxy has no ballast-diff). The revert
//! raises a `ConfigRolledBack` alert of its own. Also gives the proxy its differ, so every
//! `config_applied` carries its semantic diff.

use std::sync::Arc;

use ballast_core::config::Rollback as RollbackConfig;
use ballast_guard::alert::{Alert, Lifecycle, LifecycleOptions};
use ballast_guard::canary::{
    CONFIG_ROLLED_BACK, Canary, CanaryOptions, Decision, ReloadUnderTest, RevertVerdict,
    change_lines,
};
use ballast_guard::detect::{Figures, Finding, Layer, Level, Text};
use ballast_guard::watch::{Outcome, Watcher};
use ballast_proxy::{Proxy, RollbackRequest};

use crate::stdout::say;

/// How long the `ConfigRolledBack` alert stays active when no new version is applied.
const ALERT_FOR_MS: u64 = 15 * 60_000;

/// Gives the proxy its semantic differ, for `config_applied`'s `changes`.
pub fn install_differ(proxy: &Proxy) {
    proxy.set_differ(Arc::new(|old, new| change_lines(old, new).0));
}

/// A rollback done, while its alert is active.
struct Done {
    at_ms: u64,
    reverted: String,
    restored: String,
    verdict: RevertVerdict,
    changes: Vec<String>,
}

/// The canary of `serve`, one per guard.
pub struct Rollback {
    proxy: Arc<Proxy>,
    runtime: tokio::runtime::Handle,
    enabled: bool,
    options: CanaryOptions,
    canary: Option<Canary>,
    /// The version a rollback restored: its reload is not judged by a canary.
    restored: Option<String>,
    done: Option<Done>,
    alerts: Lifecycle,
    /// The alerts of the last round, for the sinks of the next (the rollback's own events
    /// come first in the log, then its alert).
    to_deliver: Vec<Arc<Alert>>,
}

impl Rollback {
    /// Must be called inside the runtime (the revert runs on it, from the guard's thread).
    pub fn new(proxy: Arc<Proxy>, config: &RollbackConfig, instance: &str) -> Self {
        let options = CanaryOptions {
            window_ms: config.window().as_millis() as u64,
            ..CanaryOptions::default()
        };
        Self {
            proxy,
            runtime: tokio::runtime::Handle::current(),
            enabled: config.enabled,
            options,
            canary: None,
            restored: None,
            done: None,
            alerts: Lifecycle::new("ballast", instance, LifecycleOptions::default()),
            to_deliver: Vec::new(),
        }
    }

    /// What the sinks get from the rollback this round (its alert firing or resolved).
    pub fn take_delivery(&mut self) -> Vec<Arc<Alert>> {
        std::mem::take(&mut self.to_deliver)
    }

    /// Its alerts active now, for `/status` and `/metrics`.
    pub fn active(&self) -> Vec<Arc<Alert>> {
        self.alerts.active()
    }

    /// One round after the watcher's: starts a canary on a reload, judges it, reverts.
    pub fn round(&mut self, now_ms: u64, outcome: &Outcome, watcher: &mut Watcher) {
        if let Some(reload) = &outcome.reload {
            if self.restored.as_deref() == Some(reload.generation.as_str()) {
                // Our own revert went live: drift is judged against it, not the file.
                self.restored = None;
                watcher.set_live_config(self.proxy.loaded().config.clone());
            } else {
                // A new version: the rollback's alert has done its job.
                self.done = None;
                if self.enabled {
                    self.start_canary(reload.at_ms, &reload.previous, &reload.generation);
                }
            }
        }
        if let Some(canary) = &mut self.canary {
            let start = canary
                .reload()
                .at_ms
                .saturating_sub(self.options.baseline_ms);
            let history: Vec<_> = watcher
                .history()
                .filter(|s| s.at_ms >= start)
                .cloned()
                .collect();
            match canary.judge(now_ms, &history, &watcher.active()) {
                Decision::Watching => {}
                Decision::Passed => self.canary = None,
                Decision::Revert(verdict) => {
                    let reload = canary.reload().clone();
                    self.canary = None;
                    self.revert(now_ms, reload, verdict);
                }
            }
        }
        if self
            .done
            .as_ref()
            .is_some_and(|d| now_ms.saturating_sub(d.at_ms) > ALERT_FOR_MS)
        {
            self.done = None;
        }
        let findings: Vec<Finding> = self.done.iter().map(finding).collect();
        let round = self.alerts.observe(now_ms, &findings, &|f| {
            format!(
                "It is the configuration: {}. Service runs the previous version again; the file \
                 still holds the reverted one, refused by later reloads until it changes.",
                f.summary()
            )
        });
        self.to_deliver = round.to_deliver();
    }

    fn start_canary(&mut self, at_ms: u64, previous: &str, version: &str) {
        let current = self.proxy.loaded();
        let pools = match self.proxy.previous_loaded() {
            Some(before) if before.version() == previous => change_lines(&before, &current).1,
            _ => Vec::new(),
        };
        self.canary = Some(Canary::new(
            ReloadUnderTest {
                at_ms,
                previous: previous.to_string(),
                version: version.to_string(),
                pools,
            },
            self.options,
        ));
    }

    fn revert(&mut self, now_ms: u64, reload: ReloadUnderTest, verdict: RevertVerdict) {
        let current = self.proxy.loaded();
        let changes = match self.proxy.previous_loaded() {
            Some(before) => change_lines(&before, &current).0,
            None => Vec::new(),
        };
        let request = RollbackRequest {
            reverted: reload.version.clone(),
            alertname: verdict.alertname.clone(),
            pool: verdict.pool.clone(),
            reason: verdict.reason.clone(),
            evidence: verdict.evidence.clone(),
            changes: changes.clone(),
        };
        let proxy = Arc::clone(&self.proxy);
        match self
            .runtime
            .block_on(async move { proxy.roll_back(request).await })
        {
            Ok(restored) => {
                if ANNOUNCE.load(std::sync::atomic::Ordering::Relaxed) {
                    say!(
                        "rollback: configuration {} reverted to {restored}: {}",
                        reload.version,
                        verdict.reason
                    );
                }
                self.restored = Some(restored.clone());
                self.done = Some(Done {
                    at_ms: now_ms,
                    reverted: reload.version,
                    restored,
                    verdict,
                    changes,
                });
            }
            Err(why) => eprintln!(
                "warning: rollback of configuration {} not done: {why}",
                reload.version
            ),
        }
    }
}

/// Whether a revert is announced on stdout (serve does; the demo tells it in its own story).
static ANNOUNCE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turns the stdout line of a revert on or off; the event log has it either way.
pub fn announce_on_stdout(on: bool) {
    ANNOUNCE.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// The `ConfigRolledBack` finding for a rollback done.
fn finding(d: &Done) -> Finding {
    Finding {
        rule: CONFIG_ROLLED_BACK,
        level: Level::Warning,
        layer: Layer::Distribution,
        pool: Some(d.verdict.pool.clone()).filter(|p| !p.is_empty()),
        server: d.verdict.server.clone(),
        text: Text::written(
            format!(
                "serve rolled back configuration {} to {} at {} because {}",
                d.reverted,
                d.restored,
                ballast_guard::change::clock(d.at_ms),
                d.verdict.reason
            ),
            [
                format!("Evidence:\n{}", d.verdict.evidence.join("\n")),
                format!("Undone:\n{}", d.changes.join("\n")),
            ]
            .join("\n"),
        ),
        figures: Figures::new(),
    }
}
