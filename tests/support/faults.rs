//! Fault injection for the fault tests: a TCP proxy of our own between cdcd and a server (cut
//! every connection, cut mid-stream after some bytes, or lead to another server), and private
//! instances of the real servers that a test may stop, restart and reconfigure (a MariaDB from
//! `scripts/mariadb.sh`, a MySQL from `scripts/mysql.sh`, a SeaweedFS `weed mini`, the Kinesis fault proxy of `scripts/aws`), so
//! that the shared services stay untouched.
//!
//! Every instance stops when its handle is dropped, also when the test fails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy on 127.0.0.1:`port` to 127.0.0.1:`target`, on a thread (and runtime) of its own so
/// that a test blocked on a child process cannot stall it.
pub struct TcpProxy {
    pub port: u16,
    target: Arc<AtomicU16>,
    /// Bumped to close every open connection.
    cuts: watch::Sender<u64>,
    /// When not 0: close every connection once this many more bytes came from the server.
    cut_after: Arc<AtomicUsize>,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicU64>,
}

impl TcpProxy {
    pub fn start(port: u16, target: u16) -> TcpProxy {
        let (cuts, _) = watch::channel(0u64);
        let proxy = TcpProxy {
            port,
            target: Arc::new(AtomicU16::new(target)),
            cuts,
            cut_after: Arc::new(AtomicUsize::new(0)),
            accepted: Arc::new(AtomicU64::new(0)),
        };
        let (target, cuts, cut_after, accepted) = (
            proxy.target.clone(),
            proxy.cuts.clone(),
            proxy.cut_after.clone(),
            proxy.accepted.clone(),
        );
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("proxy: cannot listen on 127.0.0.1:{port}: {e}"));
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let to = SocketAddr::from(([127, 0, 0, 1], target.load(Ordering::SeqCst)));
                    let (cuts, cut_after) = (cuts.subscribe(), cut_after.clone());
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(to).await else {
                            return; // dropping the client closes it, as a dead server would
                        };
                        pipe(client, server, cuts, cut_after).await;
                    });
                }
            });
        });
        proxy
    }

    /// Closes every open connection now.
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Closes every open connection once `bytes` more bytes came from the server: in the middle
    /// of whatever it is sending then.
    pub fn cut_after(&self, bytes: usize) {
        self.cut_after.store(bytes, Ordering::SeqCst);
    }

    /// Whether an armed [`TcpProxy::cut_after`] has fired.
    pub fn cut_fired(&self) -> bool {
        self.cut_after.load(Ordering::SeqCst) == 0
    }

    /// New connections go to `target`; the open ones are closed (as a failover does).
    pub fn retarget(&self, target: u16) {
        self.target.store(target, Ordering::SeqCst);
        self.cut();
    }
}

/// Copies both ways until either side closes or a cut; the server-to-client direction counts
/// bytes for `cut_after`.
async fn pipe(
    client: TcpStream,
    server: TcpStream,
    mut cuts: watch::Receiver<u64>,
    cut_after: Arc<AtomicUsize>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = client_read.read(&mut buf).await.unwrap_or(0);
            if n == 0 || server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let downstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = server_read.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            let armed = cut_after.load(Ordering::SeqCst);
            if armed > 0 {
                if n >= armed {
                    // Forward part of this chunk, then cut: the client sees a torn event.
                    let _ = client_write.write_all(&buf[..armed / 2]).await;
                    cut_after.store(0, Ordering::SeqCst);
                    return;
                }
                cut_after.store(armed - n, Ordering::SeqCst);
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
        _ = cuts.changed() => {}
    }
    // Dropping the halves closes both sockets.
}

/// The repository's root (scripts and test helpers live there).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A private MariaDB 10.11 from `scripts/mariadb.sh` on 127.0.0.1:`port`, datadir under `base`,
/// created fresh; `extra` are more server flags (`--server-id=2 …`).
pub struct PrivateMariaDb {
    pub base: String,
    pub port: u16,
    extra: String,
}

impl PrivateMariaDb {
    pub fn start(base: &str, port: u16, extra: &str) -> PrivateMariaDb {
        let server = PrivateMariaDb {
            base: base.to_string(),
            port,
            extra: extra.to_string(),
        };
        server.script("reset");
        server
    }

