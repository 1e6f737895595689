//! The Redis topologies of `scripts/redis-sentinel.sh` and `scripts/redis-cluster.sh`,
//! driven from tests: each in a folder of its own on free ports, its nodes killed and
//! started again by pid, all of it stopped when dropped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The nodes of a topology's script and folder: what a fault does to them.
#[derive(Clone)]
pub struct Nodes {
    pub script: &'static str,
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Nodes {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(format!(
            "{}/scripts/{}",
            env!("CARGO_MANIFEST_DIR"),
            self.script
        ));
        cmd.args(args);
        let dir_var = if self.script.contains("sentinel") {
            "HOOKGATE_SENTINEL_DIR"
        } else {
            "HOOKGATE_CLUSTER_DIR"
        };
        cmd.env(dir_var, &self.dir);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// SIGKILLs the Redis on `port`.
    fn kill(&self, port: u16) {
        let pid = std::fs::read_to_string(self.dir.join(port.to_string()).join("redis.pid"))
            .expect("the node's pid file");
        let status = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "the node on {port} was killed");
    }

    /// Starts the node on `port` again from its own folder.
    fn restart(&self, port: u16) {
        let out = self
            .command(&["restart-node", &port.to_string()])
            .output()
            .expect("the script runs");
        assert!(
            out.status.success(),
            "restart-node {port} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// SIGKILLs the node on `port` after `at`, and starts it again `down` later.
    pub fn crash(self, port: u16, at: Duration, down: Duration) -> impl FnOnce() + Send + 'static {
        move || {
            std::thread::sleep(at);
            self.kill(port);
            std::thread::sleep(down);
            self.restart(port);
        }
    }
}

/// A topology started by one of the scripts; stopped (every process, the folder) when dropped.
pub struct Topology {
    pub nodes: Nodes,
    /// What `start` printed: `REDIS_SENTINELS=...` and such.
    pub vars: HashMap<String, String>,
}

impl Topology {
    pub fn start(script: &'static str, env: &[(&str, String)]) -> Topology {
        let nodes = Nodes {
            script,
            dir: std::env::temp_dir().join(format!("hgtest-topology-{}", uuid::Uuid::new_v4())),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        let out = nodes.command(&["start"]).output().expect("the script runs");
        assert!(
            out.status.success(),
            "{script} start failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let vars = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Topology { nodes, vars }
    }

    pub fn list(&self, var: &str) -> Vec<String> {
        self.vars
            .get(var)
            .unwrap_or_else(|| panic!("{} printed {var}", self.nodes.script))
            .split(',')
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = self.nodes.command(&["stop"]).output();
        let _ = std::fs::remove_dir_all(&self.nodes.dir);
    }
}

/// A base port with `count` free ports after it, and their cluster bus ports (+10000) free too.
pub fn free_ports(count: u16, bus: bool) -> u16 {
    let seed = uuid::Uuid::new_v4().as_u128();
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    for i in 0..500u128 {
        let base = 20_000 + ((seed + i * 7_919) % 9_000) as u16;
        if (base..base + count).all(|p| free(p) && (!bus || free(p + 10_000))) {
            return base;
        }
    }
    panic!("no {count} free consecutive ports");
}

/// The master serving `slot`, from `CLUSTER NODES`.
pub fn master_of(nodes: &str, slot: u16) -> Option<u16> {
    nodes.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if !f.get(2)?.split(',').any(|flag| flag == "master") {
            return None;
        }
        let serves = f.iter().skip(8).any(|range| {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if a <= slot && slot <= b)
        });
        let port = f[1].split(['@', ',']).next()?.rsplit_once(':')?.1;
        serves.then(|| port.parse().ok()).flatten()
    })
}
