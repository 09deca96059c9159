//! Progress bars on long work, drawn only when stderr is a terminal.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// A bar over `total` bytes of work called `label`; hidden when stderr is not a terminal.
pub fn bar(total: u64, label: &str) -> ProgressBar {
    styled(
        total,
        &format!("{label} {{bytes}}/{{total_bytes}} {{wide_bar}} {{eta}}"),
    )
}

/// A bar over `total` items of work called `label`; hidden when stderr is not a terminal.
pub fn items(total: u64, label: &str) -> ProgressBar {
    styled(
        total,
        &format!("{label} {{pos}}/{{len}} {{wide_bar}} {{eta}}"),
    )
}

fn styled(total: u64, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}
