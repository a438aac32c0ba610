//! A fault-injection run on a time axis, as one self-contained HTML file.
//!
//! [`render`] draws every operation of a history as a bar from its invocation
//! to its completion, one lane per client process, coloured by outcome, with
//! the faults that were in force as shaded vertical bands across all lanes.
//! Indeterminate operations (`Info`, or never completed) may take effect at any
//! later moment, so their bars run to the end of the chart, hatched. Every bar
//! has a tooltip with the details of its operation.
//!
//! The page has no external scripts, styles, fonts or requests: open it from
//! disk. The time axis is laid out at about 40 px/s (scroll sideways; a long
//! run is squeezed to keep the page manageable) and the `−` / `+` / `fit`
//! buttons zoom it. Times are shown relative to the earliest recorded instant
//! (an event or a fault start), on the recorder's clock.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Display, Formatter, Write as _};
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::history::{pair, Call, Op, Outcome, F, NEW_ID_STRIDE};

/// A fault as it was in force: from `start_ns` to `end_ns` (None = never healed), on the recorder's clock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Band {
    /// When the fault was injected.
    pub start_ns: u64,
    /// When it was healed; `None` = it was still in force at the end.
    pub end_ns: Option<u64>,
    /// What the fault was (shown on the chart).
    pub label: String,
}

/// Renders the history `ops` and the `faults` as a self-contained HTML page,
/// with `title` and `verdict_summary` (free text, may span lines) in its
/// header.
///
/// A malformed history (see [`pair`]) is drawn up to the event that makes it
/// malformed, with the error in the header.
pub fn render(title: &str, ops: &[Op], faults: &[Band], verdict_summary: &str) -> String {
    render_named(title, ops, faults, verdict_summary, &BTreeMap::new())
}

/// [`render`] with a name for each lane: `names` maps a process id modulo
/// [`NEW_ID_STRIDE`] (a client keeps its name when it takes a new id after an
/// indeterminate op) to what the client is, e.g. "register → host 2".
pub fn render_named(
    title: &str,
    ops: &[Op],
    faults: &[Band],
    verdict_summary: &str,
    names: &BTreeMap<u64, String>,
) -> String {
    let mut page = Page::new(title, ops, faults, verdict_summary);
    page.names = names;
    page.to_string()
}

/// [`render`]s the page and writes it to `path`, replacing the file.
pub fn write(
    path: &Path,
    title: &str,
    ops: &[Op],
    faults: &[Band],
    verdict_summary: &str,
) -> Result<()> {
    write_named(path, title, ops, faults, verdict_summary, &BTreeMap::new())
}

/// [`render_named`]s the page and writes it to `path`, replacing the file.
pub fn write_named(
    path: &Path,
    title: &str,
    ops: &[Op],
    faults: &[Band],
    verdict_summary: &str,
    names: &BTreeMap<u64, String>,
) -> Result<()> {
    let html = render_named(title, ops, faults, verdict_summary, names);
    std::fs::write(path, html).with_context(|| format!("writing the timeline {}", path.display()))
}

/// No lane names.
static NO_NAMES: BTreeMap<u64, String> = BTreeMap::new();

/// Pixels per second of the time axis at zoom 1, before clamping the width.
const PX_PER_S: f64 = 40.0;
/// The chart's width is kept within these bounds (px).
const MIN_WIDTH_PX: f64 = 1_000.0;
const MAX_WIDTH_PX: f64 = 24_000.0;
/// Height of a process lane (px).
const LANE_PX: usize = 14;
/// Height of a row of fault labels (px).
const LABEL_ROW_PX: usize = 16;
/// Height of the time axis (px).
const AXIS_PX: usize = 22;
/// Elements of a set read listed in a tooltip.
const MAX_LISTED: usize = 20;

/// Everything the page needs, with times relative to `origin_ns`.
struct Page<'a> {
    title: &'a str,
    verdict: &'a str,
    calls: Vec<Call>,
    /// Why part of the history is not shown, if it is malformed.
    malformed: Option<String>,
    /// Process ids, sorted; lane `i` is `processes[i]`.
    processes: Vec<u64>,
    faults: &'a [Band],
    /// Label row of each fault (overlapping faults get different rows).
    label_rows: Vec<usize>,
    origin_ns: u64,
    end_ns: u64,
    width_px: f64,
    /// Lane names by process id modulo [`NEW_ID_STRIDE`] (see [`render_named`]).
    names: &'a BTreeMap<u64, String>,
}

