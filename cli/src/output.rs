//! `-o table|json|yaml` for read commands.

use serde::Serialize;

use crate::args::Output;

/// Prints `value` as JSON or YAML, or calls `table` to print it for people.
pub fn print<T: Serialize>(
    format: Output,
    value: &T,
    table: impl FnOnce(&T) -> Table,
) -> anyhow::Result<()> {
    match format {
        Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Output::Yaml => print!("{}", serde_norway::to_string(value)?),
        Output::Table | Output::Wide => print!("{}", table(value).render()),
    }
    Ok(())
}

/// A plain aligned text table.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.header).chain(&self.rows) {
            let cells: Vec<String> = line
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

/// A duration for people, in its one or two largest units: `45s`, `5m`, `5m30s`,
/// `2h3m`, `3d4h`, and whole days from a week on (`364d`, not `31535846s`).
/// Seconds below the minute are dropped from an hour on, as `kubectl` does.
pub fn human_duration(secs: u64) -> String {
    const MIN: u64 = 60;
    const HOUR: u64 = 60 * MIN;
    const DAY: u64 = 24 * HOUR;
    let pair = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit}{small}{small_unit}")
        }
    };
    match secs {
        s if s < MIN => format!("{s}s"),
        s if s < HOUR => pair(s / MIN, "m", s % MIN, "s"),
        s if s < DAY => pair(s / HOUR, "h", s % HOUR / MIN, "m"),
        s if s < 7 * DAY => pair(s / DAY, "d", s % DAY / HOUR, "h"),
        s => format!("{}d", s / DAY),
    }
}

/// Milliseconds for people: `250ms` below a second, else [`human_duration`].
pub fn human_millis(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        human_duration(ms / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::{human_duration, human_millis, Table};

    #[test]
    fn durations_read_like_people_write_them() {
        for (secs, want) in [
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (300, "5m"),
            (330, "5m30s"),
            (3600, "1h"),
            (2 * 3600 + 3 * 60 + 9, "2h3m"),
            (86_399, "23h59m"),
            (86_400, "1d"),
            (3 * 86_400 + 4 * 3600, "3d4h"),
            (7 * 86_400 + 5, "7d"),
            (31_535_846, "364d"),
            (u64::MAX, "213503982334601d"),
        ] {
            assert_eq!(human_duration(secs), want, "{secs} s");
        }
        assert_eq!(human_millis(250), "250ms");
        assert_eq!(human_millis(1500), "1s");
        assert_eq!(human_millis(125_000), "2m5s");
    }

    #[test]
    fn columns_align() {
        let mut t = Table::new(&["ID", "ADDRESS"]);
        t.row(vec!["1".into(), "127.0.0.1:1".into()]);
        t.row(vec!["10".into(), "x".into()]);
        assert_eq!(t.render(), "ID  ADDRESS\n1   127.0.0.1:1\n10  x\n");
    }
}