    fn script(&self, action: &str) {
        let out = Command::new(repo_root().join("scripts/mariadb.sh"))
            .arg(action)
            .env("BASE", &self.base)
            .env("PORT", self.port.to_string())
            .env("MARIADBD_EXTRA", &self.extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/mariadb.sh {action} (BASE={} PORT={}): {}",
            self.base,
            self.port,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn stop(&self) {
        self.script("stop");
    }

    pub fn restart(&self) {
        self.script("stop");
        self.script("start");
    }

    pub fn root_url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    pub fn repl_url(&self) -> String {
        format!("mysql://repl:replpw@127.0.0.1:{}", self.port)
    }

    /// A root connection in UTC with row logging, like [`super::Server::conn`].
    pub async fn conn(&self) -> mysql_async::Conn {
        root_conn(&self.root_url()).await
    }
}

/// A root connection to `url` in UTC.
async fn root_conn(url: &str) -> mysql_async::Conn {
    use mysql_async::prelude::Queryable;
    let opts = mysql_async::Opts::from_url(url).unwrap();
    let mut conn = mysql_async::Conn::new(opts).await.unwrap();
    conn.query_drop("SET SESSION time_zone = '+00:00'")
        .await
        .unwrap();
    conn
}

impl Drop for PrivateMariaDb {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/mariadb.sh"))
            .arg("stop")
            .env("BASE", &self.base)
            .env("PORT", self.port.to_string())
            .stdin(Stdio::null())
            .output();
    }
}

/// A private Oracle MySQL from `scripts/mysql.sh` (`INSTANCE=`: in the shared sid chroot, with a
/// datadir, socket and pid file of its own) on 127.0.0.1:`port` as `server_id`, created fresh, so
/// with a server_uuid of its own; GTIDs on, like the shared server.
pub struct PrivateMySql {
    pub instance: String,
    pub port: u16,
    pub server_id: u32,
}

impl PrivateMySql {
    pub fn start(instance: &str, port: u16, server_id: u32) -> PrivateMySql {
        let server = PrivateMySql {
            instance: instance.to_string(),
            port,
            server_id,
        };
        server.script("reset");
        server
    }

    fn command(&self, action: &str) -> Command {
        let mut command = Command::new(repo_root().join("scripts/mysql.sh"));
        command
            .arg(action)
            .env("INSTANCE", &self.instance)
            .env("PORT", self.port.to_string())
            .env("SERVER_ID", self.server_id.to_string())
            // three instances (with the shared one) on a CI machine: a small buffer pool each
            .env("MYSQLD_EXTRA", "--innodb-buffer-pool-size=64M")
            .stdin(Stdio::null());
        command
    }

