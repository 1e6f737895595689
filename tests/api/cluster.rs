//! `scripts/cluster.sh` driven from tests: a cluster in a folder of its own on free ports.

use std::path::PathBuf;
use std::process::Command;

use crate::helpers::run;

/// The cluster of `scripts/cluster.sh`, stopped when dropped.
pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    pub config: PathBuf,
}

impl Cluster {
    /// The script with this cluster's folder, port, binary and configuration.
    pub fn script(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh"));
        cmd.args(args)
            .env("CLUSTER_DIR", &self.dir)
            .env("CLUSTER_PORT", self.port.to_string())
            .env("HOOKGATE_BIN", env!("CARGO_BIN_EXE_hookgate"))
            .env("HOOKGATE_CONFIG", &self.config)
            .env("RUST_LOG", "warn")
            .env_remove("HOOKGATE_BIND")
            .env_remove("PORT")
            .env_remove("HOOKGATE_ADMIN_TOKEN");
        cmd
    }

    /// Runs the script; fails the test when it fails.
    pub async fn run(&self, args: &[&str]) -> String {
        let out = run(self.script(args)).await;
        assert!(
            out.ok,
            "cluster.sh {args:?} failed:\n{}\n{}",
            out.stdout, out.stderr
        );
        out.stdout
    }

    /// A URL through the cluster's Nginx.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.script(&["stop"]).output();
        if std::env::var("CHAOS_KEEP_LOGS").is_err() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Nginx's port and the three replicas' after it, all free (below the ephemeral range).
pub fn free_port_range(n: u16) -> u16 {
    let seed = uuid::Uuid::new_v4().as_u128();
    for i in 0..200u128 {
        let base = 15_000 + ((seed + i * 7_919) % 15_000) as u16;
        let free = (base..=base + n).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no {} free consecutive ports", n + 1);
}
