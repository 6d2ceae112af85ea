//! OTLP export: a node with `otlp_endpoint` sends its spans to a (real gRPC) collector, and
//! flushes them at shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use rust_socketio::TransportType;
use tonic::{Request, Response, Status};

use crate::helpers::{ProcessNode, RedisServer, all_show, connect_many, node_env, unique_prefix};

/// A collector that records the names of the spans it receives.
#[derive(Clone, Default)]
struct Collector {
    span_names: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut names = self.span_names.lock().expect("lock");
        for resource in &request.get_ref().resource_spans {
            for scope in &resource.scope_spans {
                names.extend(scope.spans.iter().map(|span| span.name.clone()));
            }
        }
        Ok(Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_collector_and_are_flushed_at_shutdown() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind collector");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let redis = RedisServer::start().await;
    let mut env = node_env(Some(&redis.url()), &unique_prefix("otlp"), "traced");
    env.insert("ROLLCALL_OTLP_ENDPOINT".into(), format!("http://127.0.0.1:{port}"));
    let mut node = ProcessNode::start(env).await;
    let clients = connect_many(&[node.url()], 3, TransportType::Websocket).await;
    all_show(&clients, 3).await;
    for client in clients {
        client.disconnect().await;
    }
    node.signal("TERM").await;
    assert!(node.wait_exit(Duration::from_secs(10)).await.success());

    let names = collector.span_names.lock().expect("lock").clone();
    for expected in ["connect", "disconnect", "flush"] {
        assert!(names.iter().any(|n| n == expected), "no `{expected}` span among {names:?}");
    }
    server.abort();
}
