//! Wire-level tests with hand-written frames over a plain TcpStream: protocol header
//! negotiation, handshake/heartbeat timeouts, and the broker's reaction to malformed frames.
//! Each case records the exact frame RabbitMQ 3.10 answered with.
mod common;

use common::*;
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const PROTOCOL_HEADER: &[u8] = b"AMQP\x00\x00\x09\x01";
const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_HEARTBEAT: u8 = 8;
const FRAME_END: u8 = 0xCE;

// ------------------------------------------------------------------------- encoding

fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 8);
    f.push(kind);
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(FRAME_END);
    f
}

fn method_payload(class: u16, method: u16, args: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&class.to_be_bytes());
    p.extend_from_slice(&method.to_be_bytes());
    p.extend_from_slice(args);
    p
}

fn method_frame(channel: u16, class: u16, method: u16, args: &[u8]) -> Vec<u8> {
    frame(FRAME_METHOD, channel, &method_payload(class, method, args))
}

#[derive(Default)]
struct Args(Vec<u8>);

impl Args {
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn shortstr(mut self, s: &str) -> Self {
        self.0.push(s.len() as u8);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn longstr(mut self, s: &[u8]) -> Self {
        self.0.extend_from_slice(&(s.len() as u32).to_be_bytes());
        self.0.extend_from_slice(s);
        self
    }
    /// A field table whose entries are all booleans or nested tables given as raw bytes.
    fn table_raw(mut self, encoded_entries: &[u8]) -> Self {
        self.0
            .extend_from_slice(&(encoded_entries.len() as u32).to_be_bytes());
        self.0.extend_from_slice(encoded_entries);
        self
    }
    fn empty_table(self) -> Self {
        self.table_raw(&[])
    }
    fn done(self) -> Vec<u8> {
        self.0
    }
}

fn table_entry_bool(key: &str, v: bool) -> Vec<u8> {
    let mut e = vec![key.len() as u8];
    e.extend_from_slice(key.as_bytes());
    e.push(b't');
    e.push(v as u8);
    e
}

fn table_entry_table(key: &str, inner: &[u8]) -> Vec<u8> {
    let mut e = vec![key.len() as u8];
    e.extend_from_slice(key.as_bytes());
    e.push(b'F');
    e.extend_from_slice(&(inner.len() as u32).to_be_bytes());
    e.extend_from_slice(inner);
    e
}

/// content header payload: class 60, weight 0, body size, property flags 0.
/// `basic.publish` arguments: `exchange`, `routing_key`, no mandatory/immediate.
fn publish_args(exchange: &str, routing_key: &str) -> Vec<u8> {
    Args::default()
        .u16(0)
        .shortstr(exchange)
        .shortstr(routing_key)
        .u8(0)
        .done()
}

fn content_header(body_size: u64) -> Vec<u8> {
    Args::default().u16(60).u16(0).u64(body_size).u16(0).done()
}

// ------------------------------------------------------------------------- decoding

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Bool(bool),
    Int(i64),
    Str(Vec<u8>),
    Table(BTreeMap<String, Value>),
    Other,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        s
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take(2).try_into().unwrap())
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take(8).try_into().unwrap())
    }
    fn shortstr(&mut self) -> String {
        let n = self.u8() as usize;
        String::from_utf8_lossy(self.take(n)).into_owned()
    }
    fn longstr(&mut self) -> Vec<u8> {
        let n = self.u32() as usize;
        self.take(n).to_vec()
    }
    fn table(&mut self) -> BTreeMap<String, Value> {
        let n = self.u32() as usize;
        let end = self.pos + n;
        let mut t = BTreeMap::new();
        while self.pos < end {
            let k = self.shortstr();
            let v = self.value();
            t.insert(k, v);
        }
        t
    }
    fn value(&mut self) -> Value {
        match self.u8() {
            b't' => Value::Bool(self.u8() != 0),
            b'b' => Value::Int(self.u8() as i8 as i64),
            b'B' => Value::Int(self.u8() as i64),
            b's' => Value::Int(self.u16() as i16 as i64),
            b'u' => Value::Int(self.u16() as i64),
            b'I' => Value::Int(self.u32() as i32 as i64),
            b'i' => Value::Int(self.u32() as i64),
            b'l' | b'T' => Value::Int(self.u64() as i64),
            b'f' => {
                self.take(4);
                Value::Other
            }
            b'd' => {
                self.take(8);
                Value::Other
            }
            b'D' => {
                self.take(5);
                Value::Other
            }
            b'S' | b'x' => Value::Str(self.longstr()),
            b'A' => {
                let n = self.u32() as usize;
                self.take(n);
                Value::Other
            }
            b'F' => Value::Table(self.table()),
            b'V' => Value::Other,
            other => panic!("unknown field type {other:#x}"),
        }
    }
}

#[derive(Debug)]
struct Frame {
    kind: u8,
    channel: u16,
    payload: Vec<u8>,
}

impl Frame {
    fn class_method(&self) -> (u16, u16) {
        assert_eq!(self.kind, FRAME_METHOD, "not a method frame: {self:?}");
        let mut c = Cursor::new(&self.payload);
        (c.u16(), c.u16())
    }
    fn args(&self) -> Cursor<'_> {
        let mut c = Cursor::new(&self.payload);
        c.take(4);
        c
    }
}

/// What the broker did in response to our input.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// connection.close (10,50) from the broker.
    ConnectionClose {
        code: u16,
        text: String,
        class: u16,
        method: u16,
    },
    /// channel.close (20,40) from the broker.
    ChannelClose {
        channel: u16,
        code: u16,
        text: String,
        class: u16,
        method: u16,
    },
    /// TCP closed without a close method.
    Eof,
}

