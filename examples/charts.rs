//! SVG bar charts of the ratio tables in `BENCHMARKS.md`, written to
//! `docs/charts/` (no dependencies: the SVG is written by hand).
//!
//! ```sh
//! cargo run --example charts               # regenerate every chart and its link
//! cargo run --example charts -- --check    # fail if anything is stale (CI)
//! cargo test --example charts              # this tool's own tests
//! ```
//!
//! A chart is declared by an HTML comment on its own line directly above a
//! markdown table (invisible when rendered):
//!
//! ```text
//! <!-- chart: stackless-core column="run 1" target="target" title="fiber-runtime / tokio" -->
//! | workload | target | run 1 |
//! | --- | --- | ---: |
//! | spawn_many | ≤ 0.5 | 0.54 |
//! ```
//!
//! The name (`[a-z0-9_-]+`) names the file, `docs/charts/<name>.svg`.
//! Attributes, all `key="value"` (a value cannot hold `"`):
//!
//! - `column` (required): the header of the column holding the ratio; the
//!   first number in each cell is the value (`0.23 (72 B vs 315 B)` is
//!   0.23), and a row with no number there is left out. Several columns,
//!   separated by `|`, give grouped bars (e.g. `column="before|after"`). A
//!   header that appears more than once is named `median#1`, `median#2`.
//! - `title` (required): the chart's title and the image's alt text.
//! - `target`: the header of a column of targets, `≤ 0.5` / `<= 0.5`
//!   (met at or below) or `≥ 1.4` / `>= 1.4` (met at or above); `—`, `-`
//!   or an empty cell means none. With one column the bars are coloured
//!   met / missed / no target; every target gets a tick.
//! - `legend`: the series' names, `|`-separated (default: the headers).
//! - `max`: the axis end; longer bars are cut, their value still printed.
//! - `value="median"`: the median of all numbers in the cell, for cells
//!   listing one value per run (`0.52, 0.52, 0.57`); the default is
//!   `value="first"`.
//!
//! After the table the tool keeps one blank line and then exactly one line
//! `![<title>](docs/charts/<name>.svg)` (a line directly under a table
//! would be read as one more row), inserting or updating it; running it
//! twice changes nothing. A malformed marker, a missing table or column, a
//! target it cannot read, or a link to a chart no marker declares is an
//! error naming the line. With `--check` nothing is written: it exits 1,
//! naming each stale or missing file (and each SVG no marker produces).

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::ExitCode;

const DOC: &str = "BENCHMARKS.md";
const CHART_DIR: &str = "docs/charts";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let check = match args.as_slice() {
        [] => false,
        [flag] if flag == "--check" => true,
        _ => {
            eprintln!("usage: cargo run --example charts [-- --check]");
            return ExitCode::from(2);
        }
    };
    let problems = run(Path::new(env!("CARGO_MANIFEST_DIR")), check);
    if problems.is_empty() {
        return ExitCode::SUCCESS;
    }
    for problem in &problems {
        eprintln!("charts: {problem}");
    }
    ExitCode::FAILURE
}

/// Regenerates (or with `check`, compares) everything; returns the problems.
fn run(root: &Path, check: bool) -> Vec<String> {
    let markdown = match fs::read_to_string(root.join(DOC)) {
        Ok(text) => text,
        Err(e) => return vec![format!("cannot read {DOC}: {e}")],
    };
    let out = match process(&markdown) {
        Ok(out) => out,
        Err(e) => return vec![e],
    };
    let mut files = vec![(DOC.to_string(), out.markdown)];
    for (name, svg) in out.charts {
        files.push((format!("{CHART_DIR}/{name}.svg"), svg));
    }
    let mut problems = Vec::new();
    let mut changed = 0;
    for (rel, text) in &files {
        let current = fs::read_to_string(root.join(rel)).ok();
        if current.as_deref() == Some(text.as_str()) {
            continue;
        }
        changed += 1;
        if check {
            let what = match (&current, rel == DOC) {
                (None, _) => "is missing",
                (Some(_), true) => "has a chart link missing or out of date",
                (Some(_), false) => "is stale (differs from what its table gives)",
            };
            problems.push(format!("{rel} {what}"));
            continue;
        }
        let written =
            fs::create_dir_all(root.join(CHART_DIR)).and_then(|()| fs::write(root.join(rel), text));
        match written {
            Ok(()) => println!("charts: wrote {rel}"),
            Err(e) => problems.push(format!("cannot write {rel}: {e}")),
        }
    }
    // SVGs in the chart directory that no marker produces any more.
    let entries = fs::read_dir(root.join(CHART_DIR)).into_iter().flatten();
    for entry in entries.flatten() {
        let rel = format!("{CHART_DIR}/{}", entry.file_name().to_string_lossy());
        if !rel.ends_with(".svg") || files.iter().any(|(f, _)| *f == rel) {
            continue;
        }
        changed += 1;
        if check {
            problems.push(format!("{rel} is not produced by any chart marker"));
        } else if let Err(e) = fs::remove_file(entry.path()) {
            problems.push(format!("cannot remove {rel}: {e}"));
        } else {
            println!("charts: removed {rel}");
        }
    }
    if check && changed > 0 {
        problems.push("`cargo run --example charts` regenerates them".to_string());
    }
    if changed == 0 {
        println!("charts: {} charts up to date", files.len() - 1);
    }
    problems
}

