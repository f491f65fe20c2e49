//! Network-level fuzzing: random and mutated frame sequences against a live broker, over
//! real sockets. After every case the broker must still be up and a second client, connected
//! from the start, must still be served; at the end its log must show no panic.
//!
//! Bounded by default (`FUZZ_NET_CASES`, 400 cases, and `FUZZ_NET_SECONDS`, 20 s, whichever
//! ends first); `FUZZ_NET_SEED` replays a run (every run prints its seed). Longer runs by
//! hand: `FUZZ_NET_CASES=1000000 FUZZ_NET_SECONDS=3600 cargo nextest run -p warren
//! --test raw_protocol net_fuzz`.

use super::*;

/// xorshift64*: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Random bytes, fewer than `max` of them.
    fn junk(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max);
        self.bytes(n)
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The client half of a handshake, sent in one burst (the broker reads it in order).
fn handshake() -> Vec<u8> {
    let mut out = PROTOCOL_HEADER.to_vec();
    let start_ok = Args::default()
        .empty_table()
        .shortstr("PLAIN")
        .longstr(b"\0guest\0guest")
        .shortstr("en_US")
        .done();
    out.extend(method_frame(0, 10, 11, &start_ok));
    out.extend(method_frame(
        0,
        10,
        31,
        &Args::default().u16(2047).u32(131_072).u16(0).done(),
    ));
    out.extend(method_frame(
        0,
        10,
        40,
        &Args::default().shortstr("/").shortstr("").u8(0).done(),
    ));
    out
}

/// One plausible client frame (or publish: three frames) on a small channel number.
fn plausible_frames(rng: &mut Rng) -> Vec<u8> {
    let ch = rng.below(4) as u16;
    let names = [
        "",
        "fuzz-q",
        "amq.direct",
        "amq.topic",
        "amq.rabbitmq.reply-to",
        "x",
    ];
    let name = names[rng.below(names.len())];
    let table = |rng: &mut Rng| -> Vec<u8> {
        match rng.below(3) {
            0 => 0u32.to_be_bytes().to_vec(),
            1 => {
                let entry = table_entry_bool("x-fuzz", true);
                let mut t = (entry.len() as u32).to_be_bytes().to_vec();
                t.extend(entry);
                t
            }
            _ => {
                let junk = rng.junk(12);
                let mut t = (junk.len() as u32).to_be_bytes().to_vec();
                t.extend(junk);
                t
            }
        }
    };
    match rng.below(16) {
        0 => method_frame(ch, 20, 10, &Args::default().shortstr("").done()),
        1 => method_frame(
            ch,
            20,
            40,
            &Args::default().u16(200).shortstr("").u16(0).u16(0).done(),
        ),
        2 => method_frame(ch, 20, 41, &[]),
        3 => {
            let mut a = Args::default()
                .u16(0)
                .shortstr(name)
                .u8(rng.next() as u8)
                .done();
            a.extend(table(rng));
            method_frame(ch, 50, 10, &a)
        }
        4 => {
            let mut a = Args::default()
                .u16(0)
                .shortstr(name)
                .shortstr("amq.direct")
                .shortstr("k")
                .u8(0)
                .done();
            a.extend(table(rng));
            method_frame(ch, 50, 20, &a)
        }
        5 | 6 => {
            let size = rng.below(300) as u64;
            let mut out = method_frame(ch, 60, 40, &publish_args(name, "fuzz-q"));
            out.extend(frame(FRAME_HEADER, ch, &content_header(size)));
            let body = rng.bytes(size as usize);
            for part in body.chunks(rng.below(120) + 1) {
                out.extend(frame(FRAME_BODY, ch, part));
            }
            out
        }
        7 => {
            let mut a = Args::default()
                .u16(0)
                .shortstr(name)
                .shortstr("")
                .u8(rng.next() as u8)
                .done();
            a.extend(table(rng));
            method_frame(ch, 60, 20, &a)
        }
        8 => method_frame(
            ch,
            60,
            80,
            &Args::default()
                .u64(rng.next() % 8)
                .u8(rng.next() as u8 & 1)
                .done(),
        ),
        9 => method_frame(
            ch,
            60,
            10,
            &Args::default().u32(0).u16(rng.below(4) as u16).u8(0).done(),
        ),
        10 => method_frame(
            ch,
            60,
            70,
            &Args::default().u16(0).shortstr(name).u8(0).done(),
        ),
        11 => method_frame(ch, 90 - 5 * rng.below(2) as u16, 10, &[]),
        12 => method_frame(ch, 40, 10, &{
            let mut a = Args::default()
                .u16(0)
                .shortstr("fuzz-x")
                .shortstr(["direct", "fanout", "topic", "headers", "bogus"][rng.below(5)])
                .u8(rng.next() as u8)
                .done();
            a.extend(table(rng));
            a
        }),
        13 => frame(FRAME_HEARTBEAT, 0, &[]),
        14 => frame(FRAME_BODY, ch, &rng.junk(16)),
        _ => method_frame(
            0,
            10,
            50,
            &Args::default().u16(200).shortstr("").u16(0).u16(0).done(),
        ),
    }
}