struct Conn {
    sock: TcpStream,
    buf: Vec<u8>,
    frame_max: u32,
    channel_max: u16,
    server_properties: BTreeMap<String, Value>,
    mechanisms: String,
    locales: String,
}

impl Conn {
    fn tcp(broker: &Broker) -> TcpStream {
        let sock = TcpStream::connect(&broker.addr).expect("tcp connect");
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        sock.set_nodelay(true).unwrap();
        sock
    }

    /// A connection over `sock` with nothing negotiated yet.
    fn over(sock: TcpStream) -> Conn {
        Conn {
            sock,
            buf: Vec::new(),
            frame_max: 0,
            channel_max: 0,
            server_properties: BTreeMap::new(),
            mechanisms: String::new(),
            locales: String::new(),
        }
    }

    /// A new TCP connection to `broker`, before the protocol header.
    fn fresh(broker: &Broker) -> Conn {
        Conn::over(Self::tcp(broker))
    }

    fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).expect("write");
    }

    /// Reads one frame; None on EOF/reset. Panics on timeout.
    fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 7 {
                let size = u32::from_be_bytes(self.buf[3..7].try_into().unwrap()) as usize;
                if self.buf.len() >= size + 8 {
                    let raw: Vec<u8> = self.buf.drain(..size + 8).collect();
                    assert_eq!(raw[size + 7], FRAME_END, "broker frame end");
                    return Some(Frame {
                        kind: raw[0],
                        channel: u16::from_be_bytes([raw[1], raw[2]]),
                        payload: raw[7..7 + size].to_vec(),
                    });
                }
            }
            let mut chunk = [0u8; 65536];
            match self.sock.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    panic!("timed out waiting for a frame from the broker")
                }
                Err(_) => return None,
            }
        }
    }

    /// Reads a method frame (skipping heartbeats), asserting its class/method.
    fn expect_method(&mut self, class: u16, method: u16) -> Frame {
        loop {
            let f = self.read_frame().expect("connection closed unexpectedly");
            if f.kind == FRAME_HEARTBEAT {
                continue;
            }
            assert_eq!(f.class_method(), (class, method), "unexpected frame {f:?}");
            return f;
        }
    }

    /// Performs the full handshake with the given tune-ok values (0 = accept server's).
    fn open_with(broker: &Broker, channel_max: u16, frame_max: u32, heartbeat: u16) -> Conn {
        let mut c = Conn::fresh(broker);
        c.send(PROTOCOL_HEADER);
        let start = c.expect_method(10, 10);
        let mut a = start.args();
        assert_eq!(
            (a.u8(), a.u8()),
            (0, 9),
            "connection.start version-major/minor"
        );
        c.server_properties = a.table();
        c.mechanisms = String::from_utf8(a.longstr()).unwrap();
        c.locales = String::from_utf8(a.longstr()).unwrap();
        let caps = table_entry_table(
            "capabilities",
            &[
                table_entry_bool("authentication_failure_close", true),
                table_entry_bool("consumer_cancel_notify", true),
            ]
            .concat(),
        );
        let start_ok = Args::default()
            .table_raw(&caps)
            .shortstr("PLAIN")
            .longstr(b"\0guest\0guest")
            .shortstr("en_US")
            .done();
        c.send(&method_frame(0, 10, 11, &start_ok));
        let tune = c.expect_method(10, 30);
        let mut a = tune.args();
        let (s_ch, s_fm, _s_hb) = (a.u16(), a.u32(), a.u16());
        c.channel_max = if channel_max == 0 { s_ch } else { channel_max };
        c.frame_max = if frame_max == 0 { s_fm } else { frame_max };
        c.send(&method_frame(
            0,
            10,
            31,
            &Args::default()
                .u16(c.channel_max)
                .u32(c.frame_max)
                .u16(heartbeat)
                .done(),
        ));
        c.send(&method_frame(
            0,
            10,
            40,
            &Args::default().shortstr("/").shortstr("").u8(0).done(),
        ));
        c.expect_method(10, 41);
        c
    }

    fn open(broker: &Broker) -> Conn {
        Self::open_with(broker, 0, 0, 0)
    }

    fn open_channel(&mut self, ch: u16) {
        self.send(&method_frame(
            ch,
            20,
            10,
            &Args::default().shortstr("").done(),
        ));
        let ok = self.expect_method(20, 11);
        assert_eq!(ok.channel, ch);
    }

    /// Reads until the broker closes the connection or a channel; answers a connection.close
    /// with close-ok and checks that the socket is then closed.
    fn outcome(&mut self) -> Outcome {
        loop {
            let Some(f) = self.read_frame() else {
                return Outcome::Eof;
            };
            if f.kind != FRAME_METHOD {
                continue;
            }
            match f.class_method() {
                (10, 50) => {
                    let mut a = f.args();
                    let out = Outcome::ConnectionClose {
                        code: a.u16(),
                        text: a.shortstr(),
                        class: a.u16(),
                        method: a.u16(),
                    };
                    let _ = self.sock.write_all(&method_frame(0, 10, 51, &[]));
                    // After close-ok the broker closes the socket.
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while Instant::now() < deadline {
                        match self.read_frame() {
                            None => return out,
                            Some(_) => continue,
                        }
                    }
                    panic!("socket not closed after close-ok");
                }
                (20, 40) => {
                    let mut a = f.args();
                    return Outcome::ChannelClose {
                        channel: f.channel,
                        code: a.u16(),
                        text: a.shortstr(),
                        class: a.u16(),
                        method: a.u16(),
                    };
                }
                _ => continue,
            }
        }
    }
}