/// What the markdown should be, and the SVG of each chart by name.
#[derive(Debug)]
struct Output {
    markdown: String,
    charts: Vec<(String, String)>,
}

#[derive(Debug)]
struct Marker {
    name: String,
    columns: Vec<String>,
    title: String,
    target: Option<String>,
    legend: Option<Vec<String>>,
    max: Option<f64>,
    median: bool,
}

#[derive(Debug)]
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Lines the table takes, header and delimiter included.
    lines: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    AtMost(f64),
    AtLeast(f64),
}

impl Target {
    fn met(self, value: f64) -> bool {
        match self {
            Target::AtMost(t) => value <= t,
            Target::AtLeast(t) => value >= t,
        }
    }
    fn op(self) -> &'static str {
        match self {
            Target::AtMost(_) => "≤",
            Target::AtLeast(_) => "≥",
        }
    }
    fn value(self) -> f64 {
        match self {
            Target::AtMost(t) | Target::AtLeast(t) => t,
        }
    }
}

/// A number as found in its cell, with its text kept for printing.
#[derive(Debug, Clone, PartialEq)]
struct Value {
    v: f64,
    text: String,
}

#[derive(Debug)]
struct Row {
    label: String,
    values: Vec<Option<Value>>,
    target: Option<Target>,
}

#[derive(Debug)]
struct Chart {
    title: String,
    legend: Vec<String>,
    rows: Vec<Row>,
    max: Option<f64>,
}

/// Finds the markers, reads their tables, renders the charts and puts each
/// chart's link after its table.
fn process(markdown: &str) -> Result<Output, String> {
    let lines: Vec<&str> = markdown.split('\n').collect();
    let mut out: Vec<String> = Vec::new();
    let mut links = Vec::new(); // indices in `out` of the managed link lines
    // The input line number of each line of `out` copied from the input
    // (0: a line the tool wrote), for errors found in `out`.
    let mut source: Vec<usize> = Vec::new();
    let mut charts: Vec<(String, String)> = Vec::new();
    let mut fenced = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        // As `parse_marker` reads it, so that no marker is skipped.
        let is_marker = line
            .trim()
            .strip_prefix("<!--")
            .is_some_and(|s| s.trim_start().starts_with("chart"));
        if fenced || !is_marker {
            source.push(i + 1);
            out.push(line.to_string());
            i += 1;
            continue;
        }
        let at = |e: String| format!("{DOC}:{}: {e}", i + 1);
        let marker = parse_marker(line).map_err(at)?;
        if charts.iter().any(|(name, _)| *name == marker.name) {
            return Err(at(format!("a second chart named \"{}\"", marker.name)));
        }
        let table = parse_table(&lines[i + 1..]).map_err(at)?;
        let chart = build(&marker, &table).map_err(at)?;
        charts.push((marker.name.clone(), render(&chart)));
        out.extend(lines[i..=i + table.lines].iter().map(|l| l.to_string()));
        source.extend(i + 1..=i + 1 + table.lines);
        i += 1 + table.lines;
        // Drop the link that is already there (right below the table, or
        // after one blank line), then write it as it should be.
        let suffix = format!("]({CHART_DIR}/{}.svg)", marker.name);
        let is_link = |l: &str| l.starts_with("![") && l.trim_end().ends_with(&suffix);
        if i < lines.len() && is_link(lines[i]) {
            i += 1;
        } else if i + 1 < lines.len() && lines[i].trim().is_empty() && is_link(lines[i + 1]) {
            i += 2;
        }
        out.push(String::new());
        links.push(out.len());
        out.push(format!(
            "![{}]({CHART_DIR}/{}.svg)",
            marker.title, marker.name
        ));
        source.extend([0, 0]);
        if i < lines.len() && !lines[i].trim().is_empty() {
            out.push(String::new());
            source.push(0);
        }
    }
    // A chart link with no marker would point at a file that is removed.
    let mut fenced = false;
    for (n, line) in out.iter().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if !fenced && line.contains(&format!("]({CHART_DIR}/")) && !links.contains(&n) {
            return Err(format!(
                "{DOC}:{}: a link to {CHART_DIR}/ with no chart marker above its table: {line}",
                source[n]
            ));
        }
    }
    Ok(Output {
        markdown: out.join("\n"),
        charts,
    })
}

