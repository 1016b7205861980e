//! `GET /v1/events?follow=1`: the backlog since an id, then new events live, as server-sent
//! events (`id:` + `data: <json>`), with a keep-alive comment every 15 s.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::{broadcast, mpsc};

use super::routes::{error, Body};
use crate::api::Event;
use crate::orchestrator::Handle;

pub fn stream(handle: Handle, since: u64) -> Response<Body> {
    // Subscribe before reading the backlog so nothing falls between the two.
    let mut live = handle.subscribe();
    let backlog = match handle.events_since(since, 10_000) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &e.to_string(),
                "check the store",
            )
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut last = since;
        for ev in backlog {
            last = ev.id;
            if tx.send(frame(&ev)).await.is_err() {
                return;
            }
        }
        loop {
            let next = tokio::time::timeout(Duration::from_secs(15), live.recv()).await;
            let bytes = match next {
                Err(_) => Bytes::from_static(b": keep-alive\n\n"),
                Ok(Ok(ev)) if ev.id <= last => continue,
                Ok(Ok(ev)) => {
                    last = ev.id;
                    frame(&ev)
                }
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                    // Too slow a reader: catch up from the store rather than skip events.
                    match handle.events_since(last, 10_000) {
                        Ok(missed) => {
                            for ev in missed {
                                last = ev.id;
                                if tx.send(frame(&ev)).await.is_err() {
                                    return;
                                }
                            }
                            continue;
                        }
                        Err(_) => return,
                    }
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return,
            };
            if tx.send(bytes).await.is_err() {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut resp = Response::new(StreamBody::new(stream).boxed());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    resp
}

fn frame(ev: &Event) -> Bytes {
    let json = serde_json::to_string(ev).unwrap_or_default();
    Bytes::from(format!("id: {}\ndata: {json}\n\n", ev.id))
}
