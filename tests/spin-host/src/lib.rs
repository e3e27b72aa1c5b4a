//! Serves a Spin HTTP component on wasmtime, the way `spin up` would, for the end-to-end suite
//! and the Spin benchmark (Spin itself is not installable on the build machines). Test support
//! only: never shipped. [`start`] runs it in-process; the `spin-test-host MANIFEST [ADDR]` binary
//! runs it on its own.
//!
//! What it follows from the manifest (`spin.toml` v2, the component named `portcullis`):
//! `source`, `environment`, `key_value_stores` (only granted labels open) and
//! `allowed_outbound_hosts` (other origins get `HttpRequestDenied`, as under Spin).
//! What it provides: `wasi:http@0.3` (incoming and outgoing), `wasi:cli`/`clocks`/`random`, and
//! `spin:key-value@3.0.0` and `wasi:keyvalue@0.2.0-draft2` (`store`, `atomics`) over one
//! in-memory map shared by every instance, so state outlives a request as Spin's SQLite store
//! does. Like Spin, it copies the client's headers and then *appends* `spin-client-addr` with
//! the connection's address (a client-sent one comes first), and removes `Connection`; it hands
//! the component every other header (two `Host` lines, `Transfer-Encoding`), answers an empty
//! 500 itself to a header value that is not UTF-8, closes the connection on an absolute-form
//! target that names another host than `Host`, and its `wasi:keyvalue` swap from "no entry"
//! writes blindly, as Spin's SQLite store does. Unlike
//! Spin 4.1, which reuses an instance for up to 128 requests, it instantiates the component per
//! request: the shortest instance lifetime Spin allows, so state a component keeps in memory
//! is never there for the next request. The suite also runs on real Spin (`tests/e2e/e2e_spin_real.rs`),
//! which reuses instances, so both lifetimes are tested.
//!
//! The component's stdout (the access log) is collected line by line in [`Server::logs`], and
//! echoed to the process's stdout when asked.

