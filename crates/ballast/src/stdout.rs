//! Standard output for every command. A reader that goes away early (`ballast simulate FILE |
//! head -1`) ends the output quietly: Rust ignores SIGPIPE, so without this a closed pipe
//! surfaces as a write error and `print!` panics. Any other write error (a full disk behind a
//! redirection) is reported, so a truncated report never passes for a complete one.

use std::io::{self, Write};

/// Whether an error means the reader closed the pipe.
pub fn is_broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// Writes `text` to stdout and flushes it. A closed pipe counts as written: the reader has
/// what it wanted. On any other error, says so on stderr and returns false (exit 2).
pub fn print(text: &str) -> bool {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => true,
        Err(e) if is_broken_pipe(&e) => true,
        Err(e) => {
            eprintln!("error: cannot write the output: {e}");
            false
        }
    }
}

/// A line of progress from a long-running command (`serve`, `demo`): never fatal, so a
/// server keeps serving when whoever read its stdout has gone.
pub fn say_line(line: std::fmt::Arguments) {
    let _ = writeln!(io::stdout().lock(), "{line}");
}

/// `println!` for long-running commands: formats a line for [`say_line`].
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::stdout::say_line(format_args!($($arg)*))
    };
}
pub(crate) use say;