    fn script(&self, action: &str) {
        let out = self.command(action).output().unwrap();
        assert!(
            out.status.success(),
            "scripts/mysql.sh {action} (INSTANCE={} PORT={}): {}",
            self.instance,
            self.port,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn stop(&self) {
        self.script("stop");
    }

    pub fn root_url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    pub fn repl_url(&self) -> String {
        format!("mysql://repl:replpw@127.0.0.1:{}", self.port)
    }

    /// A root connection in UTC, like [`super::Server::conn`].
    pub async fn conn(&self) -> mysql_async::Conn {
        root_conn(&self.root_url()).await
    }

    /// Makes this server a GTID replica of `source` (auto-positioned, so it fetches every
    /// transaction `source` has) and starts replicating.
    pub async fn replicate_from(&self, source: &PrivateMySql) {
        use mysql_async::prelude::Queryable;
        self.conn()
            .await
            .query_drop(format!(
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST = '127.0.0.1', SOURCE_PORT = {}, \
                 SOURCE_USER = 'repl', SOURCE_PASSWORD = 'replpw', SOURCE_AUTO_POSITION = 1, \
                 GET_SOURCE_PUBLIC_KEY = 1, SOURCE_CONNECT_RETRY = 1; START REPLICA",
                source.port
            ))
            .await
            .unwrap();
    }
}

impl Drop for PrivateMySql {
    fn drop(&mut self) {
        let _ = self.command("stop").output();
    }
}

/// A private SeaweedFS (`weed mini`, as `scripts/aws.sh` starts the shared one) with the test
/// identities, its ten ports from `first_port` on, and a bucket; it keeps its data across
/// [`PrivateS3::stop`] and [`PrivateS3::start`].
pub struct PrivateS3 {
    dir: PathBuf,
    first_port: u16,
    pub bucket: String,
    child: Option<Child>,
}

impl PrivateS3 {
    pub fn new(dir: &Path, first_port: u16, bucket: &str) -> PrivateS3 {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::create_dir_all(dir.join("log")).unwrap();
        std::fs::copy(
            repo_root().join("scripts/aws/s3-identities.json"),
            dir.join("s3-identities.json"),
        )
        .unwrap();
        let mut s3 = PrivateS3 {
            dir: dir.to_path_buf(),
            first_port,
            bucket: bucket.to_string(),
            child: None,
        };
        s3.start();
        s3
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port())
    }

    fn s3_port(&self) -> u16 {
        self.first_port + 6
    }

    /// Starts the server and waits until it answers S3 requests (creating the bucket).
    pub fn start(&mut self) {
        let weed =
            Path::new(&std::env::var("CDCD_TEST_DUCKDB_PYTHON").unwrap()).with_file_name("weed");
        let p = |offset: u16| (self.first_port + offset).to_string();
        let dir = self.dir.display().to_string();
        let child = Command::new(weed)
            .arg(format!("-logdir={dir}/log"))
            .arg("mini")
            .arg(format!("-dir={dir}/data"))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
            ])
            .args(["-admin.ui=false", "-webdav=false"])
            .arg(format!("-master.port={}", p(0)))
            .arg(format!("-master.port.grpc={}", p(1)))
            .arg(format!("-volume.port={}", p(2)))
            .arg(format!("-volume.port.grpc={}", p(3)))
            .arg(format!("-filer.port={}", p(4)))
            .arg(format!("-filer.port.grpc={}", p(5)))
            .arg(format!("-s3.port={}", p(6)))
            .arg(format!("-s3.port.grpc={}", p(7)))
            .arg(format!("-admin.port={}", p(8)))
            .arg(format!("-admin.port.grpc={}", p(9)))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.config={dir}/s3-identities.json"))
            .arg("-s3.autoCreateBucket=false")
            .arg(format!("-bucket={}", self.bucket))
            .arg(format!("-filer.localSocket={dir}/filer.sock"))
            .arg(format!("-s3.localSocket={dir}/s3.sock"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.dir.join("weed.out")).unwrap())
            .stderr(Stdio::from(
                std::fs::File::create(self.dir.join("weed.err")).unwrap(),
            ))
            .spawn()
            .expect("start weed mini");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let probe = Command::new(std::env::var("CDCD_TEST_DUCKDB_PYTHON").unwrap())
                .args(["-c", S3_READY, &self.endpoint(), &self.bucket])
                .output()
                .unwrap();
            if probe.status.success() {
                break;
            }
            let probe = String::from_utf8_lossy(&probe.stderr);
            let probe = probe.lines().last().unwrap_or_default();
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "private SeaweedFS on {} did not come up: {probe:?}; see {}",
                self.endpoint(),
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Kills the server (SIGKILL: the store vanishes mid-request, as a crash or a lost network
    /// does) and waits until its ports are free.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.s3_port())).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for PrivateS3 {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Exits 0 once the store at argv[1] lists the bucket argv[2] (with the test credentials).
const S3_READY: &str = "import sys, boto3
boto3.client('s3', endpoint_url=sys.argv[1]).head_bucket(Bucket=sys.argv[2])";

/// A private instance of `scripts/aws/kinesis_fault_proxy.py` in front of kinesis-mock, with its
/// own control file (the shared one on :4570 is used by other tests).
pub struct KinesisFaults {
    pub endpoint: String,
    control: PathBuf,
    child: Child,
}

impl KinesisFaults {
    pub fn start(port: u16, dir: &Path) -> KinesisFaults {
        std::fs::create_dir_all(dir).unwrap();
        let control = dir.join("fault.json");
        std::fs::write(&control, "{}").unwrap();
        let upstream = std::env::var("CDCD_TEST_KINESIS_ENDPOINT").unwrap();
        let child = Command::new(std::env::var("CDCD_TEST_DUCKDB_PYTHON").unwrap())
            .arg("-u")
            .arg(repo_root().join("scripts/aws/kinesis_fault_proxy.py"))
            .args([&port.to_string(), &upstream])
            .arg(&control)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the Kinesis fault proxy");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        KinesisFaults {
            endpoint: format!("http://127.0.0.1:{port}"),
            control,
            child,
        }
    }

    /// Sets the faults (the proxy's JSON knobs), atomically.
    pub fn set(&self, knobs: &str) {
        let temporary = self.control.with_extension("tmp");
        std::fs::write(&temporary, knobs).unwrap();
        std::fs::rename(&temporary, &self.control).unwrap();
    }
}

impl Drop for KinesisFaults {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small seeded generator (xorshift), so that a failing run can be repeated with its seed.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `CDCD_TEST_SEED` when set, else from the clock; the seed is printed.
    pub fn from_env(test: &str) -> Rng {
        let seed = std::env::var("CDCD_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        println!("{test}: seed {seed} (repeat with CDCD_TEST_SEED={seed})");
        Rng(seed)
    }

    pub fn seeded(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
