//! Exec command lines (what follows `ssh host`), and the attach and logs
//! lines: never a panic; an answer given without the console (help, a
//! usage error) is UTF-8, bounded and safe to print.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &str| {
    let _ = kiln::ssh::exec::wants_stdin(line);
    let _ = kiln::ssh::attach::parse(line);
    let _ = kiln::ssh::logs::parse(line);
    if let Some(out) = kiln::fuzzing::exec_command_line(line) {
        for bytes in [&out.stdout, &out.stderr] {
            let text = std::str::from_utf8(bytes).expect("the answer is UTF-8");
            assert!(text.len() <= 8 * 1024, "{} bytes", text.len());
            common::assert_printable(text, true);
        }
        assert!(out.code == kiln::ssh::exec::EXIT_OK || out.code == kiln::ssh::exec::EXIT_USAGE);
    }
});
