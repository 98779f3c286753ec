//! The ClickHouse server's CPU time behind a read, for the read benchmarks' "CPU" column: what tells a
//! read bound by the server's cores (its CPU time is about its time × the cores) from one that waits.
//!
//! Each measured call is bracketed by the server's clock (`now64(6)`, asked before and after, outside the
//! call's timing); afterwards one read of `system.query_log` sums `ProfileEvents['OSCPUVirtualTimeMicroseconds']`
//! (the CPU time of the query's threads as the OS counts it) of the database's finished queries that
//! started and ended inside a call's bracket. Queries of other databases, and the clock questions
//! themselves (`log_comment` [`CLOCK`]), are not counted.
//!
//! A server without a query log (ClickHouse keeps one by default; `scripts/clickhouse` turns it on for
//! the local engine) gives no figure: [`ServerCpu::probe`] says `None` and the column says `n/a`. On a
//! cluster the figure is the initiator's: the shards log their parts of a read on their own servers.

use std::time::Duration;

use clickhouse::Client;

use super::BenchResult;

/// The `log_comment` of the clock questions, which the sum leaves out.
const CLOCK: &str = "bench-clock";

/// The server's clock and query log, for one database.
pub struct ServerCpu {
    client: Client,
    db: String,
}

impl std::fmt::Debug for ServerCpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCpu")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

/// One call's bracket on the server's clock, in Unix microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Bracket {
    from: i64,
    to: i64,
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct Logged {
    started: i64,
    ended: i64,
    cpu: u64,
}

impl ServerCpu {
    /// `Some` when the server keeps `system.query_log` (which a server creates at its first flush).
    pub async fn probe(client: &Client, db: &str) -> Option<Self> {
        client.query("SYSTEM FLUSH LOGS").execute().await.ok()?;
        let probe = client
            .query("SELECT count() FROM system.query_log WHERE 0")
            .fetch_one::<u64>()
            .await;
        probe.ok().map(|_| Self {
            client: client.clone(),
            db: db.to_owned(),
        })
    }

    /// The server's clock now, in Unix microseconds.
    pub async fn now(&self) -> BenchResult<i64> {
        Ok(self
            .client
            .query("SELECT toUnixTimestamp64Micro(now64(6))")
            .with_setting("log_comment", CLOCK)
            .fetch_one::<i64>()
            .await?)
    }

    /// Runs `call` between two readings of the server's clock.
    pub async fn bracket<F, Fut, T>(&self, call: F) -> BenchResult<(T, Bracket)>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = BenchResult<T>>,
    {
        let from = self.now().await?;
        let out = call().await?;
        let to = self.now().await?;
        Ok((out, Bracket { from, to }))
    }

    /// The median over `brackets` of the CPU time of the database's queries inside each (the p50 of the
    /// calls they bracket, as their times are).
    pub async fn per_call(&self, brackets: &[Bracket]) -> BenchResult<Duration> {
        let Some(first) = brackets.iter().map(|b| b.from).min() else {
            return Ok(Duration::ZERO);
        };
        self.client.query("SYSTEM FLUSH LOGS").execute().await?;
        let logged = self
            .client
            .query(
                "SELECT toInt64(toUnixTimestamp64Micro(query_start_time_microseconds)) AS started, \
                   toInt64(toUnixTimestamp64Micro(event_time_microseconds)) AS ended, \
                   ProfileEvents['OSCPUVirtualTimeMicroseconds'] AS cpu \
                 FROM system.query_log \
                 WHERE type != 'QueryStart' AND current_database = ? AND log_comment != ? \
                   AND event_date >= toDate(fromUnixTimestamp64Micro(?)) \
                   AND query_start_time_microseconds >= fromUnixTimestamp64Micro(?)",
            )
            .bind(&self.db)
            .bind(CLOCK)
            .bind(first)
            .bind(first)
            .fetch_all::<Logged>()
            .await?;
        let mut each: Vec<u64> = brackets.iter().map(|b| cpu_inside(&logged, *b)).collect();
        each.sort_unstable();
        Ok(Duration::from_micros(each[each.len() / 2]))
    }
}

/// The CPU microseconds of the logged queries that started and ended inside `bracket`.
fn cpu_inside(logged: &[Logged], bracket: Bracket) -> u64 {
    logged
        .iter()
        .filter(|q| bracket.from <= q.started && q.ended <= bracket.to)
        .map(|q| q.cpu)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_queries_wholly_inside_a_bracket_count() {
        let logged = [
            // Inside the first call.
            Logged {
                started: 10,
                ended: 20,
                cpu: 5,
            },
            // Inside the second.
            Logged {
                started: 110,
                ended: 150,
                cpu: 7,
            },
            // Between the calls (the compared read of a side-by-side pair).
            Logged {
                started: 60,
                ended: 70,
                cpu: 100,
            },
            // Started before a call, ended inside it.
            Logged {
                started: 95,
                ended: 105,
                cpu: 1_000,
            },
            // Started inside, ended after.
            Logged {
                started: 190,
                ended: 210,
                cpu: 10_000,
            },
        ];
        assert_eq!(cpu_inside(&logged, Bracket { from: 0, to: 50 }), 5);
        assert_eq!(cpu_inside(&logged, Bracket { from: 100, to: 200 }), 7);
        assert_eq!(cpu_inside(&logged, Bracket { from: 300, to: 400 }), 0);
    }
}