/// Asserts the broker closed the connection with `code` (and class/method) and returns text.
#[track_caller]
fn assert_conn_close(out: Outcome, code: u16, class: u16, method: u16) -> String {
    match out {
        Outcome::ConnectionClose {
            code: c,
            text,
            class: cl,
            method: m,
        } => {
            assert_eq!(
                (c, cl, m),
                (code, class, method),
                "connection.close text: {text}"
            );
            text
        }
        other => panic!("expected connection.close {code}, got {other:?}"),
    }
}

/// After a malformed-input case: a brand-new client connects and does real work.
async fn broker_still_healthy(broker: &Broker) {
    let (_c, ch) = connect_channel(broker).await;
    let q = declare_queue(&ch, "healthy").await;
    publish(&ch, "", &q, b"ok").await;
    wait_ready(&ch, &q, 1).await;
    assert_eq!(get_body(&ch, &q).await.unwrap(), b"ok");
}

/// Reads raw bytes until EOF (bounded), for protocol-header negotiation.
fn read_to_eof(sock: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while Instant::now() < deadline {
        match sock.read(&mut chunk) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                continue
            }
            Err(_) => return (got, true),
        }
    }
    (got, false)
}

// ------------------------------------------------------------------ protocol header

async fn bad_header_case(header: &[u8]) {
    let broker = Broker::start();
    let mut sock = Conn::tcp(&broker);
    sock.write_all(header).unwrap();
    let (got, closed) = read_to_eof(&mut sock, Duration::from_secs(5));
    // RabbitMQ 3.10: replies with its own protocol header "AMQP\0\0\x09\x01" and closes.
    assert_eq!(got, PROTOCOL_HEADER, "reply to header {header:?}");
    assert!(closed, "socket must be closed");
    broker_still_healthy(&broker).await;
}

#[tokio::test]
async fn wrong_protocol_revision_gets_supported_header_and_close() {
    bad_header_case(b"AMQP\x00\x00\x09\x02").await;
}

/// RabbitMQ 3.10 still speaks AMQP 0-8 to the 0-8 header (`AMQP 1 1 8 0`, and to the old
/// 0-9 form `AMQP 1 1 9 1`): it sends a version-8.0 connection.start. Warren does not speak
/// 0-8; it answers as RabbitMQ answers any version it does not speak (as for `AMQP 0 0 9 0`,
/// checked side by side): its own header, then close. See compatibility.md.
#[tokio::test]
async fn amqp_0_8_header_gets_supported_header_and_close() {
    bad_header_case(b"AMQP\x01\x01\x08\x00").await;
}

#[tokio::test]
async fn amqp_1_0_header_gets_supported_header_and_close() {
    bad_header_case(b"AMQP\x00\x01\x00\x00").await;
}

#[tokio::test]
async fn http_request_gets_supported_header_and_close() {
    bad_header_case(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
}

#[tokio::test]
async fn connection_start_advertises_version_mechanisms_and_capabilities() {
    let broker = Broker::start();
    let c = Conn::open(&broker);
    let mechs: Vec<&str> = c.mechanisms.split(' ').collect();
    assert!(mechs.contains(&"PLAIN"), "{mechs:?}");
    // RabbitMQ 3.10 offers "PLAIN AMQPLAIN" and locale "en_US".
    assert_eq!(c.locales, "en_US");
    let Some(Value::Table(caps)) = c.server_properties.get("capabilities") else {
        panic!("no capabilities table in {:?}", c.server_properties)
    };
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        assert_eq!(
            caps.get(cap),
            Some(&Value::Bool(true)),
            "capability {cap}: {caps:?}"
        );
    }
    for key in ["product", "version", "platform"] {
        assert!(
            matches!(c.server_properties.get(key), Some(Value::Str(_))),
            "server property {key}"
        );
    }
}

/// Sends header + start-ok with bad credentials; `caps` is the raw client-properties table.
fn bad_login(broker: &Broker, client_properties: &[u8]) -> Outcome {
    let mut c = Conn::fresh(broker);
    c.send(PROTOCOL_HEADER);
    c.expect_method(10, 10);
    let start_ok = Args::default()
        .table_raw(client_properties)
        .shortstr("PLAIN")
        .longstr(b"\0guest\0not-the-password")
        .shortstr("en_US")
        .done();
    c.send(&method_frame(0, 10, 11, &start_ok));
    c.outcome()
}

#[tokio::test]
async fn bad_login_with_auth_failure_close_capability_gets_403() {
    let broker = Broker::start();
    let caps = table_entry_table(
        "capabilities",
        &table_entry_bool("authentication_failure_close", true),
    );
    let out = bad_login(&broker, &caps);
    // RabbitMQ 3.10: connection.close 403 "ACCESS_REFUSED - Login was refused using
    // authentication mechanism PLAIN. For details see the broker logfile.", class 0 method 0,
    // sent in place of connection.tune.
    let text = assert_conn_close(out, 403, 0, 0);
    assert_eq!(text, "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.");
    broker_still_healthy(&broker).await;
}

#[tokio::test]
async fn bad_login_without_capability_just_closes_socket() {
    let broker = Broker::start();
    // RabbitMQ 3.10: a client that did not announce authentication_failure_close gets no
    // connection.close at all; the TCP connection is simply closed.
    assert_eq!(bad_login(&broker, &[]), Outcome::Eof);
    broker_still_healthy(&broker).await;
}

