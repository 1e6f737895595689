//! `scripts/cluster.sh` itself: what a second `start` runs.

use crate::cluster::{free_port_range, Cluster};
use crate::helpers::TestEnv;

/// A temporary folder, removed when dropped (also when the test fails).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("hookgate-cluster-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("folder");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A configuration with one source of this name, on the test's Redis prefix and database.
fn config_with_source(env: &TestEnv, dir: &std::path::Path, source: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{source}.toml"));
    let toml = format!(
        r#"
[server]
workers = 1
{sections}[[sources]]
name = "{source}"
kind = "pluggy"
secrets = ["s"]
"#,
        sections = env.file_sections(),
    );
    std::fs::write(&path, toml).expect("config written");
    path
}

#[actix_web::test]
async fn a_second_start_runs_the_callers_configuration_not_the_saved_one() {
    let env = TestEnv::new();
    let folder = TempDir::new();
    let dir = folder.0.clone();
    let first = Cluster {
        dir: dir.join("cluster"),
        port: free_port_range(1),
        config: config_with_source(&env, &dir, "alpha"),
    };
    first.run(&["start", "1"]).await;
    first.run(&["stop"]).await;

    // The same folder (its saved state is still there), another configuration and port.
    let second = Cluster {
        dir: first.dir.clone(),
        port: free_port_range(1),
        config: config_with_source(&env, &dir, "beta"),
    };
    let out = second.run(&["start", "1"]).await;
    assert!(out.contains(&second.url("")), "{out}");
    let client = awc::Client::default();
    let unsigned = |source: &str| {
        client
            .post(second.url(&format!("/webhooks/{source}")))
            .send_body("{}")
    };
    // beta exists (an unsigned post is refused by its verifier); alpha no longer does.
    let beta = unsigned("beta").await.expect("beta answers").status();
    let alpha = unsigned("alpha").await.expect("alpha answers").status();
    assert_eq!((beta.as_u16(), alpha.as_u16()), (401, 404));
    second.run(&["stop"]).await;
    drop(first);
}