fn parse_marker(line: &str) -> Result<Marker, String> {
    const SHAPE: &str = "expected `<!-- chart: NAME key=\"value\" ... -->` on one line";
    let body = line
        .trim()
        .strip_prefix("<!--")
        .and_then(|s| s.strip_suffix("-->"))
        .and_then(|s| s.trim().strip_prefix("chart:"))
        .ok_or_else(|| format!("malformed chart marker: {SHAPE}"))?
        .trim();
    let (name, mut rest) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
    let name_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    if name.is_empty() || !name.chars().all(name_ok) {
        return Err(format!(
            "chart name \"{name}\": expected [a-z0-9_-]+ (it names the SVG file); {SHAPE}"
        ));
    }
    let mut attrs: Vec<(&str, &str)> = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let (key, after) = rest
            .split_once("=\"")
            .filter(|(key, _)| !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase()))
            .ok_or_else(|| format!("chart \"{name}\": expected key=\"value\" at `{rest}`"))?;
        let (value, after) = after.split_once('"').ok_or_else(|| {
            format!("chart \"{name}\": the value of `{key}` has no closing quote")
        })?;
        if attrs.iter().any(|(k, _)| *k == key) {
            return Err(format!("chart \"{name}\": `{key}` given twice"));
        }
        attrs.push((key, value));
        rest = after;
    }
    let get = |key: &str| attrs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let required = |key: &str| {
        get(key)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| format!("chart \"{name}\": missing {key}=\"...\""))
    };
    const KEYS: [&str; 6] = ["column", "title", "target", "legend", "max", "value"];
    if let Some((key, _)) = attrs.iter().find(|(k, _)| !KEYS.contains(k)) {
        return Err(format!(
            "chart \"{name}\": unknown attribute `{key}` (known: {})",
            KEYS.join(", ")
        ));
    }
    let list = |s: &str| {
        s.split('|')
            .map(|c| c.trim().to_string())
            .collect::<Vec<_>>()
    };
    let bad = |e: String| Err(format!("chart \"{name}\": {e}"));
    let columns = list(required("column")?);
    let title = required("title")?.trim().to_string();
    if title.contains(['[', ']']) {
        return bad("the title is the image's alt text: no [ or ]".into());
    }
    let legend = get("legend").map(list);
    if legend.as_ref().is_some_and(|l| l.len() != columns.len()) {
        return bad(format!(
            "legend needs one name per column ({})",
            columns.len()
        ));
    }
    let max = get("max").map(|m| (m, m.trim().parse::<f64>()));
    let max = match max {
        None => None,
        Some((_, Ok(m))) if m > 0.0 && m.is_finite() => Some(m),
        Some((m, _)) => return bad(format!("max=\"{m}\" is not a positive number")),
    };
    let median = match get("value") {
        None | Some("first") => false,
        Some("median") => true,
        Some(v) => return bad(format!("value=\"{v}\": expected first or median")),
    };
    Ok(Marker {
        name: name.to_string(),
        columns,
        title,
        target: get("target").map(|t| t.trim().to_string()),
        legend,
        max,
        median,
    })
}

/// Reads the markdown table at the start of `lines`.
fn parse_table(lines: &[&str]) -> Result<Table, String> {
    let count = lines
        .iter()
        .take_while(|l| l.trim_start().starts_with('|'))
        .count();
    let delimiter = |cell: &String| {
        let c = cell.trim_matches(':');
        !c.is_empty() && c.chars().all(|ch| ch == '-')
    };
    if count < 2 || !split_row(lines[1]).iter().all(delimiter) {
        return Err(
            "a chart marker must be directly followed by a markdown table \
                    (a header line and a `| --- |` line)"
                .to_string(),
        );
    }
    Ok(Table {
        header: split_row(lines[0]),
        rows: lines[2..count].iter().map(|l| split_row(l)).collect(),
        lines: count,
    })
}

/// The cells of a table line, trimmed; `\|` is a literal `|`.
fn split_row(line: &str) -> Vec<String> {
    let s = line.trim();
    let s = s.strip_prefix('|').unwrap_or(s);
    let s = if s.ends_with('|') && !s.ends_with("\\|") {
        &s[..s.len() - 1]
    } else {
        s
    };
    let mut cells = vec![String::new()];
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cells.last_mut().unwrap().push(chars.next().unwrap())
            }
            '|' => cells.push(String::new()),
            c => cells.last_mut().unwrap().push(c),
        }
    }
    cells.iter().map(|c| c.trim().to_string()).collect()
}

