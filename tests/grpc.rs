//! gRPC through cutover, end to end: a real gRPC client (tonic's channel) → the `cutover serve`
//! binary (h2c on its users' listener) → an env with `protocol = "h2"` → a real gRPC service
//! (grpc.health.v1, tonic-health's generated code). Unary and server-streaming calls, with
//! their `grpc-status` trailers: an error status reaches the client as its code and message.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::server::{write_config_envs, Server};
use common::{dead_addr, wait_until};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::codegen::Service;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{health_reporter, HealthReporter};
use tonic_health::ServingStatus as Reported;

const SERVICE: &str = "cutover.test.Orders";
/// Every wait of these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(10);

/// grpc.health.v1 served in HTTP/2 (prior knowledge) on hyper's server, counting the
/// connections it accepted. A call with `x-fail` metadata is answered UNAVAILABLE (a
/// trailers-only answer, as a failing service sends it).
struct GrpcEnv {
    addr: std::net::SocketAddr,
    reporter: HealthReporter,
    conns: Arc<AtomicUsize>,
}

async fn grpc_env() -> GrpcEnv {
    let (reporter, service) = health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = conns.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            // Connections that carried users' calls (a probe comes on one of its own).
            let (counted, this_one) = (counted.clone(), Arc::new(AtomicBool::new(false)));
            let health = service.clone();
            let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let mut health = health.clone();
                if req.uri().path() != "/healthz" && !this_one.swap(true, SeqCst) {
                    counted.fetch_add(1, SeqCst);
                }
                async move {
                    if req.headers().contains_key("x-fail") {
                        let down = tonic::Status::unavailable("the env is going down");
                        return Ok(down.into_http::<tonic::body::Body>());
                    }
                    Service::call(&mut health, req).await
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    GrpcEnv {
        addr,
        reporter,
        conns,
    }
}

/// The binary with OLD (where every user goes without a plan) on `env`, spoken to in h2.
fn cutover_in_front_of(env: &GrpcEnv, dir: &std::path::Path) -> Server {
    let cfg = write_config_envs(
        dir,
        [env.addr, dead_addr(), dead_addr()],
        [
            "protocol = \"h2\"\nrequest_timeout = \"5s\"\nprobe_path = \"/healthz\"",
            "",
            "",
        ],
        "[probes]\ninterval = \"50ms\"\n",
    );
    Server::start(&cfg)
}

async fn client(server: &Server) -> HealthClient<Channel> {
    let channel = Channel::from_shared(server.proxy_url(""))
        .expect("url")
        .connect_timeout(WAIT)
        .timeout(WAIT)
        .connect()
        .await
        .expect("connect to cutover");
    HealthClient::new(channel)
}

/// The next message of a stream, within [`WAIT`].
async fn next(watch: &mut tonic::Streaming<HealthCheckResponse>) -> Option<HealthCheckResponse> {
    tokio::time::timeout(WAIT, watch.message())
        .await
        .expect("a message in time")
        .expect("the stream goes on")
}

fn ask(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_owned(),
    }
}

#[tokio::test]
async fn a_unary_call_and_its_error_status_pass_through_an_h2_env() {
    let env = grpc_env().await;
    env.reporter
        .set_service_status(SERVICE, Reported::Serving)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = cutover_in_front_of(&env, dir.path());
    let mut grpc = client(&server).await;

    // Probes speak the env's protocol: a service that speaks only HTTP/2 answers them.
    wait_until("a probe of the h2 env", WAIT, || async {
        let metrics = server.metrics().await;
        metrics
            .lines()
            .any(|l| l == "cutover_probe_up{env=\"old\"} 1")
    })
    .await;
    let metrics = server.metrics().await;
    let failed = "cutover_probes_total{env=\"old\",result=\"failed\"} 0";
    assert!(metrics.contains(failed), "{metrics}");

    let answer = grpc.check(ask(SERVICE)).await.expect("check");
    assert_eq!(answer.get_ref().status(), ServingStatus::Serving);
    assert_eq!(
        answer
            .metadata()
            .get("x-cutover-served-by")
            .and_then(|v| v.to_str().ok()),
        Some("old"),
        "answered by the env through cutover"
    );

    // The service's error travels in the trailers (`grpc-status`, `grpc-message`).
    let status = grpc
        .check(ask("cutover.test.Unknown"))
        .await
        .expect_err("an unknown service is an error");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert_eq!(status.message(), "service not registered");
    let mut failing = tonic::Request::new(ask(SERVICE));
    failing
        .metadata_mut()
        .insert("x-fail", "1".parse().expect("metadata"));
    let status = grpc.check(failing).await.expect_err("the env fails");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "the env is going down");
    // UNAVAILABLE is the env's failure, NOT_FOUND the caller's (docs/operations.md).
    let metrics = server.metrics().await;
    let line = "cutover_errors_total{env=\"old\",kind=\"server_error\"} ";
    let errors = metrics.lines().find_map(|l| l.strip_prefix(line));
    assert_eq!(errors, Some("1"), "{metrics}");

    // Many calls at once share the worker's connection to the env instead of one each.
    let calls = (0..50).map(|_| {
        let mut grpc = grpc.clone();
        async move { grpc.check(ask(SERVICE)).await.map(|a| a.get_ref().status) }
    });
    for answer in futures_util::future::join_all(calls).await {
        assert_eq!(answer.expect("check"), ServingStatus::Serving as i32);
    }
    let conns = env.conns.load(SeqCst);
    assert!(
        (1..=2).contains(&conns),
        "52 calls took {conns} connections to the env"
    );
}

#[tokio::test]
async fn a_server_stream_flows_message_by_message_through_an_h2_env() {
    let env = grpc_env().await;
    env.reporter
        .set_service_status(SERVICE, Reported::Serving)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = cutover_in_front_of(&env, dir.path());
    let mut grpc = client(&server).await;

    let mut watch = grpc.watch(ask(SERVICE)).await.expect("watch").into_inner();
    let first = next(&mut watch).await;
    assert_eq!(
        first.map(|m| m.status()),
        Some(ServingStatus::Serving),
        "the first message"
    );
    // Each change is a message of the open stream: nothing waits for the stream's end.
    for (set, status) in [
        (Reported::NotServing, ServingStatus::NotServing),
        (Reported::Serving, ServingStatus::Serving),
    ] {
        env.reporter.set_service_status(SERVICE, set).await;
        let got = next(&mut watch).await;
        assert_eq!(got.map(|m| m.status()), Some(status));
    }

    // A stream the service refuses ends with its status.
    let refused = grpc
        .watch(ask("cutover.test.Unknown"))
        .await
        .map(|_| ())
        .expect_err("an unknown service is an error");
    assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");
}
