//! Running the system's network tools (`ip`, `nft`): the error names the command and
//! carries what it said.

use std::{
    io::Write,
    process::{Command, Output, Stdio},
};

use crate::LabError;

/// Runs `program args…`; an error unless it succeeds.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<(), LabError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| could_not_start(program, args, e))?;
    checked(program, args, out)
}

/// Runs `program args…` with `input` on its stdin.
pub(crate) fn run_with_stdin(program: &str, args: &[&str], input: &str) -> Result<(), LabError> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| could_not_start(program, args, e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).map_err(|e| {
            LabError::new(format!(
                "`{}`: writing its input: {e}",
                shown(program, args)
            ))
        })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| LabError::new(format!("`{}`: {e}", shown(program, args))))?;
    checked(program, args, out)
}

fn checked(program: &str, args: &[&str], out: Output) -> Result<(), LabError> {
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::new(format!(
            "`{}` failed: {}",
            shown(program, args),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn could_not_start(program: &str, args: &[&str], e: std::io::Error) -> LabError {
    let hint = match program {
        "nft" => " (install nftables: apt-get install nftables)",
        "ip" => " (install iproute2)",
        _ => "",
    };
    LabError::new(format!(
        "`{}` could not start: {e}{hint}",
        shown(program, args)
    ))
}

fn shown(program: &str, args: &[&str]) -> String {
    format!("{program} {}", args.join(" "))
}
