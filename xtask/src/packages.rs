//! Installing PostgreSQL with the system's package manager: the advice, and apt-get (as root on
//! Debian) for `--provision` and CI.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};

pub const INSTALL_HINT: &str = "  Debian/Ubuntu: sudo apt-get install postgresql\n  \
                                Fedora: sudo dnf install postgresql-server\n  \
                                macOS: brew install postgresql@17";

static APT_UPDATED: AtomicBool = AtomicBool::new(false);

/// The packages apt would install for the native engine (`postgresql`, or the pinned major's
/// `postgresql-<major>` when apt offers it), when this run may use apt at all: as root, with
/// apt-get. `None`: the managed binaries are the way.
pub fn apt_would_install(pinned: Option<u32>) -> Option<Vec<String>> {
    if !crate::os::is_root() || which::which("apt-get").is_err() {
        return None;
    }
    let Some(major) = pinned else {
        return Some(vec!["postgresql".into(), "postgresql-contrib".into()]);
    };
    let package = format!("postgresql-{major}");
    apt_offers(&package).then(|| vec![package])
}

/// apt has an installation candidate for `package` (after its lists were read).
fn apt_offers(package: &str) -> bool {
    let output = duct::cmd("apt-cache", ["policy", package]).stderr_null().stdout_capture().unchecked().run();
    output.is_ok_and(|o| {
        let text = String::from_utf8_lossy(&o.stdout);
        text.lines().any(|l| l.trim().strip_prefix("Candidate:").is_some_and(|c| c.trim() != "(none)"))
    })
}

pub fn apt_install(packages: &[&str]) -> Result<()> {
    let names = packages.join(" ");
    if which::which("apt-get").is_err() {
        bail!(
            "apt-get not found, so {names} cannot be installed here: install them with this system's package manager"
        );
    }
    if !crate::os::is_root() {
        bail!("installing {names} needs root: run `sudo apt-get install -y {names}`, or run again as root");
    }
    // Debian's postgresql package creates and (where services can start) runs a "main" cluster on
    // port 5432; harmless, as this tool's servers use their own ports.
    eprintln!("provision: installing {names} (apt-get)");
    if !APT_UPDATED.load(Ordering::Relaxed) {
        apt(&["update", "-q"])?;
        APT_UPDATED.store(true, Ordering::Relaxed);
    }
    apt(&[&["install", "-y", "-q"], packages].concat())
}

fn apt(args: &[&str]) -> Result<()> {
    let command = duct::cmd("apt-get", args).env("DEBIAN_FRONTEND", "noninteractive");
    crate::os::run_to_stderr(command, &format!("apt-get {}", args.join(" ")))
}