/// Damages `bytes` in one of a few ways that reach different decoder paths.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    if bytes.is_empty() {
        return;
    }
    match rng.below(6) {
        0 => {
            for _ in 0..=rng.below(4) {
                let i = rng.below(bytes.len());
                bytes[i] ^= 1 << rng.below(8);
            }
        }
        1 => {
            let i = rng.below(bytes.len());
            bytes[i] = rng.next() as u8;
        }
        2 => bytes.truncate(rng.below(bytes.len())),
        3 => {
            let i = rng.below(bytes.len() + 1);
            let mut junk = rng.junk(16);
            junk.push(rng.next() as u8);
            bytes.splice(i..i, junk);
        }
        4 => {
            // A size field: any of the 4 bytes after a frame's type and channel.
            let i = rng.below(bytes.len());
            for b in bytes.iter_mut().skip(i).take(4) {
                *b = rng.next() as u8;
            }
        }
        _ => {
            let i = rng.below(bytes.len());
            let j = (i + rng.below(64)).min(bytes.len());
            let copy = bytes[i..j].to_vec();
            bytes.splice(j..j, copy);
        }
    }
}

/// One case's bytes: mostly a valid handshake, then plausible frames, some mutated.
fn case(rng: &mut Rng) -> Vec<u8> {
    let mut out = match rng.below(10) {
        0 => rng.junk(64),
        1 => {
            let mut h = handshake();
            mutate(rng, &mut h);
            h
        }
        _ => handshake(),
    };
    for _ in 0..rng.below(12) + 1 {
        let mut f = plausible_frames(rng);
        if rng.chance(30) {
            mutate(rng, &mut f);
        }
        out.extend(f);
    }
    out
}

/// Sends `bytes` and reads whatever comes back until the broker goes quiet or closes.
fn play(addr: &str, bytes: &[u8]) {
    let Ok(mut sock) = TcpStream::connect(addr) else {
        panic!("the broker stopped accepting connections");
    };
    sock.set_read_timeout(Some(Duration::from_millis(30)))
        .unwrap();
    sock.set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let _ = sock.write_all(bytes);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut chunk = [0u8; 65536];
    while Instant::now() < deadline {
        match sock.read(&mut chunk) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return,
            Err(_) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn net_fuzz_broker_survives_random_and_mutated_frames() {
    if external_broker() {
        return;
    }
    let seed = env_number(
        "FUZZ_NET_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    )
    .max(1);
    let cases = env_number("FUZZ_NET_CASES", 400);
    let limit = Duration::from_secs(env_number("FUZZ_NET_SECONDS", 20));
    eprintln!("net_fuzz: FUZZ_NET_SEED={seed}, up to {cases} cases or {limit:?}");
    let node = Node::start("net-fuzz", &[]);
    let broker = node.broker();
    // The second client: connected before the fuzzing starts, used after every case.
    let (_conn, ch) = connect_channel(broker).await;
    let q = declare_queue(&ch, "bystander").await;
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut played = 0u64;
    while played < cases && started.elapsed() < limit {
        let bytes = case(&mut rng);
        let addr = broker.addr.clone();
        tokio::task::spawn_blocking(move || play(&addr, &bytes))
            .await
            .expect("case ran");
        played += 1;
        publish(&ch, "", &q, b"still here").await;
        assert_eq!(
            get_body(&ch, &q).await.as_deref(),
            Some(&b"still here"[..]),
            "the bystander is not served after case {played} (seed {seed})"
        );
    }
    eprintln!("net_fuzz: {played} cases in {:?}", started.elapsed());
    broker_still_healthy(broker).await;
    let log = node.stderr_text();
    assert!(
        !log.contains("panicked"),
        "the broker panicked (seed {seed}):\n{log}"
    );
}
