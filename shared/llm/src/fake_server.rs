//! A fake LLM provider for tests: an axum router on `127.0.0.1:0` that counts the requests it
//! receives and the most it had in flight at once, so tests can assert on what crossed the wire.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use tokio::task::JoinHandle;

pub(crate) struct FakeServer {
    /// `http://127.0.0.1:{port}`, without a trailing slash.
    pub base_url: String,
    hits: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl FakeServer {
    pub async fn start(router: Router) -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let counters = (hits.clone(), in_flight.clone(), max_in_flight.clone());
        let router = router.layer(middleware::from_fn(move |request: Request, next: Next| {
            let (hits, in_flight, max_in_flight) = counters.clone();
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                max_in_flight.fetch_max(now, Ordering::SeqCst);
                let response = next.run(request).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                response
            }
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a port for the fake provider");
        let base_url = format!("http://{}", listener.local_addr().expect("local address"));
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("fake provider runs");
        });
        Self {
            base_url,
            hits,
            in_flight,
            max_in_flight,
            task,
        }
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Requests being handled right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests that were ever handled at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