impl<'a> Page<'a> {
    fn new(title: &'a str, ops: &[Op], faults: &'a [Band], verdict: &'a str) -> Page<'a> {
        let (calls, malformed) = pair_longest_prefix(ops);
        let processes: Vec<u64> = calls
            .iter()
            .map(|c| c.process)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let instants = ops.iter().map(|op| op.time_ns).chain(
            faults
                .iter()
                .flat_map(|f| [Some(f.start_ns), f.end_ns])
                .flatten(),
        );
        let origin_ns = instants.clone().min().unwrap_or(0);
        let last_ns = instants.max().unwrap_or(0);
        // An empty or instantaneous run still gets a (1 s) axis.
        let end_ns = if last_ns > origin_ns {
            last_ns
        } else {
            origin_ns + 1_000_000_000
        };
        let seconds = ns_to_s(end_ns - origin_ns);
        let width_px = (seconds * PX_PER_S).clamp(MIN_WIDTH_PX, MAX_WIDTH_PX);
        Page {
            title,
            verdict,
            calls,
            malformed,
            processes,
            faults,
            // A label is about 6.5 px per character: it keeps its row busy at
            // least that far, even past a short fault's end.
            label_rows: label_rows(
                faults,
                (6.5 * (end_ns - origin_ns) as f64 / width_px) as u64,
            ),
            origin_ns,
            end_ns,
            width_px,
            names: &NO_NAMES,
        }
    }

    /// Position of `t_ns` as a percentage of the chart's width.
    fn x(&self, t_ns: u64) -> f64 {
        let span = (self.end_ns - self.origin_ns) as f64;
        (t_ns.clamp(self.origin_ns, self.end_ns) - self.origin_ns) as f64 * 100.0 / span
    }

    /// `t_ns` in milliseconds since the origin.
    fn ms(&self, t_ns: u64) -> f64 {
        t_ns.saturating_sub(self.origin_ns) as f64 / 1e6
    }

    fn lane_of(&self, process: u64) -> usize {
        self.processes.binary_search(&process).unwrap_or_default()
    }

    fn write_header(&self, out: &mut Formatter<'_>) -> fmt::Result {
        let count = |o: Outcome| self.calls.iter().filter(|c| c.outcome == o).count();
        let open = self.calls.iter().filter(|c| c.completion.is_none()).count();
        writeln!(out, "<header><h1>{}</h1>", Esc(self.title))?;
        if !self.verdict.is_empty() {
            writeln!(out, "<pre class=\"verdict\">{}</pre>", Esc(self.verdict))?;
        }
        if let Some(error) = &self.malformed {
            writeln!(out, "<p class=\"error\">{}</p>", Esc(error))?;
        }
        write!(
            out,
            "<p class=\"stats\">{} operations: {} ok, {} failed, {} indeterminate ({} never completed); \
             {} processes; {} faults; {:.3} s",
            self.calls.len(),
            count(Outcome::Ok),
            count(Outcome::Fail),
            count(Outcome::Info),
            open,
            self.processes.len(),
            self.faults.len(),
            ns_to_s(self.end_ns - self.origin_ns),
        )?;
        if self.origin_ns != 0 {
            write!(
                out,
                "; t = 0 is {} ns on the recorder's clock",
                self.origin_ns
            )?;
        }
        writeln!(out, ".</p>")?;
        writeln!(
            out,
            "<p class=\"legend\"><span class=\"key b ok\"></span>ok \
             <span class=\"key b fail\"></span>failed \
             <span class=\"key b info\"></span>indeterminate (may take effect until the end: dashed) \
             <span class=\"key b info open\"></span>never completed \
             <span class=\"key fault\"></span>fault in force \
             <span class=\"zoom\">zoom <button id=\"zout\">&minus;</button>\
             <button id=\"zin\">+</button><button id=\"zfit\">fit</button></span></p>"
        )?;
        writeln!(out, "</header>")
    }

    fn label_rows_count(&self) -> usize {
        self.label_rows.iter().max().map_or(0, |r| r + 1)
    }

    fn write_names(&self, out: &mut Formatter<'_>) -> fmt::Result {
        let top = AXIS_PX + self.label_rows_count() * LABEL_ROW_PX;
        writeln!(
            out,
            "<div class=\"names\" style=\"padding-top:{top}px;height:{}px\">",
            self.processes.len() * LANE_PX
        )?;
        for process in &self.processes {
            match self.names.get(&(process % NEW_ID_STRIDE)) {
                Some(name) => writeln!(
                    out,
                    "<div class=\"name\" title=\"{}\">{process} {}</div>",
                    Attr(name),
                    Esc(name)
                )?,
                None => writeln!(out, "<div class=\"name\">{process}</div>")?,
            }
        }
        writeln!(out, "</div>")
    }

    fn write_axis(&self, out: &mut Formatter<'_>) -> fmt::Result {
        let seconds = ns_to_s(self.end_ns - self.origin_ns);
        let step = tick_step(seconds, self.width_px);
        // Enough decimals to tell consecutive ticks apart.
        let decimals = (-step.log10()).ceil().max(0.0) as usize;
        writeln!(out, "<div class=\"axis\">")?;
        let mut i = 0u32;
        loop {
            let t = f64::from(i) * step;
            if t > seconds {
                break;
            }
            writeln!(
                out,
                "<div class=\"tick\" style=\"left:{:.4}%\">{t:.decimals$} s</div>",
                t * 100.0 / seconds
            )?;
            i += 1;
        }
        writeln!(out, "</div>")
    }

    fn write_fault_labels(&self, out: &mut Formatter<'_>) -> fmt::Result {
        writeln!(
            out,
            "<div class=\"labels\" style=\"height:{}px\">",
            self.label_rows_count() * LABEL_ROW_PX
        )?;
        for (band, row) in self.faults.iter().zip(&self.label_rows) {
            let end = band.end_ns.unwrap_or(self.end_ns);
            let healed = if band.end_ns.is_some() {
                ""
            } else {
                " (never healed)"
            };
            writeln!(
                out,
                "<div class=\"flabel\" style=\"left:{:.4}%;width:{:.4}%;top:{}px\" title=\"{}\">{}{}</div>",
                self.x(band.start_ns),
                self.x(end) - self.x(band.start_ns),
                row * LABEL_ROW_PX,
                Attr(&self.fault_tooltip(band)),
                Esc(&band.label),
                healed,
            )?;
        }
        writeln!(out, "</div>")
    }

    fn fault_tooltip(&self, band: &Band) -> String {
        let mut text = format!("{}\nfrom {:.3} ms", band.label, self.ms(band.start_ns));
        match band.end_ns {
            Some(end) => {
                let _ = write!(text, " to {:.3} ms", self.ms(end));
            }
            None => text.push_str(", never healed"),
        }
        text
    }

    fn write_lanes(&self, out: &mut Formatter<'_>) -> fmt::Result {
        writeln!(
            out,
            "<div class=\"lanes\" style=\"height:{}px\">",
            self.processes.len() * LANE_PX
        )?;
        for band in self.faults {
            let end = band.end_ns.unwrap_or(self.end_ns);
            writeln!(
                out,
                "<div class=\"fault\" style=\"left:{:.4}%;width:{:.4}%\" title=\"{}\"></div>",
                self.x(band.start_ns),
                self.x(end) - self.x(band.start_ns),
                Attr(&self.fault_tooltip(band)),
            )?;
        }
        for call in &self.calls {
            let start = call.invoke.time_ns;
            // Ok / Fail end at their completion; an indeterminate op may take
            // effect at any later moment.
            let end = match (call.outcome, &call.completion) {
                (_, Some(done)) => done.time_ns.max(start),
                _ => self.end_ns,
            };
            if let (Outcome::Info, Some(_)) = (call.outcome, &call.completion) {
                // A thin line from the info to the end: when it may still land.
                writeln!(
                    out,
                    "<div class=\"tail\" style=\"left:{:.4}%;width:{:.4}%;top:{}px\"></div>",
                    self.x(end),
                    100.0 - self.x(end),
                    self.lane_of(call.process) * LANE_PX,
                )?;
            }
            let class = match (call.outcome, &call.completion) {
                (Outcome::Ok, _) => "ok",
                (Outcome::Fail, _) => "fail",
                (Outcome::Info, Some(_)) => "info",
                (Outcome::Info, None) => "info open",
            };
            writeln!(
                out,
                "<div class=\"b {class}\" style=\"left:{:.4}%;width:{:.4}%;top:{}px\" title=\"{}\"></div>",
                self.x(start),
                self.x(end) - self.x(start),
                self.lane_of(call.process) * LANE_PX,
                Attr(&self.call_tooltip(call)),
            )?;
        }
        writeln!(out, "</div>")
    }

    fn call_tooltip(&self, call: &Call) -> String {
        let value = |v: Option<i64>| v.map_or_else(|| "nil".to_owned(), |v| v.to_string());
        let mut text = format!("process {}\n", call.process);
        let _ = match call.f {
            F::Read => write!(text, "read {}", call.key),
            F::Write => write!(text, "write {} := {}", call.key, value(call.value)),
            F::Cas => write!(
                text,
                "cas {}: {} -> {}",
                call.key,
                value(call.expected),
                value(call.value)
            ),
            F::Add => write!(text, "add {} += {}", call.key, value(call.value)),
        };
        if call.f == F::Read && call.outcome == Outcome::Ok {
            match &call.values {
                Some(values) => {
                    let listed: Vec<String> =
                        values.iter().take(MAX_LISTED).map(i64::to_string).collect();
                    let more = values.len().saturating_sub(MAX_LISTED);
                    let _ = write!(text, " -> {} elements [{}", values.len(), listed.join(", "));
                    if more > 0 {
                        let _ = write!(text, ", … {more} more");
                    }
                    text.push(']');
                }
                None => {
                    let _ = write!(text, " -> {}", value(call.value));
                }
            }
        }
        let _ = write!(text, "\ninvoked {:.3} ms", self.ms(call.invoke.time_ns));
        match &call.completion {
            Some(done) => {
                let _ = write!(text, ", completed {:.3} ms", self.ms(done.time_ns));
            }
            None => text.push_str(", never completed"),
        }
        text.push_str(match (call.outcome, &call.completion) {
            (Outcome::Ok, _) => "\nok",
            (Outcome::Fail, _) => "\nfailed (did not take effect)",
            (Outcome::Info, Some(_)) => "\nindeterminate (info): may take effect until the end",
            (Outcome::Info, None) => {
                "\nindeterminate (no completion): may take effect until the end"
            }
        });
        text
    }
}

impl Display for Page<'_> {
    fn fmt(&self, out: &mut Formatter<'_>) -> fmt::Result {
        writeln!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">"
        )?;
        writeln!(
            out,
            "<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>",
            Esc(self.title)
        )?;
        self.write_header(out)?;
        writeln!(out, "<main>")?;
        self.write_names(out)?;
        writeln!(out, "<div class=\"scroll\">")?;
        writeln!(
            out,
            "<div class=\"chart\" id=\"chart\" data-width=\"{:.0}\" style=\"width:{:.0}px\">",
            self.width_px, self.width_px
        )?;
        self.write_axis(out)?;
        self.write_fault_labels(out)?;
        self.write_lanes(out)?;
        writeln!(out, "</div>\n</div>\n</main>")?;
        writeln!(out, "<script>{SCRIPT}</script>\n</body>\n</html>")
    }
}

