//! Pure formatting: Docker-style padded tables, humanized durations and sizes, container
//! status strings, and a small subset of Go templates for `--format`.
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Result};
use serde_json::Value;

/// Aligns rows like Go's tabwriter as Docker configures it (min width 10, padding 3); the
/// last column is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let width = (widths[i] + 3).max(10);
                let pad = width - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Docker's `units.HumanDuration`.
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    if seconds < 1 {
        return "Less than a second".into();
    } else if seconds == 1 {
        return "1 second".into();
    } else if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = seconds / 60;
    if minutes == 1 {
        return "About a minute".into();
    } else if minutes < 60 {
        return format!("{minutes} minutes");
    }
    // Rounded to the nearest hour, as Go's d.Round(time.Hour).
    let hours = (d.as_secs_f64() / 3600.0).round() as u64;
    if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", seconds / 3600 / 24 / 365)
    }
}

/// "3 seconds ago" for a time before `now` (a time in the future counts as now).
pub fn ago(then: SystemTime, now: SystemTime) -> String {
    format!(
        "{} ago",
        human_duration(now.duration_since(then).unwrap_or_default())
    )
}

/// Go's `%.<prec>g`.
pub fn go_g(value: f64, prec: usize) -> String {
    if value == 0.0 {
        return "0".into();
    }
    let sci = format!("{:.*e}", prec.saturating_sub(1), value);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        let mantissa = strip_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    let decimals = (prec as i32 - 1 - exp).max(0) as usize;
    strip_zeros(&format!("{value:.decimals$}")).to_string()
}

fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Docker's `units.HumanSizeWithPrecision` (decimal units: 4.26MB, 1.23kB, 512B).
pub fn human_size_prec(size: f64, prec: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = size;
    let mut i = 0;
    while size >= 1000.0 && i < UNITS.len() - 1 {
        size /= 1000.0;
        i += 1;
    }
    format!("{}{}", go_g(size, prec), UNITS[i])
}

/// Sizes as `docker images` prints them (3 significant digits).
pub fn human_size(size: i64) -> String {
    human_size_prec(size.max(0) as f64, 3)
}

/// Docker's `stringutils.Ellipsis`: at most `max` characters, the last one `…` if cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Go's `strconv.Quote` for the printable text a command is.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The COMMAND column: quoted, cut to 20 characters unless `no_trunc`.
pub fn command_column(command: &str, no_trunc: bool) -> String {
    if no_trunc {
        go_quote(command)
    } else {
        go_quote(&ellipsis(command, 20))
    }
}

/// What `ps` shows in STATUS, from the state's status name ("running", "exited", ...).
pub fn status_column(
    status: &str,
    exit_code: i32,
    started: Option<SystemTime>,
    finished: Option<SystemTime>,
    now: SystemTime,
) -> String {
    let since = |t: Option<SystemTime>| {
        human_duration(
            t.and_then(|t| now.duration_since(t).ok())
                .unwrap_or_default(),
        )
    };
    match status {
        "running" => format!("Up {}", since(started)),
        "paused" => format!("Up {} (Paused)", since(started)),
        "restarting" => format!("Restarting ({exit_code}) {} ago", since(finished)),
        "removing" => "Removal In Progress".into(),
        "dead" => "Dead".into(),
        "exited" => match finished {
            Some(_) => format!("Exited ({exit_code}) {} ago", since(finished)),
            None => format!("Exited ({exit_code})"),
        },
        "created" => "Created".into(),
        other => other.to_string(),
    }
}

/// Replaces the escapes Docker's formatter takes in `--format` (`\t`, `\n`).
pub fn unescape_format(format: &str) -> String {
    format.replace("\\t", "\t").replace("\\n", "\n")
}

/// A parsed Go template (the subset berth supports).
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Action {
        func: Option<String>,
        path: Vec<String>,
        args: Vec<String>,
    },
}

const FUNCS: [&str; 7] = ["json", "upper", "lower", "title", "join", "index", "print"];

