//! A bounded load generator for end-to-end tests: a few workers send GETs as random users
//! until stopped or until their deadline, whichever comes first. Loopback only.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Load {
    stop: Arc<AtomicBool>,
    pub sent: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `workers` loops over `users` ids against `url`, pausing `gap` between requests, for at
    /// most `max` time.
    pub fn start(url: String, workers: usize, users: usize, gap: Duration, max: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let deadline = Instant::now() + max;
        let tasks = (0..workers)
            .map(|w| {
                let (stop, sent, failed, client, url) = (
                    stop.clone(),
                    sent.clone(),
                    failed.clone(),
                    client.clone(),
                    url.clone(),
                );
                tokio::spawn(async move {
                    let mut i = w;
                    while !stop.load(SeqCst) && Instant::now() < deadline {
                        let user = format!("user-{}", i % users);
                        i += workers;
                        let ok = match client.get(&url).header("x-user-id", user).send().await {
                            Ok(r) => r.status().is_success(),
                            Err(_) => false,
                        };
                        sent.fetch_add(1, SeqCst);
                        if !ok {
                            failed.fetch_add(1, SeqCst);
                        }
                        tokio::time::sleep(gap).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            sent,
            failed,
            tasks,
        }
    }

    pub async fn stop(self) -> (u64, u64) {
        self.stop.store(true, SeqCst);
        for t in self.tasks {
            let _ = t.await;
        }
        (self.sent.load(SeqCst), self.failed.load(SeqCst))
    }
}
