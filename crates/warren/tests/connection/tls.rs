//! AMQPS with lapin (rustls on the client side too): a full publish and consume with a
//! 1 MiB body over TLS, the CA given to the client, and a client that does not trust the
//! server's CA refused. Certificates are made at test time with the openssl command (pika's
//! TLS tests, over OpenSSL, are in tests/python/test_tls.py).

use super::*;
use futures_lite::StreamExt;
use lapin::tcp::OwnedTLSConfig;

struct Certs {
    dir: std::path::PathBuf,
}

impl Certs {
    fn make() -> Certs {
        let dir = std::env::temp_dir().join(unique("warren-tls"));
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("the openssl command (scripts/test installs it)");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        for ca in ["ca", "other-ca"] {
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
                "-days",
                "2",
                "-subj",
                &format!("/CN={ca}"),
            ]);
        }
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ]);
        Certs { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn pem(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap()
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn connect_tls(broker: &Broker, ca_pem: String) -> lapin::Result<lapin::Connection> {
    let port = broker
        .tls_addr
        .as_ref()
        .expect("started with --tls-listen")
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let url = format!("amqps://guest:guest@localhost:{port}/%2f");
    within(
        "lapin amqps connect",
        lapin::Connection::connect_with_config(
            &url,
            lapin::ConnectionProperties::default(),
            OwnedTLSConfig {
                identity: None,
                cert_chain: Some(ca_pem),
            },
            lapin::runtime::default_runtime()?,
        ),
    )
    .await
}

#[tokio::test]
async fn publish_and_consume_over_amqps_with_lapin() {
    if external_broker() {
        return;
    }
    let certs = Certs::make();
    let broker = Broker::start_with_args(&[
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        &certs.path("server.pem"),
        "--tls-key",
        &certs.path("server.key"),
    ]);
    let conn = connect_tls(&broker, certs.pem("ca.pem"))
        .await
        .expect("TLS login");
    let ch = conn.create_channel().await.unwrap();
    let q = declare_queue(&ch, "tls").await;
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    for body in [&b""[..], b"small", &big] {
        publish(&ch, "", &q, body).await;
    }
    let mut consumer = ch
        .basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    for want in [&b""[..], b"small", &big] {
        let d = within("delivery over TLS", consumer.next())
            .await
            .expect("delivery")
            .expect("delivery");
        assert_eq!(d.data, want);
    }
    conn.close(200, "bye".into()).await.unwrap();
    // A client that does not trust the server's CA does not get in; the broker serves on.
    assert!(connect_tls(&broker, certs.pem("other-ca.pem"))
        .await
        .is_err());
    connect_tls(&broker, certs.pem("ca.pem"))
        .await
        .expect("still serving TLS");
}

/// `warren ctl reload_tls` (and SIGHUP) rereads the certificate files: new connections get
/// the new certificate, open ones keep working, and a broken file leaves the previous
/// certificates in use.
#[tokio::test]
async fn reload_tls_switches_certificates_for_new_connections() {
    if external_broker() {
        return;
    }
    let first = Certs::make();
    let second = Certs::make();
    let live = Certs::make(); // the files the broker reads: first's, then second's
    for f in ["server.pem", "server.key"] {
        std::fs::copy(first.dir.join(f), live.dir.join(f)).unwrap();
    }
    let broker = Broker::start_with_args(&[
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        &live.path("server.pem"),
        "--tls-key",
        &live.path("server.key"),
    ]);
    let open = connect_tls(&broker, first.pem("ca.pem")).await.unwrap();
    let ch = open.create_channel().await.unwrap();
    for f in ["server.pem", "server.key"] {
        std::fs::copy(second.dir.join(f), live.dir.join(f)).unwrap();
    }
    ctl(&broker, &["reload_tls"]);
    connect_tls(&broker, second.pem("ca.pem"))
        .await
        .expect("the new certificate");
    assert!(
        connect_tls(&broker, first.pem("ca.pem")).await.is_err(),
        "the old certificate is gone"
    );
    declare_queue(&ch, "still-open").await;
    std::fs::write(live.dir.join("server.key"), "not a key").unwrap();
    let out = ctl_output(&broker, &["reload_tls"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("TLS reload failed"),
        "{out:?}"
    );
    connect_tls(&broker, second.pem("ca.pem"))
        .await
        .expect("the previous certificate stays in use");
    // SIGHUP does the same.
    for f in ["server.pem", "server.key"] {
        std::fs::copy(first.dir.join(f), live.dir.join(f)).unwrap();
    }
    let pid = broker.pid().expect("a broker the test started");
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    within("the certificate of SIGHUP", async {
        while connect_tls(&broker, first.pem("ca.pem")).await.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}