mod kv;
mod wasi_kv;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p3::bindings::Service;
use wasmtime_wasi_http::p3::Request as WasiRequest;
use wasmtime_wasi_http::{
    default_send_request, Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx,
    WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

#[derive(serde::Deserialize)]
struct Manifest {
    component: BTreeMap<String, ComponentSpec>,
}

#[derive(serde::Deserialize)]
struct ComponentSpec {
    source: String,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
}

/// What every request's instance shares.
struct App {
    engine: Engine,
    linker: Linker<Ctx>,
    component: Component,
    spec: ComponentSpec,
    kv: kv::Shared,
    logs: Arc<Mutex<Vec<String>>>,
    instantiate_us: Arc<Mutex<Vec<u64>>>,
    echo: bool,
}

/// One instance's state.
struct Ctx {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: Outbound,
    kv: kv::State,
}

impl WasiView for Ctx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Ctx {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outbound HTTP as Spin allows it: only to `allowed_outbound_hosts`. With `incoming` set, the
/// hooks that turn the client's request into the component's: Spin 4.1 hands the component
/// every header but `Connection` (two `Host` lines, `Transfer-Encoding` beside
/// `Content-Length`), where wasmtime's default would also hide `Host`, `Transfer-Encoding` and
/// the other hop-by-hop names.
struct Outbound {
    allowed: Arc<Vec<String>>,
    incoming: bool,
}

impl WasiHttpHooks for Outbound {
    fn forbidden_header_filter(&mut self) -> wasmtime_wasi_http::ForbiddenHeaderFilter {
        if self.incoming {
            Arc::new(|name| name == http::header::CONNECTION)
        } else {
            Arc::new(|name| wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name))
        }
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                    ),
                    HttpError,
                >,
            > + Send,
    > {
        _ = fut;
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("http");
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let origin = format!("{scheme}://{}:{port}", uri.host().unwrap_or(""));
        let allowed = self
            .allowed
            .iter()
            .any(|p| portcullis_core::config::outbound_allowed(p, &origin));
        Box::new(async move {
            if !allowed {
                eprintln!("spin-test-host: outbound request to {origin} denied (not in allowed_outbound_hosts)");
                return Err(HttpError::HttpRequestDenied);
            }
            let (res, io) = default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// A running host.
pub struct Server {
    pub addr: std::net::SocketAddr,
    /// The component's stdout lines, in order.
    pub logs: Arc<Mutex<Vec<String>>>,
    /// How long each request's instantiation took, in microseconds.
    pub instantiate_us: Arc<Mutex<Vec<u64>>>,
    /// The key-value stores, by label, as the component left them (for tests to inspect).
    pub stores: StoreData,
}

/// Every key-value store's entries, by store label.
pub type StoreData = kv::Shared;

/// Loads `manifest`, compiles its component and serves it on `addr` from a background thread.
/// Returns once it accepts connections.
pub fn start(manifest: &Path, addr: &str, echo: bool) -> Result<Server, String> {
    let src =
        std::fs::read_to_string(manifest).map_err(|e| format!("{}: {e}", manifest.display()))?;
    let mut parsed: Manifest =
        toml::from_str(&src).map_err(|e| format!("{}: {e}", manifest.display()))?;
    let spec = parsed
        .component
        .remove("portcullis")
        .ok_or("no [component.portcullis] in the manifest")?;
    let wasm = manifest
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(&spec.source);

    let mut config = wasmtime::Config::new();
    config.wasm_component_model_async(true);
    let engine = Engine::new(&config).map_err(|e| format!("engine: {e}"))?;
    let component =
        Component::from_file(&engine, &wasm).map_err(|e| format!("{}: {e}", wasm.display()))?;
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .and_then(|()| wasmtime_wasi::p3::add_to_linker(&mut linker))
        .and_then(|()| wasmtime_wasi_http::p3::add_to_linker(&mut linker))
        .and_then(|()| kv::add_to_linker(&mut linker))
        .and_then(|()| wasi_kv::add_to_linker(&mut linker))
        .map_err(|e| format!("linking: {e}"))?;
    let logs = Arc::new(Mutex::new(Vec::new()));
    let instantiate_us = Arc::new(Mutex::new(Vec::new()));
    let stores = kv::Shared::default();
    let app = Arc::new(App {
        instantiate_us: instantiate_us.clone(),
        engine,
        linker,
        component,
        spec,
        kv: stores.clone(),
        logs: logs.clone(),
        echo,
    });
    let listener = std::net::TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio: {e}"))?;
    std::thread::spawn(move || runtime.block_on(accept(app, listener)));
    Ok(Server {
        addr: local,
        logs,
        instantiate_us,
        stores,
    })
}

async fn accept(app: Arc<App>, listener: std::net::TcpListener) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        // Kinder than Spin 4.1 here, knowingly: Spin does not set TCP_NODELAY, so when it writes
        // an answer's head before the component's body is ready, the body's small second write
        // waits for the client's delayed ACK (40 ms; BENCHMARKS.md, "Spin"). Real Spin hands a
        // body that is the upstream's own stream over with the head and is rarely caught; this
        // host, without the option, caught nearly every answer, the pass-through's too, so
        // its benchmark figures would say nothing. The end-to-end cases time no answer.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move {
                    // Spin 4.1 closes the connection without an answer when an absolute-form
                    // target names another host than `Host`; an error here makes hyper do that
                    if names_two_hosts(&req) {
                        return Err("absolute-form target and Host disagree");
                    }
                    Ok(serve(app, req, peer).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Whether the request-target is in absolute form and names another authority than `Host`.
fn names_two_hosts<B>(req: &http::Request<B>) -> bool {
    let (Some(target), Some(host)) = (req.uri().authority(), req.headers().get(http::header::HOST))
    else {
        return false;
    };
    !target
        .as_str()
        .eq_ignore_ascii_case(host.to_str().unwrap_or(""))
}

/// The answer's body as it streams out of the component, frame by frame.
pub struct Streamed(tokio::sync::mpsc::Receiver<Result<http_body::Frame<Bytes>, String>>);

impl http_body::Body for Streamed {
    type Data = Bytes;
    type Error = String;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, String>>> {
        self.0.poll_recv(cx)
    }
}

/// Where a request's answer goes: its head once, then its body's frames as they come (Spin
/// streams an answer's body to the client; a host that collected it first would hide a
/// gateway that holds bodies back).
struct Sink {
    head: Option<tokio::sync::oneshot::Sender<Result<http::response::Parts, String>>>,
    /// `None` once the body has ended (the client then has all of it).
    body: Option<tokio::sync::mpsc::Sender<Result<http_body::Frame<Bytes>, String>>>,
}

/// One request, one fresh instance (as Spin does). The instance runs on its own task until
/// its answer's body has gone out and the component's task has exited (as Spin's does).
async fn serve(
    app: Arc<App>,
    req: http::Request<hyper::body::Incoming>,
    peer: std::net::SocketAddr,
) -> http::Response<http_body_util::Either<Full<Bytes>, Streamed>> {
    let (head_tx, head_rx) = tokio::sync::oneshot::channel();
    let (body_tx, body_rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let mut sink = Sink {
            head: Some(head_tx),
            body: Some(body_tx),
        };
        if let Err(e) = run(&app, req, peer, &mut sink).await {
            eprintln!("spin-test-host: {e:#}");
            match sink.head.take() {
                Some(head) => drop(head.send(Err(format!("component failed: {e}")))),
                // the head went out: the body ends with the error (the client sees it cut)
                None => {
                    if let Some(body) = sink.body.take() {
                        drop(body.send(Err(e.to_string())).await);
                    }
                }
            }
        }
    });
    match head_rx.await {
        Ok(Ok(parts)) => {
            http::Response::from_parts(parts, http_body_util::Either::Right(Streamed(body_rx)))
        }
        Ok(Err(why)) => failed(why),
        Err(_) => failed("component failed before answering".into()),
    }
}

fn failed(why: String) -> http::Response<http_body_util::Either<Full<Bytes>, Streamed>> {
    let mut res = http::Response::new(http_body_util::Either::Left(Full::new(Bytes::from(why))));
    *res.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    res
}

async fn run(
    app: &App,
    req: http::Request<hyper::body::Incoming>,
    peer: std::net::SocketAddr,
    sink: &mut Sink,
) -> wasmtime::Result<()> {
    let (mut parts, body) = req.into_parts();
    // Spin 4.1 reads request header values as UTF-8 and answers 500 with an empty body, without
    // running the component, when one is not ("incomplete utf-8 byte sequence")
    if parts
        .headers
        .values()
        .any(|v| std::str::from_utf8(v.as_bytes()).is_err())
    {
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = http::StatusCode::INTERNAL_SERVER_ERROR;
        if let Some(head) = sink.head.take() {
            let _ = head.send(Ok(parts));
        }
        return Ok(());
    }
    // what Spin does to every request: the client's headers stay as sent (a client-sent
    // `spin-client-addr` among them), its own `spin-client-addr` is appended after them, and
    // `Connection` is removed
    parts.headers.remove(http::header::CONNECTION);
    parts.headers.append(
        "spin-client-addr",
        http::HeaderValue::from_str(&peer.to_string())?,
    );
    if parts.uri.authority().is_none() {
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
            .to_string();
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        parts.uri = format!("http://{host}{pq}").parse()?;
    }
    let body = body
        .map_err(|_| wasmtime_wasi_http::p3::bindings::http::types::ErrorCode::HttpProtocolError);
    let stdout = wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(1 << 20);
    let mut wasi = WasiCtx::builder();
    wasi.stdout(stdout.clone()).inherit_stderr();
    for (k, v) in &app.spec.environment {
        wasi.env(k, v);
    }
    let mut store = Store::new(
        &app.engine,
        Ctx {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks: Outbound {
                allowed: Arc::new(app.spec.allowed_outbound_hosts.clone()),
                incoming: false,
            },
            kv: kv::State::new(app.spec.key_value_stores.clone(), app.kv.clone()),
        },
    );
    let started = std::time::Instant::now();
    let service = Service::instantiate_async(&mut store, &app.component, &app.linker).await?;
    if let Ok(mut times) = app.instantiate_us.lock() {
        times.push(started.elapsed().as_micros() as u64);
    }
    let result = handle(&mut store, service, parts, body, sink).await;
    let out = stdout.contents();
    let mut logs = app
        .logs
        .lock()
        .map_err(|_| wasmtime::format_err!("log sink poisoned"))?;
    for line in String::from_utf8_lossy(&out).lines() {
        if app.echo {
            println!("{line}");
        }
        logs.push(line.to_string());
    }
    result
}

async fn handle(
    store: &mut Store<Ctx>,
    service: Service,
    parts: http::request::Parts,
    body: impl http_body::Body<
            Data = Bytes,
            Error = wasmtime_wasi_http::p3::bindings::http::types::ErrorCode,
        > + Send
        + 'static,
    sink: &mut Sink,
) -> wasmtime::Result<()> {
    let mut incoming = Outbound {
        allowed: store.data().hooks.allowed.clone(),
        incoming: true,
    };
    let (req, io) = WasiRequest::from_http(&mut incoming, http::Request::from_parts(parts, body));
    store
        .run_concurrent(async |store| {
            let (res, ()) = tokio::try_join!(
                async {
                    let res = match service.handle(store, req).await? {
                        Ok(res) => res,
                        Err(code) => {
                            return Err(wasmtime::format_err!(
                                "the component answered an error: {code:?}"
                            ))
                        }
                    };
                    let res = store.with(|store| res.into_http(store, async { Ok(()) }))?;
                    let (parts, mut body) = res.into_parts();
                    if let Some(head) = sink.head.take() {
                        let _ = head.send(Ok(parts));
                    }
                    if let Some(out) = &sink.body {
                        while let Some(frame) = body.frame().await {
                            let frame =
                                frame.map_err(|e| wasmtime::format_err!("response body: {e:?}"))?;
                            if out.send(Ok(frame)).await.is_err() {
                                break; // the client went away
                            }
                        }
                    }
                    // the body has ended: the client has all of it now
                    sink.body = None;
                    // as Spin does (it waits for the handler's task to exit), the instance lives
                    // on until the work the component does after its answer is done (a future
                    // it `spawn`ed in its task: a stale entry's refresh, spans to export)
                    std::future::poll_fn(|cx| store.poll_no_interesting_tasks(cx)).await;
                    Ok(())
                },
                async {
                    io.await
                        .map_err(|e| wasmtime::format_err!("request body: {e:?}"))
                }
            )?;
            Ok(res)
        })
        .await?
}