#[tokio::test]
async fn unsupported_mechanism_is_rejected() {
    let broker = Broker::start();
    let mut c = Conn::fresh(&broker);
    c.send(PROTOCOL_HEADER);
    c.expect_method(10, 10);
    let start_ok = Args::default()
        .empty_table()
        .shortstr("NO-SUCH-MECH")
        .longstr(b"x")
        .shortstr("en_US")
        .done();
    c.send(&method_frame(0, 10, 11, &start_ok));
    // RabbitMQ 3.10 (client announced no capabilities): the socket is simply closed, no
    // connection.close.
    assert_eq!(c.outcome(), Outcome::Eof);
    broker_still_healthy(&broker).await;
}

#[tokio::test]
async fn tune_values_from_server() {
    let broker = Broker::start();
    let mut sock = Conn::tcp(&broker);
    sock.write_all(PROTOCOL_HEADER).unwrap();
    let mut c = Conn::over(sock);
    c.expect_method(10, 10);
    let start_ok = Args::default()
        .empty_table()
        .shortstr("PLAIN")
        .longstr(b"\0guest\0guest")
        .shortstr("en_US")
        .done();
    c.send(&method_frame(0, 10, 11, &start_ok));
    let tune = c.expect_method(10, 30);
    let mut a = tune.args();
    // RabbitMQ 3.10 defaults: channel_max 2047, frame_max 131072, heartbeat 60.
    assert_eq!((a.u16(), a.u32(), a.u16()), (2047, 131072, 60));
}

// ------------------------------------------------------------------ timeouts

#[tokio::test]
async fn silent_client_after_header_is_dropped_by_handshake_timeout() {
    let broker = Broker::start();
    let mut sock = Conn::tcp(&broker);
    sock.write_all(PROTOCOL_HEADER).unwrap();
    let t0 = Instant::now();
    let (_got, closed) = read_to_eof(&mut sock, Duration::from_secs(15));
    let elapsed = t0.elapsed();
    // RabbitMQ 3.10: handshake_timeout is 10 s; connection.start is sent, then the socket is
    // closed (no connection.close) when start-ok never comes.
    assert!(closed, "not closed within 15 s");
    assert!(
        elapsed >= Duration::from_secs(5),
        "closed too early: {elapsed:?}"
    );
}

#[tokio::test]
async fn silent_client_without_header_is_dropped_by_handshake_timeout() {
    let broker = Broker::start();
    let mut sock = Conn::tcp(&broker);
    let t0 = Instant::now();
    let (got, closed) = read_to_eof(&mut sock, Duration::from_secs(15));
    let elapsed = t0.elapsed();
    assert!(closed, "not closed within 15 s");
    assert!(
        got.is_empty(),
        "nothing is sent before the client's header: {got:?}"
    );
    assert!(
        elapsed >= Duration::from_secs(5),
        "closed too early: {elapsed:?}"
    );
}

#[tokio::test]
async fn heartbeat_timeout_closes_silent_connection() {
    let broker = Broker::start();
    let mut c = Conn::open_with(&broker, 0, 0, 1);
    let t0 = Instant::now();
    // We never send anything (not even heartbeats); the broker sends heartbeats and then
    // gives up on us.
    let mut heartbeats = 0;
    let result;
    loop {
        match c.read_frame() {
            Some(f) if f.kind == FRAME_HEARTBEAT => {
                assert_eq!(f.channel, 0);
                assert!(f.payload.is_empty());
                heartbeats += 1;
            }
            Some(f) if f.kind == FRAME_METHOD && f.class_method() == (10, 50) => {
                result = "connection.close";
                break;
            }
            Some(f) => panic!("unexpected frame {f:?}"),
            None => {
                result = "eof";
                break;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(6),
            "still open after {:?}",
            t0.elapsed()
        );
    }
    let elapsed = t0.elapsed();
    // RabbitMQ 3.10 with heartbeat=1: sends heartbeat frames every ~1 s, and closes the TCP
    // connection (no connection.close) after ~2-3 s of client silence.
    assert_eq!(
        result, "eof",
        "RabbitMQ 3.10 just closes the socket on heartbeat timeout"
    );
    assert!(elapsed <= Duration::from_secs(4), "{elapsed:?}");
    assert!(heartbeats >= 1);
    broker_still_healthy(&broker).await;
}

/// A client that stops reading its socket: once the broker could write nothing for the send
/// timeout (no heartbeats negotiated here), the connection is closed, its consumer removed
/// and its unacknowledged deliveries requeued; everyone else is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_stops_reading_is_disconnected_and_its_deliveries_requeued() {
    if external_broker() {
        return; // Warren's --send-timeout; RabbitMQ's is a config-file setting.
    }
    let broker = Broker::start_with_args(&["--send-timeout", "1"]);
    let (_conn, ch) = connect_channel(&broker).await;
    let q = declare_queue(&ch, "unread").await;
    // 64 MiB: far more than the socket buffers on both sides can hold.
    let body = vec![b'x'; 256 * 1024];
    for _ in 0..256 {
        publish(&ch, "", &q, &body).await;
    }
    wait_ready(&ch, &q, 256).await;

    let mut c = Conn::open_with(&broker, 0, 0, 0);
    c.open_channel(1);
    let consume = Args::default()
        .u16(0)
        .shortstr(&q)
        .shortstr("never-reads")
        .u8(0) // no-local, no-ack, exclusive, no-wait: all off (manual acks)
        .empty_table()
        .done();
    c.send(&method_frame(1, 60, 20, &consume));
    c.expect_method(60, 21);
    // From here on the client reads nothing.
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(20);
    loop {
        let info = passive_declare(&ch, &q)
            .await
            .expect("passive declare while the other client stalls");
        if info.consumer_count() == 0 && info.message_count() == 256 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {} consumer(s), {} ready after {:?}",
            info.consumer_count(),
            info.message_count(),
            t0.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "closed before the timeout"
    );
    broker_still_healthy(&broker).await;
}