/// The index of the column `spec` names: a header, or `header#n` for the
/// n-th of several equal headers.
fn find_column(header: &[String], spec: &str) -> Result<usize, String> {
    let with = |name: &str| {
        (0..header.len())
            .filter(|&i| header[i] == name)
            .collect::<Vec<_>>()
    };
    let exact = with(spec);
    match exact.len() {
        1 => return Ok(exact[0]),
        0 => {}
        n => {
            return Err(format!(
                "column \"{spec}\" appears {n} times: name one as \"{spec}#1\" to \"{spec}#{n}\""
            ));
        }
    }
    if let Some((base, nth)) = spec.rsplit_once('#') {
        let same = with(base);
        if let Some(&i) = nth
            .parse::<usize>()
            .ok()
            .and_then(|n| same.get(n.checked_sub(1)?))
        {
            return Ok(i);
        }
    }
    Err(format!(
        "no column \"{spec}\" in the table (its columns: \"{}\")",
        header.join("\", \"")
    ))
}

/// The numbers in `s` (`12`, `0.54`), in order.
fn numbers(s: &str) -> Vec<Value> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
        // Both ends are at ASCII bytes, so on character boundaries.
        let text = &s[start..i];
        // A value a chart can scale (309 digits parse as infinity, and
        // the axis arithmetic overflows long before that).
        if let Ok(v) = text.parse::<f64>()
            && v.abs() <= 1e300
        {
            out.push(Value {
                v,
                text: text.to_string(),
            });
        }
    }
    out
}

fn cell_value(cell: &str, median: bool) -> Option<Value> {
    let mut nums = numbers(cell);
    if !median || nums.len() < 2 {
        return nums.into_iter().next();
    }
    nums.sort_by(|a, b| a.v.total_cmp(&b.v));
    let mid = nums.len() / 2;
    if nums.len() % 2 == 1 {
        return Some(nums.swap_remove(mid));
    }
    let decimals = nums
        .iter()
        .map(|n| n.text.split_once('.').map_or(0, |(_, f)| f.len()))
        .max();
    let v = (nums[mid - 1].v + nums[mid].v) / 2.0;
    Some(Value {
        v,
        text: format!("{v:.*}", decimals.unwrap_or(0) + 1),
    })
}

fn parse_target(cell: &str) -> Result<Option<Target>, String> {
    let c = cell.trim().trim_matches('*').trim();
    if c.is_empty() || ["—", "–", "-"].contains(&c) {
        return Ok(None);
    }
    let (at_most, rest) = if let Some(r) = c.strip_prefix('≤').or_else(|| c.strip_prefix("<=")) {
        (true, r)
    } else if let Some(r) = c.strip_prefix('≥').or_else(|| c.strip_prefix(">=")) {
        (false, r)
    } else {
        return Err(format!(
            "target \"{cell}\": expected `≤ N`, `>= N`, `—` or nothing"
        ));
    };
    let t = numbers(rest)
        .first()
        .map(|n| n.v)
        .ok_or_else(|| format!("target \"{cell}\" has no number"))?;
    Ok(Some(if at_most {
        Target::AtMost(t)
    } else {
        Target::AtLeast(t)
    }))
}

fn build(m: &Marker, t: &Table) -> Result<Chart, String> {
    let chart = format!("chart \"{}\"", m.name);
    let columns = m
        .columns
        .iter()
        .map(|c| find_column(&t.header, c))
        .collect::<Result<Vec<_>, _>>();
    let columns = columns.map_err(|e| format!("{chart}: {e}"))?;
    let target = m
        .target
        .as_deref()
        .map(|c| find_column(&t.header, c))
        .transpose();
    let target = target.map_err(|e| format!("{chart}: {e}"))?;
    let mut rows = Vec::new();
    for cells in &t.rows {
        let cell = |i: usize| cells.get(i).map_or("", String::as_str);
        let values: Vec<_> = columns
            .iter()
            .map(|&c| cell_value(cell(c), m.median))
            .collect();
        if values.iter().all(Option::is_none) {
            continue; // a row with nothing to draw: left out
        }
        let label: String = cell(0).chars().filter(|&c| c != '`' && c != '*').collect();
        let target = match target {
            Some(c) => {
                parse_target(cell(c)).map_err(|e| format!("{chart}, row \"{label}\": {e}"))?
            }
            None => None,
        };
        rows.push(Row {
            label,
            values,
            target,
        });
    }
    if rows.is_empty() {
        return Err(format!(
            "{chart}: no row has a number in \"{}\"",
            m.columns.join("|")
        ));
    }
    Ok(Chart {
        title: m.title.clone(),
        legend: m.legend.clone().unwrap_or_else(|| m.columns.clone()),
        rows,
        max: m.max,
    })
}

const WIDTH: f64 = 720.0;
const FONT: &str =
    "-apple-system, BlinkMacSystemFont, &quot;Segoe UI&quot;, Helvetica, Arial, sans-serif";
const MET: &str = "#2f9e44";
const MISSED: &str = "#e8590c";
const NO_TARGET: &str = "#868e96";
const SERIES: [&str; 4] = ["#adb5bd", "#1c7ed6", "#f59f00", "#7048e8"];

