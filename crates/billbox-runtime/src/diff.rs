//! What a reload changes: a plain [`ConfigDiff`] computed from the running
//! and the new config before anything is touched (as vector's
//! `config/diff.rs` does), then applied by [`crate::Running::reload`].

use billbox_config::{Config, PortConfig};
use billbox_spool::RotatorSettings;

/// Why a reload was refused (the old config keeps running).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    #[error("{0} cannot change while billbox runs; restart billbox to change it")]
    NeedsRestart(&'static str),
}

/// The difference between the running config and a new one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// Ports the new config reads that the running one does not, sorted.
    pub added: Vec<String>,
    /// Ports the running config reads that the new one does not, sorted:
    /// their records are still filed and delivered.
    pub removed: Vec<String>,
    /// Ports read by both whose settings or file settings differ, sorted:
    /// their readers and rotators restart.
    pub changed: Vec<String>,
    /// The delivery loops restart: servers, carbon copies, TCP feeds, the
    /// gateway name, the store's capacity or the set of ports changed.
    pub destinations: bool,
}

impl ConfigDiff {
    /// What applying `new` over `old` changes, or why it cannot be applied
    /// while running. Ports that are off (`billing_records = 0`) count as
    /// absent.
    pub fn between(old: &Config, new: &Config) -> Result<ConfigDiff, ReloadError> {
        let restart = |what| Err(ReloadError::NeedsRestart(what));
        if new.gateway.data_dir != old.gateway.data_dir {
            return restart("gateway.data_dir");
        }
        if new.gateway.spool_dir != old.gateway.spool_dir {
            return restart("gateway.spool_dir");
        }
        if new.store.cache_mb != old.store.cache_mb {
            return restart("store.cache_mb");
        }
        if new.transactions != old.transactions {
            return restart("[transactions]");
        }
        if new.metrics.listen != old.metrics.listen || new.metrics.enabled != old.metrics.enabled {
            return restart("metrics.listen and metrics.enabled");
        }
        let read = |c: &Config, name: &str| {
            c.ports
                .iter()
                .find(|p| p.enabled() && p.name == name)
                .cloned()
        };
        let names = |c: &Config| -> Vec<String> {
            c.ports
                .iter()
                .filter(|p| p.enabled())
                .map(|p| p.name.clone())
                .collect()
        };
        let mut diff = ConfigDiff::default();
        for name in names(old) {
            match read(new, &name) {
                None => diff.removed.push(name),
                Some(p) => {
                    let before = read(old, &name).expect("a running port");
                    if p != before || rotator_settings(new, &p) != rotator_settings(old, &before) {
                        diff.changed.push(name);
                    }
                }
            }
        }
        diff.added = names(new)
            .into_iter()
            .filter(|n| read(old, n).is_none())
            .collect();
        diff.added.sort();
        diff.removed.sort();
        diff.changed.sort();
        diff.destinations = new.delivery != old.delivery
            || new.carbon_copies != old.carbon_copies
            || new.tcp_feeds != old.tcp_feeds
            || new.gateway.name != old.gateway.name
            || new.store != old.store
            || !diff.added.is_empty()
            || !diff.removed.is_empty();
        Ok(diff)
    }

    /// Ports whose readers stop first: the removed and the changed ones.
    pub fn stopping(&self) -> Vec<String> {
        let mut out = self.removed.clone();
        out.extend(self.changed.iter().cloned());
        out
    }
}

/// The file settings of a port under `config`.
pub fn rotator_settings(config: &Config, port: &PortConfig) -> RotatorSettings {
    RotatorSettings {
        port: std::sync::Arc::from(port.name.as_str()),
        prefix: port.file_prefix(&config.gateway.name).to_string(),
        dir: config.gateway.spool_dir.clone(),
        records_per_file: port.billing_records,
        timeout: port.billing_timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        billbox_config::from_toml_str(&format!(
            "[gateway]\nname = \"gw\"\n\
             [[ports]]\nname = \"a\"\ndevice = \"/dev/ttyS0\"\n\
             [[ports]]\nname = \"b\"\nlisten = \"127.0.0.1:5101\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn the_same_config_changes_nothing() {
        assert_eq!(
            ConfigDiff::between(&config(""), &config("")),
            Ok(ConfigDiff::default())
        );
    }

    #[test]
    fn ports_added_removed_and_changed() {
        let old = config("[[ports]]\nname = \"c\"\nlisten = \"127.0.0.1:5102\"\n");
        let mut new = config("[[ports]]\nname = \"d\"\nlisten = \"127.0.0.1:5103\"\n");
        new.ports[1].billing_records = 10;
        let diff = ConfigDiff::between(&old, &new).unwrap();
        assert_eq!(diff.added, ["d"]);
        assert_eq!(diff.removed, ["c"]);
        assert_eq!(diff.changed, ["b"]);
        assert!(diff.destinations);
        assert_eq!(diff.stopping(), ["c", "b"]);
    }

    #[test]
    fn a_port_turned_off_is_removed_and_a_new_alias_changes_it() {
        let old = config("");
        let mut new = config("");
        new.ports[0].billing_records = 0;
        new.ports[1].alias = Some("B".into());
        let diff = ConfigDiff::between(&old, &new).unwrap();
        assert_eq!(
            (diff.removed, diff.changed),
            (vec!["a".to_string()], vec!["b".to_string()])
        );
        // The gateway name is the prefix of ports without an alias.
        let mut renamed = config("");
        renamed.gateway.name = "gw2".into();
        let diff = ConfigDiff::between(&old, &renamed).unwrap();
        assert_eq!(diff.changed, ["a", "b"]);
        assert!(diff.destinations);
    }

    #[test]
    fn what_needs_a_restart_is_refused() {
        let old = config("");
        let mut new = config("");
        new.store.cache_mb += 1;
        assert_eq!(
            ConfigDiff::between(&old, &new),
            Err(ReloadError::NeedsRestart("store.cache_mb"))
        );
        let mut new = config("");
        new.gateway.spool_dir = "/elsewhere".into();
        assert_eq!(
            ConfigDiff::between(&old, &new),
            Err(ReloadError::NeedsRestart("gateway.spool_dir"))
        );
        let mut new = config("");
        new.store.max_records = 5;
        assert!(ConfigDiff::between(&old, &new).unwrap().destinations);
    }
}