#[tokio::test]
async fn heartbeating_client_stays_connected() {
    let broker = Broker::start();
    let mut c = Conn::open_with(&broker, 0, 0, 1);
    let t0 = Instant::now();
    c.sock
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    while t0.elapsed() < Duration::from_secs(4) {
        c.send(&frame(FRAME_HEARTBEAT, 0, &[]));
        let mut chunk = [0u8; 64];
        if let Ok(0) = c.sock.read(&mut chunk) {
            panic!("closed although we heartbeat");
        }
    }
    c.sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    c.buf.clear();
    c.open_channel(1);
}

// ------------------------------------------------------------------ malformed frames

#[tokio::test]
async fn bad_frame_end_is_501_frame_error() {
    let broker = Broker::start();
    let mut c = Conn::open(&broker);
    let mut f = method_frame(1, 20, 10, &Args::default().shortstr("").done());
    *f.last_mut().unwrap() = 0x00;
    c.send(&f);
    let out = c.outcome();
    // RabbitMQ 3.10: connection.close 501 "FRAME_ERROR - type 1, all octets = <<0,20,0,10,0>>:
    // {invalid_frame_end_marker,0}", class 0, method 0; socket closed after close-ok.
    let text = assert_conn_close(out, 501, 0, 0);
    assert!(text.starts_with("FRAME_ERROR"), "{text}");
    broker_still_healthy(&broker).await;
}

#[tokio::test]
async fn frame_larger_than_frame_max_is_501() {
    let broker = Broker::start();
    let mut c = Conn::open_with(&broker, 0, 4096, 0);
    c.open_channel(1);
    let big = vec![0u8; 8000];
    c.send(&frame(FRAME_BODY, 1, &big));
    let out = c.outcome();
    // RabbitMQ 3.10: connection.close 501 "FRAME_ERROR - type 3, all octets = <<>>:
    // {frame_too_large,8000,4088}" (limit = frame_max - 8), class 0, method 0.
    let text = assert_conn_close(out, 501, 0, 0);
    assert!(text.starts_with("FRAME_ERROR"), "{text}");
    broker_still_healthy(&broker).await;
}

#[tokio::test]
async fn unknown_frame_type_is_501() {
    let broker = Broker::start();
    let mut c = Conn::open(&broker);
    c.send(&frame(9, 0, b"xyz"));
    let out = c.outcome();
    // RabbitMQ 3.10: connection.close 501 "FRAME_ERROR - type 9, all octets = <<\"xyz\">>:
    // unknown_frame", class 0, method 0.
    assert_conn_close(out, 501, 0, 0);
    broker_still_healthy(&broker).await;
}

#[tokio::test]
async fn unknown_class_and_method() {
    let broker = Broker::start();
    let mut c = Conn::open(&broker);
    c.open_channel(1);
    c.send(&method_frame(1, 99, 99, &[]));
    let out = c.outcome();
    // RabbitMQ 3.10 surprise: an unknown class/method id is NOT answered with
    // connection.close 540/503; the broker just drops the TCP connection.
    assert_eq!(out, Outcome::Eof);
    broker_still_healthy(&broker).await;
}

#[tokio::test]
async fn unknown_method_of_known_class() {
    let broker = Broker::start();
    let mut c = Conn::open(&broker);
    c.open_channel(1);
    c.send(&method_frame(1, 50, 99, &[]));
    let out = c.outcome();
    // RabbitMQ 3.10: same as an unknown class: TCP closed, no connection.close.
    assert_eq!(out, Outcome::Eof);
    broker_still_healthy(&broker).await;
}

#[tokio::test]
async fn method_on_unopened_channel_is_504() {
    let broker = Broker::start();
    let mut c = Conn::open(&broker);
    // queue.declare on channel 5 without channel.open.
    let args = Args::default()
        .u16(0)
        .shortstr("q")
        .u8(0)
        .empty_table()
        .done();
    c.send(&method_frame(5, 50, 10, &args));
    let out = c.outcome();
    // RabbitMQ 3.10: connection.close 504 "CHANNEL_ERROR - expected 'channel.open'" (50,10).
    let text = assert_conn_close(out, 504, 50, 10);
    assert_eq!(text, "CHANNEL_ERROR - expected 'channel.open'");
    broker_still_healthy(&broker).await;
}

#[tokio::test]
async fn channel_open_twice_is_504() {
    let broker = Broker::start();
    let mut c = Conn::open(&broker);
    c.open_channel(1);
    c.send(&method_frame(
        1,
        20,
        10,
        &Args::default().shortstr("").done(),
    ));
    let out = c.outcome();
    // RabbitMQ 3.10: connection.close 504 "CHANNEL_ERROR - second 'channel.open' seen" (20,10).
    let text = assert_conn_close(out, 504, 20, 10);
    assert_eq!(text, "CHANNEL_ERROR - second 'channel.open' seen");
    broker_still_healthy(&broker).await;
}

#[tokio::test]
async fn channel_id_above_channel_max_is_accepted() {
    let broker = Broker::start();
    let mut c = Conn::open_with(&broker, 10, 0, 0);
    // RabbitMQ 3.10 surprise: channel_max limits the NUMBER of open channels, not the channel
    // id. channel.open on id 11 with channel_max=10 gets channel.open-ok.
    c.send(&method_frame(
        11,
        20,
        10,
        &Args::default().shortstr("").done(),
    ));
    let ok = c.expect_method(20, 11);
    assert_eq!(ok.channel, 11);
}

