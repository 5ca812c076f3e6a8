//! What rules share: the loaded configuration and facts derived from it once (which listeners
//! feed which pool, how many connections can reach a pool).

use ballast_core::Loaded;
use ballast_core::config::{Config, Listener, Pool};

pub struct Context<'a> {
    pub loaded: &'a Loaded,
    pub config: &'a Config,
    /// The descriptor limit LIM-110 judges the caps against.
    pub descriptor_limit: crate::DescriptorLimit,
}

impl<'a> Context<'a> {
    pub fn new(loaded: &'a Loaded) -> Self {
        Self::with_options(loaded, &crate::CheckOptions::default())
    }

    pub fn with_options(loaded: &'a Loaded, options: &crate::CheckOptions) -> Self {
        Self {
            loaded,
            config: &loaded.config,
            descriptor_limit: options.descriptor_limit,
        }
    }

    pub fn pools(&self) -> impl Iterator<Item = (&'a str, &'a Pool)> {
        self.config.pools.iter().map(|(n, p)| (n.as_str(), p))
    }

    pub fn listeners(&self) -> impl Iterator<Item = (&'a str, &'a Listener)> {
        self.config.listeners.iter().map(|(n, l)| (n.as_str(), l))
    }

    /// Listeners routing to the pool.
    pub fn listeners_of(&self, pool: &'a str) -> impl Iterator<Item = (&'a str, &'a Listener)> {
        self.listeners().filter(move |(_, l)| l.pool == pool)
    }

    /// Connections the listeners admit towards a pool, capped by the global limit.
    pub fn admitted_to(&self, pool: &str) -> u64 {
        let sum: u64 = self
            .listeners_of_owned(pool)
            .map(|l| u64::from(l.effective_max_connections()))
            .sum();
        sum.min(u64::from(self.config.global.effective_max_connections()))
    }

    fn listeners_of_owned<'s>(&'s self, pool: &'s str) -> impl Iterator<Item = &'a Listener> + 's {
        self.config
            .listeners
            .values()
            .filter(move |l| l.pool == pool)
    }
}

/// `1234567` → `1,234,567`, for messages people read at 3 a.m.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration as people write it: `1.5s`, `500ms`, `2m`.
pub fn human(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".into()
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_groups_digits() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1200), "1,200");
        assert_eq!(super::thousands(1234567), "1,234,567");
    }
}
