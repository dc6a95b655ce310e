//! A cache with a time to live per entry, where concurrent callers of one
//! key share one fetch: the first runs it, the others wait for its answer.
//! Errors are shared with those waiting but not kept for later callers.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use super::RegistryError;

struct Stamped<V> {
    value: Result<V, RegistryError>,
    expires: Instant,
}

type Slot<V> = Arc<OnceCell<Stamped<V>>>;

/// Keyed values with expiry and single-flight fetches.
pub(crate) struct Cache<V> {
    slots: Mutex<HashMap<String, Slot<V>>>,
    max_entries: usize,
}

/// Whether an answer came from the cache (or a fetch already under way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// This caller ran the fetch.
    Fetched,
    /// Kept or shared: the registry was not asked for it again.
    Cached,
}

impl<V: Clone> Cache<V> {
    /// An empty cache that holds at most `max_entries` keys (expired ones
    /// go first, then the ones expiring soonest).
    pub(crate) fn new(max_entries: usize) -> Cache<V> {
        Cache {
            slots: Mutex::new(HashMap::new()),
            max_entries: max_entries.max(1),
        }
    }

    /// The live value of `key`, or the result of `fetch`, which returns the
    /// value and how long to keep it.
    pub(crate) async fn get_or_fetch<F, Fut>(
        &self,
        key: &str,
        fetch: F,
    ) -> (Result<V, RegistryError>, Source)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(V, Duration), RegistryError>>,
    {
        let slot = self.slot(key);
        let mut fetched = false;
        let stamped = slot
            .get_or_init(|| {
                fetched = true;
                async move {
                    match fetch().await {
                        Ok((value, ttl)) => Stamped {
                            value: Ok(value),
                            expires: Instant::now() + ttl,
                        },
                        Err(e) => Stamped {
                            value: Err(e),
                            expires: Instant::now(),
                        },
                    }
                }
            })
            .await;
        let source = if fetched {
            Source::Fetched
        } else {
            Source::Cached
        };
        (stamped.value.clone(), source)
    }

    /// The live value of `key`, without fetching or waiting.
    pub(crate) fn peek(&self, key: &str) -> Option<V> {
        let slots = self.lock();
        let stamped = slots.get(key)?.get()?;
        match &stamped.value {
            Ok(v) if stamped.expires > Instant::now() => Some(v.clone()),
            _ => None,
        }
    }

    /// Drops `key`, so the next caller fetches it again.
    pub(crate) fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Drops every entry.
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot<V>>> {
        // A panic elsewhere while holding the lock leaves a usable map.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The slot to wait on: the live or in-flight one, or a fresh one.
    fn slot(&self, key: &str) -> Slot<V> {
        let now = Instant::now();
        let mut slots = self.lock();
        if let Some(slot) = slots.get(key) {
            let live = match slot.get() {
                None => true, // a fetch is under way: join it
                Some(s) => s.value.is_ok() && s.expires > now,
            };
            if live {
                return slot.clone();
            }
        }
        if slots.len() >= self.max_entries && !slots.contains_key(key) {
            slots.retain(|_, s| s.get().is_none_or(|s| s.value.is_ok() && s.expires > now));
            while slots.len() >= self.max_entries {
                let soonest = slots
                    .iter()
                    .filter_map(|(k, s)| s.get().map(|s| (s.expires, k.clone())))
                    .min();
                match soonest {
                    Some((_, k)) => {
                        slots.remove(&k);
                    }
                    // Everything is in flight: let the map grow past the cap.
                    None => break,
                }
            }
        }
        let slot: Slot<V> = Arc::new(OnceCell::new());
        slots.insert(key.to_string(), slot.clone());
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn rt() -> tokio::runtime::Runtime {
        match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn single_flight_and_ttl() {
        rt().block_on(async {
            let cache: Cache<u32> = Cache::new(10);
            let calls = AtomicU32::new(0);
            let fetch = || async {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok((7, Duration::from_millis(200)))
            };
            let (a, b, c) = tokio::join!(
                cache.get_or_fetch("k", fetch),
                cache.get_or_fetch("k", fetch),
                cache.get_or_fetch("k", fetch)
            );
            assert_eq!(calls.load(Ordering::SeqCst), 1);
            let sources = [a.1, b.1, c.1];
            assert_eq!(sources.iter().filter(|s| **s == Source::Fetched).count(), 1);
            assert_eq!(a.0, Ok(7));
            assert_eq!(c.0, Ok(7));
            let (v, s) = cache.get_or_fetch("k", fetch).await;
            assert_eq!((v, s), (Ok(7), Source::Cached));
            // Poll until the entry has expired (deadline, no fixed sleep).
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let (_, s) = cache.get_or_fetch("k", fetch).await;
                if s == Source::Fetched {
                    break;
                }
                assert!(Instant::now() < deadline, "never expired");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(calls.load(Ordering::SeqCst), 2);
        });
    }

    #[test]
    fn errors_shared_not_kept() {
        rt().block_on(async {
            let cache: Cache<u32> = Cache::new(10);
            let calls = AtomicU32::new(0);
            let fail = || async {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Err(RegistryError::Config {
                    setting: "x",
                    problem: "y".into(),
                })
            };
            let (a, b) = tokio::join!(cache.get_or_fetch("k", fail), cache.get_or_fetch("k", fail));
            assert!(a.0.is_err() && b.0.is_err());
            assert_eq!(calls.load(Ordering::SeqCst), 1);
            let (_, s) = cache.get_or_fetch("k", fail).await;
            assert_eq!(s, Source::Fetched);
            assert_eq!(calls.load(Ordering::SeqCst), 2);
        });
    }

    #[test]
    fn bounded() {
        rt().block_on(async {
            let cache: Cache<u32> = Cache::new(3);
            for i in 0..10u32 {
                let (v, _) = cache
                    .get_or_fetch(&i.to_string(), || async move {
                        Ok((i, Duration::from_secs(60 + u64::from(i))))
                    })
                    .await;
                assert_eq!(v, Ok(i));
            }
            assert!(cache.lock().len() <= 3);
            // The newest (latest expiry) are kept.
            assert!(cache.lock().contains_key("9"));
        });
    }
}