#[tokio::test]
async fn opening_more_channels_than_channel_max_is_530() {
    let broker = Broker::start();
    let mut c = Conn::open_with(&broker, 2, 0, 0);
    c.open_channel(1);
    c.open_channel(2);
    c.send(&method_frame(
        3,
        20,
        10,
        &Args::default().shortstr("").done(),
    ));
    let out = c.outcome();
    // RabbitMQ 3.10: connection.close 530 "NOT_ALLOWED - number of channels opened (2) has
    // reached the negotiated channel_max (2)", with class 0 method 0 (not 20,10).
    let text = assert_conn_close(out, 530, 0, 0);
    assert_eq!(
        text,
        "NOT_ALLOWED - number of channels opened (2) has reached the negotiated channel_max (2)"
    );
    broker_still_healthy(&broker).await;
}

#[tokio::test]
async fn channel_method_on_channel_zero() {
    let broker = Broker::start();
    let mut c = Conn::open(&broker);
    let args = Args::default()
        .u16(0)
        .shortstr("q")
        .u8(0)
        .empty_table()
        .done();
    c.send(&method_frame(0, 50, 10, &args));
    let out = c.outcome();
    // RabbitMQ 3.10: connection.close 504 "CHANNEL_ERROR - unexpected method in connection
    // state running" (50,10).
    let text = assert_conn_close(out, 504, 50, 10);
    assert_eq!(
        text,
        "CHANNEL_ERROR - unexpected method in connection state running"
    );
    broker_still_healthy(&broker).await;
}

#[tokio::test]
async fn truncated_method_arguments() {
    let broker = Broker::start();
    let mut c = Conn::open(&broker);
    c.open_channel(1);
    // queue.declare with the table length promising more bytes than present.
    let args = Args::default().u16(0).shortstr("q").u8(0).u32(100).done();
    c.send(&method_frame(1, 50, 10, &args));
    let out = c.outcome();
    // RabbitMQ 3.10 surprise: not 502 SYNTAX_ERROR but connection.close 501 "FRAME_ERROR -
    // cannot decode <<...>>" carrying the method's ids (50,10).
    let text = assert_conn_close(out, 501, 50, 10);
    assert!(text.starts_with("FRAME_ERROR - cannot decode"), "{text}");
    broker_still_healthy(&broker).await;
}

#[tokio::test]
async fn body_without_header_is_505() {
    let broker = Broker::start();
    let mut c = Conn::open(&broker);
    c.open_channel(1);
    c.send(&frame(FRAME_BODY, 1, b"orphan"));
    let out = c.outcome();
    // RabbitMQ 3.10: connection.close 505 "UNEXPECTED_FRAME - expected method frame, got non
    // method frame instead", class 0, method 0.
    let text = assert_conn_close(out, 505, 0, 0);
    assert_eq!(
        text,
        "UNEXPECTED_FRAME - expected method frame, got non method frame instead"
    );
    broker_still_healthy(&broker).await;
}

#[tokio::test]
async fn header_without_publish_is_505() {
    let broker = Broker::start();
    let mut c = Conn::open(&broker);
    c.open_channel(1);
    c.send(&frame(FRAME_HEADER, 1, &content_header(3)));
    let out = c.outcome();
    // RabbitMQ 3.10: same 505 "UNEXPECTED_FRAME - expected method frame, got non method frame
    // instead" (0,0).
    assert_conn_close(out, 505, 0, 0);
    broker_still_healthy(&broker).await;
}

#[tokio::test]
async fn method_instead_of_content_header_is_505() {
    let broker = Broker::start();
    let mut c = Conn::open(&broker);
    c.open_channel(1);
    let publish = publish_args("", "q");
    c.send(&method_frame(1, 60, 40, &publish));
    c.send(&method_frame(1, 60, 40, &publish));
    let out = c.outcome();
    // RabbitMQ 3.10: connection.close 505 "UNEXPECTED_FRAME - expected content header for
    // class 60, got non content header frame instead" (60,40).
    let text = assert_conn_close(out, 505, 60, 40);
    assert!(
        text.starts_with("UNEXPECTED_FRAME - expected content header for class 60"),
        "{text}"
    );
    broker_still_healthy(&broker).await;
}

#[tokio::test]
async fn body_longer_than_declared_is_tolerated() {
    let broker = Broker::start();
    let mut c = Conn::open(&broker);
    c.open_channel(1);
    let publish = publish_args("", "q");
    c.send(&method_frame(1, 60, 40, &publish));
    c.send(&frame(FRAME_HEADER, 1, &content_header(2)));
    c.send(&frame(FRAME_BODY, 1, b"too long"));
    // RabbitMQ 3.10 surprise: a body frame overrunning the declared body size is NOT an
    // error; the connection stays usable (a new channel opens fine).
    c.open_channel(2);
}

#[tokio::test]
async fn heartbeat_on_nonzero_channel_is_505() {
    let broker = Broker::start();
    let mut c = Conn::open(&broker);
    c.open_channel(1);
    c.send(&frame(FRAME_HEARTBEAT, 1, &[]));
    let out = c.outcome();
    // RabbitMQ 3.10: connection.close 505 (not 501) "UNEXPECTED_FRAME - type 8, all octets =
    // <<>>", class 0, method 0.
    let text = assert_conn_close(out, 505, 0, 0);
    assert!(text.starts_with("UNEXPECTED_FRAME"), "{text}");
    broker_still_healthy(&broker).await;
}

// ------------------------------------------------------------------ happy path on the wire

