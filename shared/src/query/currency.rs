//! The store's main currency without waiting for it: a read in a currency that names none is answered in
//! the store's main currency ([`super::ReadStore::main_currency`]: the currency of most of its orders of
//! the last 90 days), which takes a query of its own. Run first, that query adds its whole time to every
//! such read (13–19 ms on the 10M and 100M bench stores, the query alone).
//!
//! [`Guesses`] remembers, per process, the main currency each store's last read found. A read of a store
//! with a guess runs in the guessed currency and, at the same time, looks the main currency up; when the
//! two agree (a store's main currency of 90 days seldom changes) the answer stands, and when they do not
//! the read runs again in the currency found, so the answer is always the one the lookup-first order
//! gives. A store's first read (or the first after a change) looks the currency up first, as before.
//! Used by the metrics, dashboards and cohorts endpoints (the API's `Reader::in_main_currency` and
//! [`super::dashboards::render`]); alerts, which run on a schedule, look it up first.
//!
//! Measured through `analytics serve` (30 days, p50 of 11, alternating with the lookup-first build): on
//! the 10M store revenue 26 ms against 34, best sellers 32 against 45, the Customers dashboard 78 against
//! 96; on the 100M store revenue 26 against 38, best sellers 72 against 91. A read that keeps both cores
//! busy gains less (LTV at 100M: 94 against 96 ms): the lookup then shares the cores with it.
//!
//! Our choice: a per-process memory, not a cache with a lifetime: nothing is ever served from it without
//! the lookup confirming it in the same request, so it cannot go stale; a Lambda container keeps it while
//! it is warm.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use super::ReadStore;
use crate::error::Result;

/// The last main currency found per (store, bots included); see the module docs.
#[derive(Debug, Default)]
pub struct Guesses {
    last: Mutex<HashMap<(String, bool), String>>,
}

/// What a request needs: the store's main currency, as humans' orders (or every order) decide it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needed {
    pub store_id: String,
    pub include_bots: bool,
}

impl Needed {
    /// What a read with parameters `p` needs when it reads in a currency: the main currency of `store_id`,
    /// unless `p` names a currency. `None` also when `includeBots` is not valid (the read's own parse
    /// says why).
    pub fn unless_named(store_id: &str, p: &super::params::Params) -> Option<Self> {
        if p.get("currency").is_some() {
            return None;
        }
        Some(Self {
            store_id: store_id.to_owned(),
            include_bots: p.include_bots().ok()?,
        })
    }
}

/// `query` (which names no currency, see [`Needed::unless_named`]) with `currency` added.
pub fn with_currency(query: &str, currency: &str) -> String {
    let pair: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("currency", currency)
        .finish();
    if query.is_empty() {
        pair
    } else {
        format!("{query}&{pair}")
    }
}

impl Guesses {
    pub fn new() -> Self {
        Self::default()
    }

    fn get(&self, key: &(String, bool)) -> Option<String> {
        self.last.lock().ok()?.get(key).cloned()
    }

    fn remember(&self, key: (String, bool), currency: &str) {
        if let Ok(mut last) = self.last.lock() {
            last.insert(key, currency.to_owned());
        }
    }

    /// Runs `answer` in the store's main currency (see the module docs): `answer` gets the currency to
    /// read in; the main currency of a store without orders is USD, as a read that looks it up says.
    pub async fn answer<T, F, Fut>(
        &self,
        store: &dyn ReadStore,
        needed: &Needed,
        now: jiff::Timestamp,
        answer: F,
    ) -> Result<T>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let key = (needed.store_id.clone(), needed.include_bots);
        let lookup = async {
            Ok::<_, crate::error::Error>(
                store
                    .main_currency(&needed.store_id, now, needed.include_bots)
                    .await?
                    .unwrap_or_else(|| super::metrics::NO_ORDERS_CURRENCY.into()),
            )
        };
        let Some(guess) = self.get(&key) else {
            let main = lookup.await?;
            self.remember(key, &main);
            return answer(main).await;
        };
        let (answered, main) = futures_util::future::join(answer(guess.clone()), lookup).await;
        let main = main?;
        if main == guess {
            return answered;
        }
        self.remember(key, &main);
        answer(main).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::error::StoreError;
    use crate::query::fakes::{CurrencyStore, MainCurrencyOnly};