impl Template {
    /// Parses text with `{{.A.B}}`, `{{.}}`, `{{json .A}}`, `{{upper .A}}`, `{{lower .A}}`,
    /// `{{join .A ", "}}` and `{{index .A "key"}}` actions; `{{-`/`-}}` trim spaces.
    pub fn parse(text: &str) -> Result<Template> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut trim_next = false;
        while let Some(start) = rest.find("{{") {
            let mut lit = &rest[..start];
            if trim_next {
                lit = lit.trim_start();
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| anyhow!("template parsing error: unclosed action in {text:?}"))?;
            let mut inner = &after[..end];
            if let Some(s) = inner.strip_prefix('-') {
                lit = lit.trim_end();
                inner = s;
            }
            trim_next = false;
            if let Some(s) = inner.strip_suffix('-') {
                trim_next = true;
                inner = s;
            }
            if !lit.is_empty() {
                parts.push(Part::Text(lit.to_string()));
            }
            parts.push(parse_action(inner.trim(), text)?);
            rest = &after[end + 2..];
        }
        let lit = if trim_next { rest.trim_start() } else { rest };
        if !lit.is_empty() {
            parts.push(Part::Text(lit.to_string()));
        }
        Ok(Template { parts })
    }

    /// Renders against `value`. Missing keys print `<no value>`, as Go does for maps.
    pub fn render(&self, value: &Value) -> Result<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Action { func, path, args } => {
                    let v = lookup(value, path);
                    match (func.as_deref(), v) {
                        (Some("json"), v) => {
                            out.push_str(&serde_json::to_string(v.unwrap_or(&Value::Null))?)
                        }
                        (Some("upper"), v) => out.push_str(&go_string(v).to_uppercase()),
                        (Some("lower"), v) => out.push_str(&go_string(v).to_lowercase()),
                        (Some("title"), v) => out.push_str(&title(&go_string(v))),
                        (Some("join"), v) => {
                            let sep = args.first().map(String::as_str).unwrap_or("");
                            match v {
                                Some(Value::Array(items)) => {
                                    let items: Vec<String> =
                                        items.iter().map(|i| go_string(Some(i))).collect();
                                    out.push_str(&items.join(sep));
                                }
                                other => out.push_str(&go_string(other)),
                            }
                        }
                        (Some("index"), v) => {
                            let key = args.first().map(String::as_str).unwrap_or("");
                            let item = match v {
                                Some(Value::Object(m)) => m.get(key),
                                Some(Value::Array(a)) => {
                                    key.parse::<usize>().ok().and_then(|i| a.get(i))
                                }
                                _ => None,
                            };
                            out.push_str(&go_string(item));
                        }
                        (_, v) => out.push_str(&go_string(v)),
                    }
                }
            }
        }
        Ok(out)
    }
}

fn parse_action(inner: &str, text: &str) -> Result<Part> {
    let words =
        split_words(inner).map_err(|e| anyhow!("template parsing error: {e} in {text:?}"))?;
    let (func, rest) = match words.first() {
        Some(w) if FUNCS.contains(&w.as_str()) => (Some(w.clone()), &words[1..]),
        Some(w) if !w.starts_with('.') => {
            bail!("template parsing error: function {w:?} not defined in {text:?}")
        }
        Some(_) => (None, &words[..]),
        None => bail!("template parsing error: missing value for command in {text:?}"),
    };
    let func = func.filter(|f| f != "print");
    let target = rest
        .first()
        .ok_or_else(|| anyhow!("template parsing error: missing argument in {text:?}"))?;
    if !target.starts_with('.') {
        bail!("template parsing error: unexpected {target:?} in {text:?}");
    }
    let path: Vec<String> = target[1..]
        .split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let args = rest[1..].to_vec();
    match func.as_deref() {
        Some("join") | Some("index") if args.len() != 1 => {
            bail!(
                "template parsing error: {} takes two arguments in {text:?}",
                func.unwrap()
            )
        }
        Some(f) if f != "join" && f != "index" && !args.is_empty() => {
            bail!("template parsing error: too many arguments to {f} in {text:?}")
        }
        None if !args.is_empty() => {
            bail!(
                "template parsing error: unexpected {:?} in {text:?}",
                args[0]
            )
        }
        _ => {}
    }
    Ok(Part::Action { func, path, args })
}

/// Splits an action into words; `"..."` strings are unquoted.
fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut w = String::new();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => w.push('\n'),
                        Some('t') => w.push('\t'),
                        Some(o) => w.push(o),
                        None => return Err("unterminated quoted string".into()),
                    },
                    Some(o) => w.push(o),
                    None => return Err("unterminated quoted string".into()),
                }
            }
            words.push(w);
        } else {
            let mut w = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                w.push(c);
                chars.next();
            }
            words.push(w);
        }
    }
    Ok(words)
}

fn lookup<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut v = value;
    for key in path {
        v = v.as_object()?.get(key)?;
    }
    Some(v)
}

fn title(s: &str) -> String {
    let mut out = String::new();
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    out
}