#[tokio::test]
async fn raw_publish_and_get_round_trip() {
    let broker = Broker::start();
    let mut c = Conn::open(&broker);
    c.open_channel(1);
    let q = unique("raw-q");
    c.send(&method_frame(
        1,
        50,
        10,
        &Args::default()
            .u16(0)
            .shortstr(&q)
            .u8(0b0000_1000)
            .empty_table()
            .done(),
    )); // auto-delete
    let ok = c.expect_method(50, 11);
    let mut a = ok.args();
    assert_eq!(a.shortstr(), q);
    assert_eq!((a.u32(), a.u32()), (0, 0));
    // Publish a 3-byte body split over two body frames.
    let publish = Args::default()
        .u16(0)
        .shortstr("")
        .shortstr(&q)
        .u8(0)
        .done();
    c.send(&method_frame(1, 60, 40, &publish));
    c.send(&frame(FRAME_HEADER, 1, &content_header(3)));
    c.send(&frame(FRAME_BODY, 1, b"ab"));
    c.send(&frame(FRAME_BODY, 1, b"c"));
    // basic.get no-ack
    c.send(&method_frame(
        1,
        60,
        70,
        &Args::default().u16(0).shortstr(&q).u8(1).done(),
    ));
    let get_ok = c.expect_method(60, 71);
    let mut a = get_ok.args();
    let (tag, redelivered, exchange, rk, count) =
        (a.u64(), a.u8(), a.shortstr(), a.shortstr(), a.u32());
    assert_eq!(
        (tag, redelivered, exchange.as_str(), rk.as_str(), count),
        (1, 0, "", q.as_str(), 0)
    );
    let header = c.read_frame().unwrap();
    assert_eq!((header.kind, header.channel), (FRAME_HEADER, 1));
    let mut h = Cursor::new(&header.payload);
    assert_eq!((h.u16(), h.u16(), h.u64(), h.u16()), (60, 0, 3, 0));
    let body = c.read_frame().unwrap();
    assert_eq!(
        (body.kind, body.payload.as_slice()),
        (FRAME_BODY, &b"abc"[..])
    );
    // get-empty carries a cluster-id shortstr (empty).
    c.send(&method_frame(
        1,
        60,
        70,
        &Args::default().u16(0).shortstr(&q).u8(1).done(),
    ));
    let empty = c.expect_method(60, 72);
    assert_eq!(empty.args().shortstr(), "");
    // Clean close.
    c.send(&method_frame(
        0,
        10,
        50,
        &Args::default()
            .u16(200)
            .shortstr("bye")
            .u16(0)
            .u16(0)
            .done(),
    ));
    c.expect_method(10, 51);
}

#[tokio::test]
async fn confirm_acks_carry_increasing_delivery_tags() {
    let broker = Broker::start();
    let mut c = Conn::open(&broker);
    c.open_channel(1);
    c.send(&method_frame(1, 85, 10, &[0]));
    c.expect_method(85, 11);
    let publish = publish_args("amq.direct", "nowhere");
    for _ in 0..5 {
        c.send(&method_frame(1, 60, 40, &publish));
        c.send(&frame(FRAME_HEADER, 1, &content_header(1)));
        c.send(&frame(FRAME_BODY, 1, b"x"));
    }
    // Collect acks until tag 5 is covered; tags strictly increase, multiple may be set.
    let mut last = 0u64;
    while last < 5 {
        let ack = c.expect_method(60, 80);
        let mut a = ack.args();
        let (tag, multiple) = (a.u64(), a.u8());
        assert!(tag > last, "ack tags must increase: {tag} after {last}");
        if multiple == 0 {
            assert_eq!(tag, last + 1, "single ack must not skip tags");
        }
        last = tag;
    }
    assert_eq!(last, 5);
}

#[tokio::test]
async fn channel_close_handshake_and_reuse_of_channel_id() {
    let broker = Broker::start();
    let mut c = Conn::open(&broker);
    c.open_channel(3);
    // Provoke a channel error: passive declare of a missing queue.
    let q = unique("raw-missing");
    c.send(&method_frame(
        3,
        50,
        10,
        &Args::default()
            .u16(0)
            .shortstr(&q)
            .u8(1)
            .empty_table()
            .done(),
    ));
    match c.outcome() {
        Outcome::ChannelClose {
            channel,
            code,
            text,
            class,
            method,
        } => {
            // RabbitMQ 3.10: channel.close 404 "NOT_FOUND - no queue '<q>' in vhost '/'" (50,10)
            assert_eq!((channel, code, class, method), (3, 404, 50, 10));
            assert_eq!(text, format!("NOT_FOUND - no queue '{q}' in vhost '/'"));
        }
        other => panic!("expected channel.close, got {other:?}"),
    }
    // Frames other than close-ok on the closing channel are ignored until close-ok.
    c.send(&method_frame(
        3,
        60,
        10,
        &Args::default().u32(0).u16(1).u8(0).done(),
    ));
    c.send(&method_frame(3, 20, 41, &[]));
    // The id can be opened again afterwards.
    c.open_channel(3);
}

#[tokio::test]
async fn method_with_trailing_bytes_is_501_naming_the_method() {
    let broker = Broker::start();
    let mut c = Conn::open(&broker);
    c.open_channel(1);
    // queue.declare (reserved, "", bits, empty table), one zero byte and "JUNK" after it:
    // the bytes sent to RabbitMQ in the comparison.
    let mut args = Args::default().u16(0).shortstr("").u16(0).u32(0).done();
    args.extend_from_slice(b"JUNK");
    c.send(&method_frame(1, 50, 10, &args));
    // RabbitMQ 3.10: connection.close 501 "FRAME_ERROR - cannot decode
    // <<0,0,0,0,0,0,0,0,0,74,85,78,75>>" on 50.10 (the whole argument bytes, Erlang-printed).
    let text = assert_conn_close(c.outcome(), 501, 50, 10);
    assert_eq!(
        text,
        "FRAME_ERROR - cannot decode <<0,0,0,0,0,0,0,0,0,74,85,78,75>>"
    );
    broker_still_healthy(&broker).await;
}

