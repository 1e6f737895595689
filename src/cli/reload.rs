//! `hookgate reload`: asks the gateway running here to reload its configuration (SIGHUP),
//! after checking that the file loads (a file with a mistake is refused before any signal).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::config::Settings;

/// Arguments of `hookgate reload`.
#[derive(clap::Args)]
pub struct ReloadArgs {
    /// The gateway's process id (default: the one `hookgate serve` running on this machine,
    /// or in this container).
    #[arg(long)]
    pid: Option<i32>,
}

impl ReloadArgs {
    /// Signals the gateway; the configuration was loaded (so is valid) before this runs.
    pub fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let pid = match self.pid {
            Some(pid) => pid,
            None => the_gateway()?,
        };
        kill(Pid::from_raw(pid), Signal::SIGHUP)
            .with_context(|| format!("cannot signal process {pid}"))?;
        println!(
            "asked process {pid} to reload {} (its log says what changed)",
            settings.origin
        );
        Ok(())
    }
}

/// The one other process of this binary that serves (`hookgate` or `hookgate serve`).
fn the_gateway() -> anyhow::Result<i32> {
    let me = std::env::current_exe().context("cannot find this program's path")?;
    let own = std::process::id() as i32;
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").context("cannot read /proc")? {
        let Some(pid) = entry
            .ok()
            .and_then(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        else {
            continue;
        };
        if pid != own && same_program(pid, &me) && serves(pid) {
            found.push(pid);
        }
    }
    match found.as_slice() {
        [one] => Ok(*one),
        [] => bail!("no hookgate gateway runs here (give --pid)"),
        many => bail!("several hookgate gateways run here ({many:?}): give --pid"),
    }
}

fn same_program(pid: i32, me: &Path) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe: PathBuf| exe == me)
}

/// Whether the process's command line runs the server: `serve`, or no command at all.
fn serves(pid: i32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .collect();
    // Skip the program and the options (with `--config`'s value); the first word left is
    // the command.
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        if *arg == b"--config" {
            rest.next();
        } else if !arg.starts_with(b"-") {
            return *arg == b"serve";
        }
    }
    true
}