/// Pairs the longest prefix of `ops` that [`pair`] accepts; with the error
/// that stops it, if the whole history is not accepted.
fn pair_longest_prefix(ops: &[Op]) -> (Vec<Call>, Option<String>) {
    let error = match pair(ops) {
        Ok(calls) => return (calls, None),
        Err(error) => error,
    };
    // `pair` fails at the first malformed event, so the prefixes it accepts
    // are exactly those shorter than that event's position.
    let (mut good, mut bad) = (0, ops.len());
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        if pair(&ops[..mid]).is_ok() {
            good = mid;
        } else {
            bad = mid;
        }
    }
    let calls = pair(&ops[..good]).unwrap_or_default();
    let note = format!(
        "Malformed history: {error:#}. Only the first {good} of {} events are shown.",
        ops.len()
    );
    (calls, Some(note))
}

/// Gives each fault the first label row free at its start, so overlapping
/// faults' labels are stacked instead of drawn over each other.
fn label_rows(faults: &[Band], label_ns_per_char: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..faults.len()).collect();
    order.sort_by_key(|&i| faults[i].start_ns);
    // end of the last band placed on each row (None = never healed)
    let mut row_ends: Vec<Option<u64>> = Vec::new();
    let mut rows = vec![0; faults.len()];
    for i in order {
        let band = &faults[i];
        let free = row_ends
            .iter()
            .position(|end| end.is_some_and(|end| end <= band.start_ns));
        let row = free.unwrap_or(row_ends.len());
        let label_end = band.start_ns + label_ns_per_char * (band.label.len() as u64 + 2);
        let busy = band.end_ns.map(|e| e.max(label_end));
        if row == row_ends.len() {
            row_ends.push(busy);
        } else {
            row_ends[row] = busy;
        }
        rows[i] = row;
    }
    rows
}

