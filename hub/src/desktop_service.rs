//! `helix-hub service`: the hub as a per-user service that starts at login and restarts after
//! a failure: a systemd user unit on Linux, a launchd LaunchAgent on macOS. This module makes
//! the files and says where they go; the binary writes them and asks the service manager.

use std::path::{Path, PathBuf};

/// The systemd unit's name.
pub const SYSTEMD_UNIT: &str = "helix-hub.service";
/// The LaunchAgent's label (and file name, with `.plist`).
pub const LAUNCHD_LABEL: &str = "dev.helix-mesh.hub";

/// Which service manager the file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// A systemd user unit (`systemctl --user`).
    Systemd,
    /// A launchd LaunchAgent (`launchctl`).
    Launchd,
}

impl Manager {
    /// This platform's manager; `None` where the hub has no service file to offer.
    pub fn of_this_platform() -> Option<Manager> {
        if cfg!(target_os = "macos") {
            Some(Manager::Launchd)
        } else if cfg!(target_os = "linux") {
            Some(Manager::Systemd)
        } else {
            None
        }
    }
}

/// Where the user's service files live: `config_home` is `$XDG_CONFIG_HOME` (or
/// `~/.config`) for systemd; `home` is the home directory for launchd.
pub fn service_path(manager: Manager, config_home: &Path, home: &Path) -> PathBuf {
    match manager {
        Manager::Systemd => config_home.join("systemd/user").join(SYSTEMD_UNIT),
        Manager::Launchd => home
            .join("Library/LaunchAgents")
            .join(format!("{LAUNCHD_LABEL}.plist")),
    }
}

/// The text of the file that runs `exe serve` on `data_dir` (both absolute: a service
/// manager has no working directory or PATH of the person's shell), restarting it when it
/// fails.
pub fn service_text(manager: Manager, exe: &Path, data_dir: &Path) -> String {
    match manager {
        Manager::Systemd => systemd_unit(exe, data_dir),
        Manager::Launchd => launchd_plist(exe, data_dir),
    }
}

fn systemd_unit(exe: &Path, data_dir: &Path) -> String {
    format!(
        "# Written by `helix-hub service install`; remove with `helix-hub service uninstall`.\n\
         [Unit]\n\
         Description=Helix Mesh hub (runs your AI agents for your other devices)\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart={} --data-dir {} serve\n\
         Restart=on-failure\n\
         RestartSec=5s\n\
         # SIGTERM stops the hub gracefully; it drains running commands first.\n\
         KillSignal=SIGTERM\n\
         TimeoutStopSec=60s\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        systemd_quote(exe),
        systemd_quote(data_dir),
    )
}

/// A word of `ExecStart` for any path: in double quotes, with `\` and `"` escaped, and `%`
/// and `$` doubled (systemd expands both).
fn systemd_quote(path: &Path) -> String {
    let text = path.to_string_lossy();
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '"' => quoted.push_str("\\\""),
            '%' => quoted.push_str("%%"),
            '$' => quoted.push_str("$$"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

fn launchd_plist(exe: &Path, data_dir: &Path) -> String {
    let log = data_dir.join("hub-service.log");
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Written by `helix-hub service install`; remove with `helix-hub service uninstall`. -->
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>{LAUNCHD_LABEL}</string>
  <key>ProgramArguments</key>
  <array>
    <string>{}</string>
    <string>--data-dir</string>
    <string>{}</string>
    <string>serve</string>
  </array>
  <key>RunAtLoad</key>
  <true/>
  <key>KeepAlive</key>
  <dict>
    <key>SuccessfulExit</key>
    <false/>
  </dict>
  <key>ProcessType</key>
  <string>Background</string>
  <key>StandardErrorPath</key>
  <string>{}</string>
</dict>
</plist>
"#,
        xml_escape(&exe.to_string_lossy()),
        xml_escape(&data_dir.to_string_lossy()),
        xml_escape(&log.to_string_lossy()),
    )
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_systemd_unit_runs_serve_with_absolute_paths_and_restarts_on_failure() {
        let text = service_text(
            Manager::Systemd,
            Path::new("/opt/helix/bin/helix-hub"),
            Path::new("/home/ada/my 100% data"),
        );
        assert_eq!(
            service_path(
                Manager::Systemd,
                Path::new("/home/ada/.config"),
                Path::new("/home/ada"),
            ),
            Path::new("/home/ada/.config/systemd/user/helix-hub.service")
        );
        assert!(text.contains(
            "ExecStart=\"/opt/helix/bin/helix-hub\" --data-dir \"/home/ada/my 100%% data\" serve\n"
        ), "{text}");
        for line in [
            "Restart=on-failure\n",
            "After=network-online.target\n",
            "Wants=network-online.target\n",
            "WantedBy=default.target\n",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
        assert_eq!(
            systemd_quote(Path::new("/a\"b\\c$d")),
            "\"/a\\\"b\\\\c$$d\""
        );
    }

    #[test]
    fn the_launch_agent_runs_at_load_and_is_kept_alive_after_a_failure() {
        let text = &service_text(
            Manager::Launchd,
            Path::new("/Applications/Helix <dev>/helix-hub"),
            Path::new("/Users/ada/Library/Application Support/helix-hub"),
        );
        assert_eq!(
            service_path(
                Manager::Launchd,
                Path::new("/unused"),
                Path::new("/Users/ada"),
            ),
            Path::new("/Users/ada/Library/LaunchAgents/dev.helix-mesh.hub.plist")
        );
        assert!(
            text.contains("<string>/Applications/Helix &lt;dev&gt;/helix-hub</string>"),
            "{text}"
        );
        assert!(text.contains("<key>RunAtLoad</key>\n  <true/>"), "{text}");
        assert!(text.contains("<key>KeepAlive</key>"), "{text}");
        assert!(text.contains("<string>--data-dir</string>\n    <string>/Users/ada/Library/Application Support/helix-hub</string>\n    <string>serve</string>"), "{text}");
        assert!(
            text.contains(&format!("<string>{LAUNCHD_LABEL}</string>")),
            "{text}"
        );
    }
}
