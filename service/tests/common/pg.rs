//! A real PostgreSQL server for the tests: the one `scripts/test` started
//! (`KURA_TEST_POSTGRES`, a connection string without `dbname`), or else a
//! throwaway cluster of this test process (`scripts/pg-cluster`), stopped
//! by a watchdog when the process ends. Every test gets a database of its
//! own.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The server, as a connection string without a database.
pub struct PgServer {
    pub base: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pg-cluster")
}

/// The shared server.
pub fn server() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        if let Ok(base) = std::env::var("KURA_TEST_POSTGRES") {
            return PgServer { base };
        }
        let dir = std::env::temp_dir().join(format!(
            "kura-pg-{}-{}",
            std::process::id(),
            hex::encode(rand_bytes())
        ));
        let out = Command::new(script())
            .arg("start")
            .arg(&dir)
            .output()
            .expect("scripts/pg-cluster runs");
        assert!(
            out.status.success(),
            "cannot start a PostgreSQL cluster (is the postgresql package installed?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let base = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        // Stops the cluster once this process is gone: the watchdog
        // outlives us on purpose, so it is never waited for.
        #[allow(clippy::zombie_processes)]
        let _watchdog = Command::new("sh")
            .arg("-c")
            .arg(r#"while kill -0 "$1" 2>/dev/null; do sleep 0.5; done; "$2" stop "$3"; rm -rf "$3""#)
            .arg("watchdog")
            .arg(std::process::id().to_string())
            .arg(script())
            .arg(&dir)
            .spawn()
            .expect("the watchdog starts");
        PgServer { base }
    })
}

fn rand_bytes() -> [u8; 6] {
    let mut b = [0u8; 6];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).unwrap();
    b
}

/// Runs `f`, which talks to PostgreSQL through the blocking client, also
/// from an async test (on a multi-threaded runtime).
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

impl PgServer {
    /// A new, empty database; its connection string.
    pub fn fresh_database(&self) -> String {
        blocking(|| self.create_database())
    }

    fn create_database(&self) -> String {
        let name = format!("kura_test_{}", hex::encode(rand_bytes()));
        let mut admin =
            postgres::Client::connect(&format!("{} dbname=postgres", self.base), postgres::NoTls)
                .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        format!("{} dbname={name}", self.base)
    }
}