/// A round step between axis ticks (1, 2 or 5 times a power of ten seconds)
/// that keeps labels at least ~70 px apart.
fn tick_step(seconds: f64, width_px: f64) -> f64 {
    let min_step = seconds * 70.0 / width_px;
    let power = 10f64.powf(min_step.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&step| step >= min_step)
        .unwrap_or(10.0 * power)
}

fn ns_to_s(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// Text escaped for HTML content.
struct Esc<'a>(&'a str);

/// Text escaped for a (double- or single-quoted) HTML attribute; line breaks
/// are kept as `&#10;`, so that every element stays on one line of the file.
struct Attr<'a>(&'a str);

impl Display for Esc<'_> {
    fn fmt(&self, out: &mut Formatter<'_>) -> fmt::Result {
        escape(out, self.0, false)
    }
}

impl Display for Attr<'_> {
    fn fmt(&self, out: &mut Formatter<'_>) -> fmt::Result {
        escape(out, self.0, true)
    }
}

fn escape(out: &mut Formatter<'_>, text: &str, attribute: bool) -> fmt::Result {
    let mut rest = text;
    while let Some(at) = rest.find(['&', '<', '>', '"', '\'', '\n']) {
        out.write_str(&rest[..at])?;
        out.write_str(match rest.as_bytes()[at] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ if attribute => "&#10;",
            _ => "\n",
        })?;
        rest = &rest[at + 1..];
    }
    out.write_str(rest)
}