#[tokio::test]
async fn heartbeat_with_payload_is_501() {
    let broker = Broker::start();
    let mut c = Conn::open(&broker);
    c.send(&frame(FRAME_HEARTBEAT, 0, b"xy"));
    // RabbitMQ 3.10: 501 "FRAME_ERROR - type 8, all octets = <<"xy">>: unknown_frame" on 0.0.
    let text = assert_conn_close(c.outcome(), 501, 0, 0);
    assert_eq!(
        text,
        "FRAME_ERROR - type 8, all octets = <<\"xy\">>: unknown_frame"
    );
    broker_still_healthy(&broker).await;
}

#[tokio::test]
async fn unsolicited_channel_close_ok_is_503() {
    let broker = Broker::start();
    let mut c = Conn::open(&broker);
    c.open_channel(1);
    c.send(&method_frame(1, 20, 41, &[]));
    // RabbitMQ 3.10: connection.close 503 "COMMAND_INVALID - unimplemented method" on 20.41.
    let text = assert_conn_close(c.outcome(), 503, 20, 41);
    assert_eq!(text, "COMMAND_INVALID - unimplemented method");
    broker_still_healthy(&broker).await;
}

#[tokio::test]
async fn unsolicited_connection_close_ok_is_504() {
    let broker = Broker::start();
    let mut c = Conn::open(&broker);
    c.send(&method_frame(0, 10, 51, &[]));
    // RabbitMQ 3.10: 504 "CHANNEL_ERROR - unexpected method in connection state running" on
    // 10.51.
    let text = assert_conn_close(c.outcome(), 504, 10, 51);
    assert_eq!(
        text,
        "CHANNEL_ERROR - unexpected method in connection state running"
    );
    broker_still_healthy(&broker).await;
}

/// A headers table with an unknown field type in a message's content header. Warren keeps
/// the table raw but scans it; RabbitMQ 3.10 decodes it, fails, and answers with a bare
/// 541 "INTERNAL_ERROR" on 0.0 (its channel process crashes). We answer the same.
#[tokio::test]
async fn unknown_field_type_in_message_headers_is_541() {
    let broker = Broker::start();
    let mut c = Conn::open(&broker);
    c.open_channel(1);
    let publish = publish_args("", "nowhere");
    c.send(&method_frame(1, 60, 40, &publish));
    let table = [1, b'k', b'Z']; // key "k", type 'Z' (no such type)
    let header = Args::default()
        .u16(60)
        .u16(0)
        .u64(1)
        .u16(0x2000) // headers present
        .u32(table.len() as u32)
        .done();
    let mut header = header;
    header.extend_from_slice(&table);
    c.send(&frame(FRAME_HEADER, 1, &header));
    c.send(&frame(FRAME_BODY, 1, b"a"));
    let text = assert_conn_close(c.outcome(), 541, 0, 0);
    assert_eq!(text, "INTERNAL_ERROR");
    broker_still_healthy(&broker).await;
}

/// Up to `connection.tune` by hand; returns the socket and the bytes read past tune.
fn up_to_tune(broker: &Broker) -> Conn {
    let mut c = Conn::fresh(broker);
    c.send(PROTOCOL_HEADER);
    c.expect_method(10, 10);
    let start_ok = Args::default()
        .empty_table()
        .shortstr("PLAIN")
        .longstr(b"\0guest\0guest")
        .shortstr("en_US")
        .done();
    c.send(&method_frame(0, 10, 11, &start_ok));
    c.expect_method(10, 30);
    c
}

/// The broker closes the socket without sending anything more (no connection.close).
#[track_caller]
fn assert_dropped_silently(c: &mut Conn) {
    match c.read_frame() {
        None => {}
        Some(f) => panic!("expected the socket closed without a frame, got {f:?}"),
    }
}

/// RabbitMQ 3.10 (raw frames against a local node; it resets the socket): a `tune-ok`
/// outside the offer, below the minimum frame size, or with zero (which RabbitMQ does not
/// read as "no limit") ends the connection without a close frame.
#[tokio::test]
async fn bad_tune_ok_values_drop_the_socket_without_a_close() {
    let broker = Broker::start();
    for (channel_max, frame_max) in [
        (2047u16, 10_000_000u32),
        (2047, 100),
        (2047, 0),
        (65535, 131_072),
        (0, 131_072),
    ] {
        let mut c = up_to_tune(&broker);
        let tune_ok = Args::default()
            .u16(channel_max)
            .u32(frame_max)
            .u16(0)
            .done();
        c.send(&method_frame(0, 10, 31, &tune_ok));
        assert_dropped_silently(&mut c);
    }
    broker_still_healthy(&broker).await;
}

/// RabbitMQ 3.10: `connection.open` before `tune-ok` (or before `start-ok`) ends the
/// connection without a close frame.
#[tokio::test]
async fn methods_out_of_handshake_order_drop_the_socket() {
    let broker = Broker::start();
    let open = Args::default().shortstr("/").shortstr("").u8(0).done();
    let mut c = up_to_tune(&broker);
    c.send(&method_frame(0, 10, 40, &open));
    assert_dropped_silently(&mut c);

    let mut early = Conn::fresh(&broker);
    early.send(PROTOCOL_HEADER);
    early.expect_method(10, 10);
    early.send(&method_frame(0, 10, 40, &open));
    assert_dropped_silently(&mut early);
    broker_still_healthy(&broker).await;
}

#[path = "raw_protocol/closing.rs"]
mod closing;

#[path = "raw_protocol/net_fuzz.rs"]
mod net_fuzz;