/// Prints a value as Go's text/template would (`map[a:b]`, `[x y]`, `<no value>`).
pub fn go_string(v: Option<&Value>) -> String {
    match v {
        None => "<no value>".into(),
        Some(Value::Null) => "<nil>".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Array(items)) => {
            let items: Vec<String> = items.iter().map(|i| go_string(Some(i))).collect();
            format!("[{}]", items.join(" "))
        }
        Some(Value::Object(m)) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", go_string(m.get(*k))))
                .collect();
            format!("map[{}]", items.join(" "))
        }
    }
}

/// Renders rows for a `--format` of a listing command: `json` (one object a line),
/// `table [TEMPLATE]` (headers from `headers`, aligned) or a plain template per row.
/// `None` means the caller should print its default table.
pub fn listing(format: &str, headers: &Value, rows: &[Value]) -> Result<Option<String>> {
    let format = format.trim();
    if format.is_empty() || format == "table" {
        return Ok(None);
    }
    if format == "json" {
        let mut out = String::new();
        for row in rows {
            out.push_str(&serde_json::to_string(row)?);
            out.push('\n');
        }
        return Ok(Some(out));
    }
    if let Some(tpl) = format.strip_prefix("table ") {
        let template = Template::parse(&unescape_format(tpl.trim()))?;
        let mut lines = vec![template.render(headers)?];
        for row in rows {
            lines.push(template.render(row)?);
        }
        let cells: Vec<Vec<String>> = lines
            .iter()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect();
        return Ok(Some(table(&cells)));
    }
    let template = Template::parse(&unescape_format(format))?;
    let mut out = String::new();
    for row in rows {
        out.push_str(&template.render(row)?);
        out.push('\n');
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables() {
        let rows = vec![
            vec!["CONTAINER ID".to_string(), "IMAGE".into(), "NAMES".into()],
            vec!["abc".to_string(), "busybox".into(), "web".into()],
        ];
        assert_eq!(
            table(&rows),
            "CONTAINER ID   IMAGE     NAMES\nabc            busybox   web\n"
        );
        let rows = vec![
            vec!["DRIVER".to_string(), "VOLUME NAME".into()],
            vec!["local".into(), "v".into()],
        ];
        assert_eq!(table(&rows), "DRIVER    VOLUME NAME\nlocal     v\n");
        // Empty last column: no trailing spaces.
        let rows = vec![vec!["A".to_string(), "".into()]];
        assert_eq!(table(&rows), "A\n");
        // Widths count characters, not bytes.
        let rows = vec![
            vec!["\"sh…\"".to_string(), "x".into()],
            vec!["abcdefghij".into(), "y".into()],
        ];
        assert_eq!(table(&rows), "\"sh…\"        x\nabcdefghij   y\n");
    }

    #[test]
    fn durations() {
        let s = Duration::from_secs;
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(s(1)), "1 second");
        assert_eq!(human_duration(s(3)), "3 seconds");
        assert_eq!(human_duration(s(59)), "59 seconds");
        assert_eq!(human_duration(s(60)), "About a minute");
        assert_eq!(human_duration(s(119)), "About a minute");
        assert_eq!(human_duration(s(300)), "5 minutes");
        assert_eq!(human_duration(s(3599)), "59 minutes");
        assert_eq!(human_duration(s(3600)), "About an hour");
        assert_eq!(human_duration(s(5399)), "About an hour");
        assert_eq!(human_duration(s(5400)), "2 hours");
        assert_eq!(human_duration(s(47 * 3600)), "47 hours");
        assert_eq!(human_duration(s(3 * 86400)), "3 days");
        assert_eq!(human_duration(s(15 * 86400)), "2 weeks");
        assert_eq!(human_duration(s(90 * 86400)), "3 months");
        assert_eq!(human_duration(s(800 * 86400)), "2 years");
        let now = SystemTime::UNIX_EPOCH + s(1000);
        assert_eq!(ago(now - s(3), now), "3 seconds ago");
        assert_eq!(ago(now + s(3), now), "Less than a second ago");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(1234), "1.23kB");
        assert_eq!(human_size(4_261_234), "4.26MB");
        assert_eq!(human_size(4_000_000), "4MB");
        assert_eq!(human_size(12_300_000), "12.3MB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_size(1_500_000_000), "1.5GB");
        assert_eq!(human_size_prec(999.6, 3), "1e+03B");
        assert_eq!(human_size_prec(1_234_567.0, 4), "1.235MB");
    }

    #[test]
    fn commands() {
        assert_eq!(command_column("true", false), "\"true\"");
        assert_eq!(
            command_column("sh -c 'echo hello world; sleep 1'", false),
            "\"sh -c 'echo hello w…\""
        );
        assert_eq!(ellipsis("12345678901234567890", 20), "12345678901234567890");
        assert_eq!(
            ellipsis("123456789012345678901", 20),
            "1234567890123456789…"
        );
        assert_eq!(command_column("echo \"hi\"", true), "\"echo \\\"hi\\\"\"");
    }

    #[test]
    fn statuses() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let t = |ago: u64| Some(now - Duration::from_secs(ago));
        assert_eq!(status_column("running", 0, t(3), None, now), "Up 3 seconds");
        assert_eq!(
            status_column("exited", 0, t(200), t(120), now),
            "Exited (0) 2 minutes ago"
        );
        assert_eq!(
            status_column("exited", 137, t(200), None, now),
            "Exited (137)"
        );
        assert_eq!(status_column("created", 0, None, None, now), "Created");
        assert_eq!(
            status_column("paused", 0, t(7200), None, now),
            "Up 2 hours (Paused)"
        );
        assert_eq!(
            status_column("paused", 0, t(5), None, now),
            "Up 5 seconds (Paused)"
        );
        assert_eq!(
            status_column("restarting", 1, t(60), t(2), now),
            "Restarting (1) 2 seconds ago"
        );
        assert_eq!(status_column("dead", 0, None, None, now), "Dead");
    }

    #[test]
    fn templates() {
        let v = json!({
            "Id": "abc",
            "State": {"Status": "running", "Pid": 42, "Running": true},
            "Config": {"Env": ["A=1", "B=2"], "Labels": {"k": "v", "a": "b"}, "Cmd": null},
        });
        let r = |t: &str| Template::parse(t).unwrap().render(&v).unwrap();
        assert_eq!(r("{{.State.Status}}"), "running");
        assert_eq!(r("{{ .State.Pid }} {{.State.Running}}"), "42 true");
        assert_eq!(r("id={{.Id}}!"), "id=abc!");
        assert_eq!(r("{{json .Config.Env}}"), "[\"A=1\",\"B=2\"]");
        assert_eq!(
            r("{{json .State}}"),
            "{\"Pid\":42,\"Running\":true,\"Status\":\"running\"}"
        );
        assert_eq!(r("{{.Config.Env}}"), "[A=1 B=2]");
        assert_eq!(r("{{.Config.Labels}}"), "map[a:b k:v]");
        assert_eq!(r("{{.Config.Cmd}}"), "<nil>");
        assert_eq!(r("{{.Nope.Deeper}}"), "<no value>");
        assert_eq!(r("{{upper .State.Status}}"), "RUNNING");
        assert_eq!(r("{{join .Config.Env \",\"}}"), "A=1,B=2");
        assert_eq!(r("{{index .Config.Labels \"k\"}}"), "v");
        assert_eq!(r("a {{- .Id -}} b"), "aabcb");
        assert_eq!(
            r("{{json .}}").len(),
            serde_json::to_string(&v).unwrap().len()
        );
        assert_eq!(r("no actions"), "no actions");
        for bad in [
            "{{.Id",
            "{{nosuch .Id}}",
            "{{}}",
            "{{json}}",
            "{{.Id .X}}",
            "{{join .A}}",
        ] {
            let err = Template::parse(bad).unwrap_err().to_string();
            assert!(err.contains("template parsing error"), "{bad}: {err}");
        }
    }

    #[test]
    fn listings() {
        let headers = json!({"ID": "CONTAINER ID", "Names": "NAMES"});
        let rows = vec![
            json!({"ID": "abc", "Names": "web"}),
            json!({"ID": "def", "Names": "db"}),
        ];
        assert_eq!(listing("table", &headers, &rows).unwrap(), None);
        assert_eq!(
            listing("{{.ID}}", &headers, &rows).unwrap().unwrap(),
            "abc\ndef\n"
        );
        assert_eq!(
            listing("json", &headers, &rows[..1]).unwrap().unwrap(),
            "{\"ID\":\"abc\",\"Names\":\"web\"}\n"
        );
        assert_eq!(
            listing("table {{.ID}}\\t{{.Names}}", &headers, &rows)
                .unwrap()
                .unwrap(),
            "CONTAINER ID   NAMES\nabc            web\ndef            db\n"
        );
        assert_eq!(
            listing("{{.ID}}\\t{{.Names}}", &headers, &rows[..1])
                .unwrap()
                .unwrap(),
            "abc\tweb\n"
        );
    }
}