    /// A store whose orders are in `currency` (none: no orders; `fail`: the warehouse is down),
    /// counting its lookups.
    #[derive(Debug, Default)]
    struct Orders {
        currency: Mutex<Option<String>>,
        fail: bool,
        lookups: AtomicUsize,
    }

    impl Orders {
        fn set(&self, c: Option<&str>) {
            *self.currency.lock().expect("lock") = c.map(str::to_owned);
        }
    }

    #[async_trait::async_trait]
    impl MainCurrencyOnly for Orders {
        async fn main_currency(&self, _: &str) -> Result<Option<String>, StoreError> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            if self.fail {
                return Err(StoreError::Unavailable("down".into()));
            }
            Ok(self.currency.lock().expect("lock").clone())
        }
    }

    fn needed(bots: bool) -> Needed {
        Needed {
            store_id: "shop".into(),
            include_bots: bots,
        }
    }

    #[test]
    fn a_currency_is_added_to_the_query_as_one_more_parameter() {
        assert_eq!(
            with_currency("metric=revenue&period=7d", "EUR"),
            "metric=revenue&period=7d&currency=EUR"
        );
        assert_eq!(with_currency("", "JPY"), "currency=JPY");
        let p = crate::query::params::Params::parse(
            &with_currency("metric=revenue", "USD"),
            crate::query::metrics::PARAMS,
        )
        .expect("params");
        assert_eq!(p.currency().expect("currency"), Some("USD"));
    }

    #[tokio::test]
    async fn every_answer_is_in_the_currency_the_lookup_finds_whatever_was_guessed() {
        let orders = Arc::new(Orders::default());
        let store = CurrencyStore(orders.clone());
        let guesses = Guesses::new();
        let now = jiff::Timestamp::UNIX_EPOCH;
        let runs = Mutex::new(Vec::new());
        let read = |c: String| {
            runs.lock().expect("lock").push(c.clone());
            async move { Ok(format!("answer in {c}")) }
        };
        // (the store's orders, bots included, the answer, the currencies this call read in)
        let cases: [(Option<&str>, bool, &str, &[&str]); 6] = [
            // First read: looked up first, read once.
            (Some("EUR"), false, "answer in EUR", &["EUR"]),
            // Guessed right: read once, in the guess.
            (Some("EUR"), false, "answer in EUR", &["EUR"]),
            // The main currency changed: the guess is read, then the currency found.
            (Some("JPY"), false, "answer in JPY", &["EUR", "JPY"]),
            (Some("JPY"), false, "answer in JPY", &["JPY"]),
            // Bots included has guesses of its own: looked up first.
            (None, true, "answer in USD", &["USD"]),
            // No orders any more: USD, as a lookup-first read says.
            (None, false, "answer in USD", &["JPY", "USD"]),
        ];
        for (i, (currency, bots, want, read_in)) in cases.into_iter().enumerate() {
            orders.set(currency);
            runs.lock().expect("lock").clear();
            let got = guesses
                .answer(&store, &needed(bots), now, read)
                .await
                .expect("answer");
            assert_eq!(got, want, "case {i}");
            assert_eq!(*runs.lock().expect("lock"), read_in, "case {i}");
        }
        // Every call looked the currency up once, guessed or not.
        assert_eq!(orders.lookups.load(Ordering::SeqCst), 6);
    }

    #[tokio::test]
    async fn a_failed_lookup_fails_the_read_even_when_the_guessed_answer_is_ready() {
        let store = CurrencyStore(Arc::new(Orders {
            fail: true,
            ..Orders::default()
        }));
        let guesses = Guesses::new();
        guesses.remember(("shop".into(), false), "EUR");
        let err = guesses
            .answer(
                &store,
                &needed(false),
                jiff::Timestamp::UNIX_EPOCH,
                |c: String| async move { Ok(c) },
            )
            .await
            .expect_err("the lookup failed");
        assert!(err.is_retryable(), "{err:?}");
    }
}
