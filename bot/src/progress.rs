//! Progress bars on long work, drawn only when stderr is a terminal.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// A bar over `total` bytes of work called `label`; hidden when stderr is not a terminal.
pub fn bar(total: u64, label: &str) -> ProgressBar {
    styled(
        Some(total),
        &format!("{label} {{bytes}}/{{total_bytes}} {{wide_bar}} {{eta}}"),
    )
}

/// A bar over `total` items of work called `label`; hidden when stderr is not a terminal.
pub fn items(total: u64, label: &str) -> ProgressBar {
    styled(
        Some(total),
        &format!("{label} {{pos}}/{{len}} {{wide_bar}} {{eta}}"),
    )
}

/// A count of the bytes done in work of unknown size called `label`; hidden when stderr is
/// not a terminal.
pub fn bytes_done(label: &str) -> ProgressBar {
    styled(None, &format!("{label} {{bytes}} {{binary_bytes_per_sec}}"))
}

fn styled(total: Option<u64>, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = total.map_or_else(ProgressBar::no_length, ProgressBar::new);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}