const STYLE: &str = r#"
body { font: 13px/1.4 system-ui, sans-serif; margin: 0; color: #222; background: #fff; }
header { padding: 8px 12px; border-bottom: 1px solid #ccc; }
h1 { font-size: 18px; margin: 0 0 4px; }
.verdict { margin: 4px 0; white-space: pre-wrap; font: 12px/1.3 monospace; }
.error { color: #a00; font-weight: bold; }
.stats, .legend { margin: 4px 0; }
.legend .key { display: inline-block; position: static; width: 28px; height: 10px; margin: 0 4px 0 12px; vertical-align: middle; }
.legend .key:first-child { margin-left: 0; }
.zoom { margin-left: 24px; }
main { display: flex; align-items: flex-start; padding: 8px 0 24px; }
.names { flex: none; width: 150px; font: 10px/14px monospace; text-align: right; padding-right: 4px; color: #555; }
.name { height: 14px; white-space: nowrap; overflow: hidden; }
.scroll { flex: 1; overflow-x: auto; }
.chart { position: relative; }
.axis { position: relative; height: 22px; border-bottom: 1px solid #888; }
.tick { position: absolute; bottom: 0; height: 100%; border-left: 1px solid #888; padding-left: 3px; font-size: 11px; white-space: nowrap; }
.labels { position: relative; }
.flabel { position: absolute; height: 15px; font-size: 11px; line-height: 15px; white-space: nowrap; overflow: visible;
  border-left: 2px solid rgba(110, 70, 170, 0.8); padding-left: 3px; color: #4a2a80; background: rgba(150, 110, 210, 0.12); box-sizing: border-box; }
.lanes { position: relative; background: repeating-linear-gradient(#fff 0 14px, #f3f3f3 14px 28px); }
.fault { position: absolute; top: 0; bottom: 0; background: rgba(150, 110, 210, 0.18); border-left: 1px solid rgba(110, 70, 170, 0.6); }
.fault:hover { background: rgba(150, 110, 210, 0.28); }
.key.fault { background: rgba(150, 110, 210, 0.35); }
.b { position: absolute; height: 10px; margin-top: 2px; min-width: 2px; box-sizing: border-box; }
.b:hover { outline: 2px solid #000; z-index: 1; }
.ok { background: #3a9a4a; }
.fail { background: #e8718a; }
.info { background: repeating-linear-gradient(135deg, #f0a020 0 4px, #fbe0a8 4px 8px); }
.tail { position: absolute; height: 0; margin-top: 6px; border-top: 1px dashed rgba(200, 130, 0, 0.45); }
.info.open { border: 1px dashed #a06000; background: repeating-linear-gradient(135deg, #f0c040 0 3px, #fff 3px 8px); }
"#;

const SCRIPT: &str = r#"
(function () {
  var chart = document.getElementById("chart");
  var base = parseFloat(chart.dataset.width);
  var zoom = 1;
  function set(z) {
    zoom = Math.min(64, Math.max(1 / 64, z));
    chart.style.width = (base * zoom) + "px";
  }
  document.getElementById("zin").onclick = function () { set(zoom * 2); };
  document.getElementById("zout").onclick = function () { set(zoom / 2); };
  document.getElementById("zfit").onclick = function () {
    set(chart.parentElement.clientWidth / base);
  };
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::OpKind;
    use crate::testkit::{Builder, Rng};

    fn band(start_ns: u64, end_ns: Option<u64>, label: &str) -> Band {
        Band {
            start_ns,
            end_ns,
            label: label.to_owned(),
        }
    }

    #[test]
    fn renders_lanes_faults_and_escaped_text() {
        let mut h = Builder::new();
        h.write(1, "a<b", 5).read(2, "x").ok(1).ok_read(2, Some(5));
        h.cas(2001, "x", 5, 6).fail(2001).add(3, 7).read(4, "x");
        h.info(3);
        let faults = [band(2_000, Some(6_000), "partition {n1} | {n2, n3}")];
        let html = render("run <1>", &h.ops, &faults, "linear: \"valid\" & done");

        // One lane per process, sorted, dense.
        let names: Vec<&str> = html
            .lines()
            .filter_map(|l| l.strip_prefix("<div class=\"name\">"))
            .collect();
        assert_eq!(
            names,
            ["1</div>", "2</div>", "3</div>", "4</div>", "2001</div>"]
        );
        assert!(html.contains("top:56px"), "lane 4 is process 2001");
        assert!(!html.contains("top:28014px"), "ids are not coordinates");

        assert!(html.contains(">partition {n1} | {n2, n3}</div>"), "{html}");
        assert!(html.contains("<title>run &lt;1&gt;</title>"));
        assert!(html.contains("linear: &quot;valid&quot; &amp; done"));
        assert!(html.contains("write a&lt;b := 5"));
        assert!(!html.contains("a<b"), "keys are escaped");

        // Read 2 returned 5; the cas failed; add 3 is indeterminate.
        assert!(html.contains("read x -&gt; 5"));
        assert!(html.contains("cas x: 5 -&gt; 6"));
        assert!(html.contains("failed (did not take effect)"));
        assert!(html.contains("indeterminate (info)"));

        // The read of process 4 never completed: hatched, to the end.
        let open: Vec<&str> = html
            .lines()
            .filter(|l| l.contains("class=\"b info open\""))
            .collect();
        assert_eq!(open.len(), 1, "{html}");
        assert!(open[0].contains("process 4"));
        assert!(open[0].contains("never completed"));
        assert!(
            open[0].contains("left:87.5000%;width:12.5000%"),
            "{}",
            open[0]
        );

        assert_eq!(html.matches("class=\"b ok\"").count(), 2);
        assert_eq!(html.matches("class=\"b fail\"").count(), 1);
        assert_eq!(html.matches("class=\"b info\"").count(), 1);
        for external in ["src=", "href=", "http:", "https:", "@import", "url("] {
            assert!(!html.contains(external), "self-contained: {external}");
        }
    }

    #[test]
    fn overlapping_faults_get_their_own_label_rows() {
        let faults = [
            band(0, Some(10), "a"),
            band(5, None, "b"),
            band(10, Some(20), "c"),
            band(12, Some(15), "d"),
        ];
        assert_eq!(label_rows(&faults, 0), [0, 1, 0, 2]);
        let html = render("t", &[], &faults, "");
        assert!(html.contains(">b (never healed)</div>"));
        assert!(html.contains("top:32px"), "third label row");
    }

    #[test]
    fn malformed_history_is_drawn_up_to_the_bad_event() {
        let w = Op::new(1, OpKind::Invoke, F::Write, "x", 10).with_value(Some(1));
        let ops = [
            w.clone(),
            w.completed(OpKind::Ok, 20),
            w.completed(OpKind::Ok, 30),
        ];
        let html = render("t", &ops, &[], "");
        assert!(html.contains("Malformed history"), "{html}");
        assert!(html.contains("Only the first 2 of 3 events"));
        assert_eq!(html.matches("class=\"b ok\"").count(), 1);
    }

    #[test]
    fn long_runs_get_seconds_on_the_axis() {
        let s = 1_000_000_000;
        let r = Op::new(7, OpKind::Invoke, F::Read, "x", 0);
        let ops = [r.clone(), r.completed(OpKind::Ok, 120 * s)];
        let html = render("t", &ops, &[band(30 * s, Some(60 * s), "pause")], "");
        assert!(html.contains("width:4800px"), "40 px/s");
        assert!(html.contains(">0 s</div>") && html.contains(">120 s</div>"));
        assert!(
            html.contains("left:25.0000%;width:25.0000%"),
            "the fault band"
        );
    }

    #[test]
    fn a_long_busy_run_stays_a_reasonable_size() {
        // 30 workers for 120 s, ~15,000 ops, a fresh process id (+1000) after
        // every indeterminate op: ~30,000 events, a few hundred processes.
        let mut rng = Rng::new(7);
        let mut ops = Vec::new();
        let mut processes = BTreeSet::new();
        for worker in 0..30u64 {
            let (mut process, mut t) = (worker, rng.below(10_000_000));
            while t < 120_000_000_000 {
                processes.insert(process);
                let invoke = Op::new(process, OpKind::Invoke, F::Write, "k3", t)
                    .with_value(Some(rng.below(100) as i64));
                t += 1_000_000 + rng.below(400_000_000);
                let kind = match rng.below(100) {
                    0..=1 => OpKind::Info,
                    2..=9 => OpKind::Fail,
                    _ => OpKind::Ok,
                };
                ops.push(invoke.clone());
                ops.push(invoke.completed(kind, t));
                if kind == OpKind::Info {
                    process += 1_000;
                }
            }
        }
        ops.sort_by_key(|op| op.time_ns);
        assert!(ops.len() > 20_000 && processes.len() > 100, "{}", ops.len());
        let faults = [band(30_000_000_000, Some(60_000_000_000), "partition")];
        let html = render("big", &ops, &faults, "");
        let lanes = html.matches("<div class=\"name\">").count();
        assert_eq!(lanes, processes.len());
        assert!(html.contains(&format!("height:{}px", lanes * LANE_PX)));
        assert!(html.len() < 250 * ops.len(), "{} bytes", html.len());
    }

    #[test]
    fn empty_history_renders() {
        let html = render("nothing", &[], &[], "");
        assert!(html.contains("0 operations"));
        assert!(html.ends_with("</html>\n"));
    }

    #[test]
    fn lanes_carry_their_clients_names_across_new_ids() {
        let mut h = Builder::new();
        h.write(1, "x", 1).info(1);
        h.read(1001, "x").ok_read(1001, Some(1));
        let names = BTreeMap::from([(1, "register → host <2>".to_string())]);
        let html = render_named("t", &h.ops, &[], "", &names);
        assert!(
            html.contains(">1 register → host &lt;2&gt;</div>"),
            "{html}"
        );
        assert!(html.contains(">1001 register → host &lt;2&gt;</div>"));
    }

    #[test]
    fn writes_a_file() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("timeline.html");
        let mut h = Builder::new();
        h.read(1, "x").ok_read(1, None);
        write(&path, "t", &h.ops, &[], "ok")?;
        assert!(std::fs::read_to_string(&path)?.contains("read x -&gt; nil"));
        assert!(write(&dir.path().join("no/such/dir.html"), "t", &[], &[], "").is_err());
        Ok(())
    }
}
