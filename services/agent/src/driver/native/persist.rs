//! Session persistence: which member a client (by address) or an application session (by its
//! cookie's value) keeps. The tables are bounded (the least recently used entries go first when
//! one is full) and belong to their pool: the driver hands the same table to the pool's new
//! config on every apply while the pool and its persistence type stay, so clients keep their
//! members across applies as member state does. An entry only holds while its member is usable.
use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use lbaas::agent::v1::{PersistenceType, SessionPersistence};

/// How many entries a table holds (HAProxy's stick tables in Octavia hold 10k).
pub const TABLE_SIZE: usize = 10_000;

/// The cookie the load balancer sets for HTTP_COOKIE persistence.
pub const SRV_COOKIE: &str = "SRV";

/// How a pool keeps clients on a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persistence {
    None,
    /// By the client's address.
    SourceIp,
    /// By the `SRV` cookie the load balancer sets.
    HttpCookie,
    /// By the value of the application's own cookie of this name.
    AppCookie(String),
}

impl Persistence {
    pub fn from_config(config: Option<&SessionPersistence>) -> Result<Self, String> {
        let Some(config) = config else {
            return Ok(Self::None);
        };
        // The raw value: the generated getter reads an unknown type as NONE.
        let kind = PersistenceType::try_from(config.r#type)
            .map_err(|_| format!("persistence: unknown type {}", config.r#type))?;
        Ok(match kind {
            PersistenceType::None => Self::None,
            PersistenceType::SourceIp => Self::SourceIp,
            PersistenceType::HttpCookie => Self::HttpCookie,
            PersistenceType::AppCookie => {
                let name = &config.cookie_name;
                let token = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !token {
                    return Err(format!(
                        "persistence: APP_COOKIE needs a cookie_name that is a cookie name, not {name:?}"
                    ));
                }
                Self::AppCookie(name.clone())
            }
        })
    }

    /// Whether it needs HTTP (cookies).
    pub fn needs_http(&self) -> bool {
        matches!(self, Self::HttpCookie | Self::AppCookie(_))
    }
}

#[derive(Debug)]
struct Entry {
    member: String,
    used: u64,
}

/// Key (client address or cookie value) -> member id, bounded.
#[derive(Debug)]
pub struct StickTable {
    capacity: usize,
    clock: AtomicU64,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Default for StickTable {
    fn default() -> Self {
        Self::new(TABLE_SIZE)
    }
}

impl StickTable {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            clock: AtomicU64::new(0),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// The member stored for `key`, marking it used.
    pub fn get(&self, key: &str) -> Option<String> {
        let now = self.tick();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get_mut(key)?;
        entry.used = now;
        Some(entry.member.clone())
    }

    /// Stores `key` -> `member`; a full table first forgets its least recently used tenth.
    pub fn put(&self, key: &str, member: &str) {
        let now = self.tick();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = entries.get_mut(key) {
            entry.member.clear();
            entry.member.push_str(member);
            entry.used = now;
            return;
        }
        if entries.len() >= self.capacity {
            let mut ages: Vec<u64> = entries.values().map(|e| e.used).collect();
            let drop = (self.capacity / 10).max(1).min(ages.len());
            let (_, cutoff, _) = ages.select_nth_unstable(drop - 1);
            let cutoff = *cutoff;
            entries.retain(|_, e| e.used > cutoff);
        }
        entries.insert(
            key.to_owned(),
            Entry {
                member: member.to_owned(),
                used: now,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn remembers_and_forgets_the_least_recently_used() {
        let t = StickTable::new(10);
        for i in 0..10 {
            t.put(&format!("k{i}"), &format!("m{i}"));
        }
        assert_eq!(t.len(), 10);
        // k0 is used again, so k1 is the oldest.
        assert_eq!(t.get("k0").as_deref(), Some("m0"));
        t.put("k10", "m10");
        assert_eq!(t.len(), 10);
        assert_eq!(t.get("k1"), None);
        assert_eq!(t.get("k0").as_deref(), Some("m0"));
        assert_eq!(t.get("k10").as_deref(), Some("m10"));
        t.put("k0", "other");
        assert_eq!(t.get("k0").as_deref(), Some("other"));
        let big = StickTable::default();
        for i in 0..(TABLE_SIZE + 500) {
            big.put(&i.to_string(), "m");
        }
        assert!(big.len() <= TABLE_SIZE);
        assert_eq!(
            big.get(&(TABLE_SIZE + 499).to_string()).as_deref(),
            Some("m")
        );
    }

    #[test]
    fn parses_the_config() {
        let p = |t: PersistenceType, name: &str| {
            Persistence::from_config(Some(&SessionPersistence {
                r#type: t as i32,
                cookie_name: name.into(),
            }))
        };
        assert_eq!(Persistence::from_config(None).unwrap(), Persistence::None);
        assert_eq!(
            p(PersistenceType::SourceIp, "").unwrap(),
            Persistence::SourceIp
        );
        assert_eq!(
            p(PersistenceType::AppCookie, "JSESSIONID").unwrap(),
            Persistence::AppCookie("JSESSIONID".into())
        );
        assert!(p(PersistenceType::AppCookie, "").is_err());
        assert!(p(PersistenceType::AppCookie, "a b;").is_err());
        assert!(p(PersistenceType::HttpCookie, "").unwrap().needs_http());
        let unknown = SessionPersistence {
            r#type: 99,
            cookie_name: String::new(),
        };
        assert!(Persistence::from_config(Some(&unknown)).is_err());
    }
}