/// The axis end and the tick step.
fn axis(c: &Chart) -> (f64, f64) {
    let values = c
        .rows
        .iter()
        .flat_map(|r| r.values.iter().flatten().map(|v| v.v));
    let targets = c.rows.iter().filter_map(|r| r.target.map(Target::value));
    let top = c
        .max
        .unwrap_or_else(|| values.chain(targets).fold(1.0, f64::max) * 1.05);
    let steps = [
        0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 20.0, 25.0, 50.0, 100.0,
    ];
    let step = steps
        .into_iter()
        .find(|s| top / s <= 8.0)
        .unwrap_or(top / 8.0);
    match c.max {
        Some(max) => (max, step),
        None => ((top / step).ceil() * step, step),
    }
}

/// A number for an axis label: `0.25`, `1`, `1.5`.
fn short(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn escape(s: &str) -> String {
    let s = s
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    s.replace('\'', "&#39;")
}

/// Rough width of `s` in pixels at `size` (there is no font metrics here).
fn text_width(s: &str, size: f64) -> f64 {
    s.chars().count() as f64 * size * 0.55
}

/// `<path d='D' ATTRS/>`.
fn path(w: &mut String, d: String, attrs: &str) {
    let _ = writeln!(w, "<path d='{d}' {attrs}/>");
}

/// `<text x='X' y='Y' ATTRS>TEXT</text>`, the text escaped.
fn text(w: &mut String, (x, y): (f64, f64), attrs: &str, content: &str) {
    let _ = writeln!(
        w,
        "<text x='{x:.1}' y='{y:.1}' {attrs}>{}</text>",
        escape(content)
    );
}

fn render(c: &Chart) -> String {
    let series = c.legend.len();
    let bar = if series == 1 { 16.0 } else { 11.0 };
    let band = bar * series as f64 + 10.0;
    let longest = c.rows.iter().map(|r| text_width(&r.label, 12.0));
    let x0 = 12.0 + (longest.fold(0.0, f64::max) + 16.0).clamp(80.0, 330.0);
    let x1 = WIDTH - 72.0;
    let (top, bottom) = (58.0, 58.0 + band * c.rows.len() as f64);
    let (max, step) = axis(c);
    let x = |v: f64| x0 + v.clamp(0.0, max) / max * (x1 - x0);
    let has_target = c.rows.iter().any(|r| r.target.is_some());
    const DARK: &str = "#212529";
    const GREY: &str = "#495057";

    let mut s = String::new();
    let w = &mut s;
    let height = bottom + 30.0;
    let _ = writeln!(
        w,
        "<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}' \
         viewBox='0 0 {WIDTH} {height}' font-family='{FONT}' font-size='12' role='img'>"
    );
    let _ = writeln!(w, "<title>{}</title>", escape(&c.title));
    let _ = writeln!(w, "<rect width='100%' height='100%' fill='#fff'/>");
    // The title (bold: wider than `text_width` guesses) shrinks to fit.
    let size = ((WIDTH - 24.0) / text_width(&c.title, 1.12)).clamp(11.0, 15.0);
    let attrs = format!("font-size='{size:.1}' font-weight='600' fill='{DARK}'");
    text(w, (12.0, 24.0), &attrs, &c.title);

    // Legend: a sample (a swatch, the target tick, the parity line) and a
    // name for each.
    let mut legend: Vec<(&str, &str)> = Vec::new();
    if series == 1 && has_target {
        let status = |r: &Row| r.values[0].as_ref().map(|v| r.target.map(|t| t.met(v.v)));
        let seen: Vec<Option<bool>> = c.rows.iter().filter_map(status).collect();
        let kinds = [
            (Some(true), MET, "target met"),
            (Some(false), MISSED, "target missed"),
            (None, NO_TARGET, "no target"),
        ];
        for (kind, colour, name) in kinds {
            if seen.contains(&kind) {
                legend.push((colour, name));
            }
        }
    } else if series > 1 {
        for (i, name) in c.legend.iter().enumerate() {
            legend.push((SERIES[i % SERIES.len()], name.as_str()));
        }
    }
    if has_target {
        legend.push(("tick", "target (arrow: the side that meets it)"));
    }
    if max >= 1.0 {
        legend.push(("parity", "1.0 (parity)"));
    }
    let mut lx = 12.0;
    for (sample, name) in legend {
        let d = format!("M{:.1},35 v12", lx + 5.0);
        match sample {
            "tick" => path(w, d, &format!("stroke='{DARK}' stroke-width='2'")),
            "parity" => path(w, d, &format!("stroke='{GREY}' stroke-dasharray='3 2'")),
            colour => {
                let _ = writeln!(
                    w,
                    "<rect x='{lx:.1}' y='36' width='10' height='10' fill='{colour}'/>"
                );
            }
        }
        text(
            w,
            (lx + 15.0, 45.0),
            &format!("font-size='11' fill='{GREY}'"),
            name,
        );
        lx += 15.0 + text_width(name, 11.0) + 16.0;
    }

    // Grid, axis labels, the axis and the parity line.
    for i in 0..=(max / step + 1e-9).floor() as usize {
        let v = i as f64 * step;
        path(
            w,
            format!("M{:.1},{top:.1} V{bottom:.1}", x(v)),
            "stroke='#e9ecef'",
        );
        let attrs = format!("font-size='11' fill='{GREY}' text-anchor='middle'");
        text(w, (x(v), bottom + 16.0), &attrs, &short(v));
    }
    path(
        w,
        format!("M{x0:.1},{top:.1} V{bottom:.1}"),
        &format!("stroke='{GREY}'"),
    );
    if max >= 1.0 {
        let d = format!("M{:.1},{:.1} V{bottom:.1}", x(1.0), top - 4.0);
        path(w, d, &format!("stroke='{GREY}' stroke-dasharray='4 3'"));
    }

    for (i, row) in c.rows.iter().enumerate() {
        let y = top + band * i as f64;
        let mut label = row.label.clone();
        if label.chars().count() > 52 {
            label = format!("{}…", label.chars().take(51).collect::<String>());
        }
        let attrs = format!("text-anchor='end' fill='{DARK}'");
        text(w, (x0 - 8.0, y + band / 2.0 + 4.0), &attrs, &label);
        let tick = row
            .target
            .filter(|t| t.value() <= max)
            .map(|t| x(t.value()));
        for (k, value) in row.values.iter().enumerate() {
            let Some(value) = value else { continue };
            let by = y + 5.0 + bar * k as f64;
            let met = row.target.map(|t| t.met(value.v));
            let colour = match (series, has_target, met) {
                (1, true, Some(true)) => MET,
                (1, true, Some(false)) => MISSED,
                (1, true, None) => NO_TARGET,
                (1, false, _) => SERIES[1],
                _ => SERIES[k % SERIES.len()],
            };
            let note = match (row.target, met) {
                (Some(t), Some(met)) => {
                    let verdict = if met { "met" } else { "missed" };
                    format!(", target {} {}: {verdict}", t.op(), short(t.value()))
                }
                _ => String::new(),
            };
            let end = x(value.v);
            let _ = writeln!(
                w,
                "<rect x='{x0:.1}' y='{by:.1}' width='{:.1}' height='{:.1}' fill='{colour}'>\
                 <title>{}</title></rect>",
                end - x0,
                bar - 1.0,
                escape(&format!(
                    "{}, {}: {}{note}",
                    row.label, c.legend[k], value.text
                )),
            );
            if value.v > max {
                // Cut: two white slashes near the end of the bar.
                let (low, rise) = (by + bar - 1.0, 1.0 - bar);
                let d = format!(
                    "M{:.1},{low:.1} l4,{rise:.1} m1,{:.1} l4,{rise:.1}",
                    end - 14.0,
                    -rise
                );
                path(w, d, "stroke='#fff' stroke-width='2'");
            }
            // The value goes past the target tick when that is close.
            let tx = tick.filter(|&tx| tx > end - 6.0 && tx < end + 36.0);
            let vx = tx.map_or(end + 4.0, |tx| tx.max(end) + 6.0);
            let size = if series == 1 { 11 } else { 10 };
            let attrs = format!(
                "font-size='{size}' fill='{DARK}' stroke='#fff' stroke-width='3' paint-order='stroke'"
            );
            text(w, (vx, by + bar / 2.0 + 3.5), &attrs, &value.text);
        }
        if let (Some(tx), Some(t)) = (tick, row.target) {
            // The tick, with an arrow pointing to the side that meets it.
            let dir = if t.op() == "≤" { -6.0 } else { 6.0 };
            let d = format!("M{tx:.1},{:.1} V{:.1}", y + 2.0, y + band - 2.0);
            path(w, d, &format!("stroke='{DARK}' stroke-width='2'"));
            let d = format!("M{tx:.1},{:.1} l{dir:.1},4 l{:.1},4 z", y + 1.0, -dir);
            path(w, d, &format!("fill='{DARK}'"));
        }
    }
    let _ = writeln!(w, "</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC_TEXT: &str = "\
Intro.

<!-- chart: core column=\"run 1\" target=\"target\" title=\"fiber / tokio\" -->
| workload | target | run 1 |
| --- | --- | ---: |
| `spawn_many` | ≤ 0.5 | 0.54 |
| echo | ≥ 1.4 | 1.52 |
| memory | ≤ 0.25 | 0.23 (72 B vs 315 B) |
| nothing | — | n/a |

After.
";

    fn only_chart(doc: &str) -> (Marker, Chart) {
        let line = doc.lines().find(|l| l.starts_with("<!-- chart")).unwrap();
        let marker = parse_marker(line).unwrap();
        let lines: Vec<&str> = doc.lines().skip_while(|l| !l.starts_with('|')).collect();
        let chart = build(&marker, &parse_table(&lines).unwrap()).unwrap();
        (marker, chart)
    }

    #[test]
    fn parses_a_marker_and_its_table() {
        let (marker, chart) = only_chart(DOC_TEXT);
        assert_eq!(marker.name, "core");
        assert_eq!(marker.columns, ["run 1"]);
        assert_eq!(marker.title, "fiber / tokio");
        let labels: Vec<&str> = chart.rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(
            labels,
            ["spawn_many", "echo", "memory"],
            "the row with no number is left out"
        );
        let values: Vec<f64> = chart
            .rows
            .iter()
            .map(|r| r.values[0].as_ref().unwrap().v)
            .collect();
        assert_eq!(values, [0.54, 1.52, 0.23]);
        assert_eq!(chart.rows[0].target, Some(Target::AtMost(0.5)));
    }

    #[test]
    fn an_at_least_target_is_met_at_or_above() {
        let (_, chart) = only_chart(DOC_TEXT);
        assert_eq!(chart.rows[1].target, Some(Target::AtLeast(1.4)));
        assert!(Target::AtLeast(1.4).met(1.52) && Target::AtLeast(1.4).met(1.4));
        assert!(!Target::AtLeast(1.4).met(1.02));
        assert!(!Target::AtMost(0.5).met(0.54) && Target::AtMost(0.5).met(0.5));
        assert_eq!(parse_target(">= 1.1"), Ok(Some(Target::AtLeast(1.1))));
        assert_eq!(parse_target("<= 2"), Ok(Some(Target::AtMost(2.0))));
        assert_eq!(parse_target("—"), Ok(None));
        assert!(parse_target("about 3").unwrap_err().contains("expected"));
        // In the SVG: spawn_many misses (≤), echo meets (≥), memory meets.
        let svg = render(&chart);
        let fills: Vec<&str> = svg
            .lines()
            .filter(|l| l.starts_with("<rect x='") && l.contains("<title>"))
            .map(|l| {
                l.split("fill='")
                    .nth(1)
                    .unwrap()
                    .split('\'')
                    .next()
                    .unwrap()
            })
            .collect();
        assert_eq!(fills, [MISSED, MET, MET]);
        assert!(svg.contains("echo, run 1: 1.52, target ≥ 1.4: met"));
    }

    #[test]
    fn inserts_the_link_once_and_is_idempotent() {
        let first = process(DOC_TEXT).unwrap();
        let link = "![fiber / tokio](docs/charts/core.svg)";
        assert_eq!(first.markdown.matches(link).count(), 1);
        assert!(
            first
                .markdown
                .contains(&format!("| nothing | — | n/a |\n\n{link}\n\nAfter.\n"))
        );
        let second = process(&first.markdown).unwrap();
        assert_eq!(second.markdown, first.markdown);
        assert_eq!(second.charts, first.charts);
        // A changed title rewrites the line instead of adding one.
        let retitled = first
            .markdown
            .replace("title=\"fiber / tokio\"", "title=\"new\"");
        let third = process(&retitled).unwrap().markdown;
        assert_eq!(third.matches("](docs/charts/core.svg)").count(), 1);
        assert!(third.contains("\n\n![new](docs/charts/core.svg)\n\nAfter."));
        // A table at the very end of the file.
        let end = process(
            "<!-- chart: e column=\"v\" title=\"t\" -->\n| a | v |\n| - | - |\n| x | 1 |\n",
        )
        .unwrap();
        assert_eq!(
            end.markdown,
            "<!-- chart: e column=\"v\" title=\"t\" -->\n| a | v |\n| - | - |\n| x | 1 |\n\n![t](docs/charts/e.svg)\n"
        );
        assert_eq!(process(&end.markdown).unwrap().markdown, end.markdown);
    }

    #[test]
    fn malformed_markers_are_errors_with_a_message() {
        let table = "\n| a | v |\n| - | - |\n| x | 1 |\n";
        let cases = [
            (
                "<!-- chart: x column=\"v\" title=\"t\"",
                "malformed chart marker",
            ),
            (
                "<!-- chart: x column=\"v title=\"t\" -->",
                "expected key=\"value\"",
            ),
            (
                "<!-- chart: x column=\"v\" title=\"t -->",
                "no closing quote",
            ),
            (
                "<!-- chart: Bad! column=\"v\" title=\"t\" -->",
                "chart name \"Bad!\"",
            ),
            ("<!-- chart: x title=\"t\" -->", "missing column"),
            ("<!-- chart: x column=\"v\" -->", "missing title"),
            (
                "<!-- chart: x column=\"v\" title=\"t\" colour=\"red\" -->",
                "unknown attribute `colour`",
            ),
            (
                "<!-- chart: x column=\"w\" title=\"t\" -->",
                "no column \"w\" in the table (its columns: \"a\", \"v\")",
            ),
            (
                "<!-- chart: x column=\"v\" title=\"t\" max=\"-1\" -->",
                "not a positive number",
            ),
            (
                "<!-- chart: x column=\"a\" title=\"t\" -->",
                "no row has a number",
            ),
        ];
        for (marker, message) in cases {
            let err = process(&format!("prose\n{marker}{table}")).unwrap_err();
            assert!(err.starts_with("BENCHMARKS.md:2: "), "{err}");
            assert!(err.contains(message), "{marker}: {err}");
        }
        let no_table = process("<!-- chart: x column=\"v\" title=\"t\" -->\ntext\n").unwrap_err();
        assert!(
            no_table.contains("directly followed by a markdown table"),
            "{no_table}"
        );
        let stray = process("text\n\n![t](docs/charts/gone.svg)\n").unwrap_err();
        assert!(
            stray.contains("BENCHMARKS.md:3: a link to docs/charts/ with no chart marker"),
            "{stray}"
        );
        // Inside a fenced code block a marker is only text.
        assert!(process("```\n<!-- chart: broken\n```\n").is_ok());
    }

    #[test]
    fn a_stray_link_names_its_own_line_and_markers_are_not_skipped() {
        // The first chart's link is inserted (three lines), and the error
        // still names the stray link's line in the input (line 7).
        let doc = "<!-- chart: a column=\"v\" title=\"t\" -->\n| r | v |\n| - | - |\n| x | 1 |\n\
                   text\n\n![old](docs/charts/gone.svg)\n";
        let err = process(doc).unwrap_err();
        assert!(err.contains(":7: a link to docs/charts/"), "{err}");
        // A marker without the space is read, not skipped.
        let doc = "<!--chart: b column=\"v\" title=\"t\" -->\n| r | v |\n| - | - |\n| x | 1 |\n";
        assert_eq!(process(doc).unwrap().charts.len(), 1);
        // A number too large for a bar is no value (the row is skipped).
        let huge = "9".repeat(400);
        let doc = format!(
            "<!-- chart: c column=\"v\" title=\"t\" -->\n| r | v |\n| - | - |\n| x | {huge} |\n| y | 1 |\n"
        );
        let out = process(&doc).unwrap();
        assert!(!out.charts[0].1.contains("NaN"));
    }

    #[test]
    fn repeated_headers_several_columns_and_medians() {
        let doc = "<!-- chart: b column=\"median#1|median#2\" legend=\"before|after\" title=\"t\" -->\n\
                   | row | before | median | after | median |\n| --- | --- | ---: | --- | ---: |\n\
                   | a | 0.5 0.7 | 0.6 | 0.4 | 0.4 |\n| b | — | — | 1.1 | 1.1 |\n";
        let (_, chart) = only_chart(doc);
        assert_eq!(chart.legend, ["before", "after"]);
        let texts = |r: &Row| {
            r.values
                .iter()
                .map(|v| v.as_ref().map(|v| v.text.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            texts(&chart.rows[0]),
            [Some("0.6".into()), Some("0.4".into())]
        );
        assert_eq!(texts(&chart.rows[1]), [None, Some("1.1".into())]);
        let header = ["row", "median", "median"].map(String::from);
        assert!(
            find_column(&header, "median")
                .unwrap_err()
                .contains("\"median#1\" to \"median#2\"")
        );
        assert_eq!(
            cell_value("0.88, 0.89, 0.90, 0.86, 0.93", true)
                .unwrap()
                .text,
            "0.89"
        );
        assert_eq!(cell_value("0.4, 0.6", true).unwrap().text, "0.50");
        assert_eq!(cell_value("0.4, 0.6", false).unwrap().text, "0.4");
    }

    #[test]
    fn the_svg_is_deterministic_and_cuts_long_bars() {
        let doc = "<!-- chart: m column=\"v\" target=\"t\" max=\"2\" title=\"a & b\" -->\n\
                   | row | v | t |\n| - | - | - |\n| <x> | 14.1 (11.2–17.0) | ≤ 0.5 |\n| y | 0.035 | ≤ 0.01 |\n";
        let (_, chart) = only_chart(doc);
        let svg = render(&chart);
        assert_eq!(svg, render(&chart));
        assert!(svg.contains("<title>a &amp; b</title>") && svg.contains("&lt;x&gt;"));
        assert!(svg.contains(">14.1</text>") && svg.contains(">0.035</text>"));
        assert!(
            svg.contains("stroke='#fff' stroke-width='2'"),
            "the bar past the axis end is marked as cut"
        );
        assert_eq!(axis(&chart), (2.0, 0.25));
    }
}
