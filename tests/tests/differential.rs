//! Wire parity, proven differentially (issue 18): one scripted kubectl session (`differential/session.txt`) run
//! against (a) our server standalone, (b) our server behind a real kube-apiserver v1.20.2's aggregator, and (c) a
//! CRD generated from our own schemas and printer columns, installed into that same kube-apiserver. Outputs are
//! normalised (names of the groups, uids, times, resourceVersions, ages, temporary paths, kubectl's version-skew
//! warning) and compared with the CRD's: every difference must be listed, with its reason, in
//! `differential/allowed.txt`, and every listed difference must still occur — so any new difference fails.
//!
//! The session format: `== <id>` starts a step; `$ kubectl <args>` is its command (shell-like quoting); `| `
//! lines are its stdin; `=> NAME` keeps its trimmed stdout as `%NAME%`; `~ sorted` compares its stdout's lines in
//! sorted order (for output whose order the target does not fix, e.g. a category's resources on the CRD, whose
//! discovery lists them in its informer's order). In commands and stdin, `%B%`/`%R%` are
//! the backups/restores resource (`timeseriesdbbackups.<group>`), `%b%`/`%r%` their short names, `%G%` the group,
//! `%AV%` the apiVersion and `%CAT%` the category of the target.
//!
//! One cluster, one session per target, the three run side by side; each step is bounded by kubectl's own
//! timeouts and the harness's.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::time::Instant;

use backup_e2e::TestServer;
use backup_e2e::aggregated::AggregatedCluster;
use backup_e2e::crd::{self, CRD_CATEGORY, CRD_GROUP, CRD_SHORT_SUFFIX};
use backup_e2e::kubectl::Kubectl;
use regex::Regex;
use serde_json::Value;

const SESSION: &str = include_str!("differential/session.txt");
const ALLOWED: &str = include_str!("differential/allowed.txt");

/// The namespace every target works in.
const NAMESPACE: &str = "diff";
/// Where a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Standalone,
    Aggregated,
    Crd,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Self::Standalone => "standalone",
            Self::Aggregated => "aggregated",
            Self::Crd => "crd",
        }
    }

    fn group(self) -> &'static str {
        match self {
            Self::Crd => CRD_GROUP,
            _ => backup_apis::GROUP,
        }
    }

    /// The placeholders of the session for this target.
    fn vars(self) -> HashMap<String, String> {
        let group = self.group();
        let short = |s: &str| if self == Self::Crd { format!("{s}{CRD_SHORT_SUFFIX}") } else { s.to_string() };
        let category = if self == Self::Crd { CRD_CATEGORY } else { "backups" };
        [
            ("B", format!("timeseriesdbbackups.{group}")),
            ("R", format!("timeseriesdbrestores.{group}")),
            ("b", short("tsdbb")),
            ("r", short("tsdbr")),
            ("G", group.to_string()),
            ("AV", format!("{group}/v1")),
            ("CAT", category.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// One step of the session.
#[derive(Debug, Clone)]
struct Step {
    id: String,
    args: Vec<String>,
    stdin: String,
    capture: Option<String>,
    /// Whether stdout's lines are compared sorted.
    sorted: bool,
}

/// What a step printed, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Split a command line as a POSIX shell would for the cases the session uses: words, '…' literally, "…" with
/// `\"` and `\\`.
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some(n @ ('"' | '\\' | '$')) => word.push(n),
                            Some(n) => {
                                word.push('\\');
                                word.push(n);
                            }
                            None => word.push('\\'),
                        },
                        c => word.push(c),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

fn parse_session(text: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = || format!("session.txt line {}", n + 1);
        if let Some(id) = line.strip_prefix("== ") {
            assert!(!steps.iter().any(|s| s.id == id.trim()), "{}: step {id} twice", at());
            steps.push(Step {
                id: id.trim().to_string(),
                args: Vec::new(),
                stdin: String::new(),
                capture: None,
                sorted: false,
            });
            continue;
        }
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let step = steps.last_mut().unwrap_or_else(|| panic!("{}: outside a step", at()));
        if let Some(command) = line.strip_prefix("$ ") {
            let words = split_words(command);
            assert_eq!(words.first().map(String::as_str), Some("kubectl"), "{}: a step runs kubectl", at());
            assert!(step.args.is_empty(), "{}: one command per step", at());
            step.args = words[1..].to_vec();
        } else if let Some(input) = line.strip_prefix("| ").or(if line == "|" { Some("") } else { None }) {
            step.stdin.push_str(input);
            step.stdin.push('\n');
        } else if let Some(name) = line.strip_prefix("=> ") {
            step.capture = Some(name.trim().to_string());
        } else if line.trim() == "~ sorted" {
            step.sorted = true;
        } else {
            panic!("{}: not a step line: {line}", at());
        }
    }
    for s in &steps {
        assert!(!s.args.is_empty(), "step {} has no command", s.id);
    }
    steps
}

/// `%NAME%` replaced by its value.
fn substitute(text: &str, vars: &HashMap<String, String>) -> String {
    let mut out = text.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("%{k}%"), v);
    }
    out
}

/// The normaliser of one target's outputs.
struct Normaliser {
    target: Target,
    rules: Vec<(Regex, &'static str)>,
}

impl Normaliser {
    fn new(target: Target) -> Self {
        let rules = [
            // kubectl 1.32 against kube-apiserver 1.20.
            (r"(?m)^WARNING: version difference between client.*\n", ""),
            (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UID"),
            (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", "TIME"),
            (r#"("resourceVersion":\s*)"\d+""#, r#"${1}"RV""#),
            (r#"(resourceVersion:\s*)"?\d+"?"#, "${1}RV"),
            (r#"(\\"resourceVersion\\":\s*)\\"\d+\\""#, r#"${1}\"RV\""#),
            (r"(ResourceVersion in (precondition|object meta): )\d+", "${1}RV"),
            (r"(Resource Version:\s+)\d+", "${1}RV"),
            // Ages in tables: `5s`, `2m3s`, `2y339d`, `<invalid>`.
            (r"(?m)(\s)(\d+[smhdy](\d+[smhd])?|<invalid>)(\s|$)", "${1}AGE${4}"),
            // `kubectl diff`: its temporary directories and their files' times.
            (r"/tmp/(LIVE|MERGED)-\d+", "/tmp/$1-N"),
            (r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d+ [+-]\d{4}", "TIME"),
            // Continue tokens are opaque (and hold a resourceVersion).
            (r#"("continue":\s*)"[A-Za-z0-9_=-]+""#, r#"${1}"CONTINUE""#),
            (r"https://127\.0\.0\.1:\d+", "https://SERVER"),
        ];
        let rules = rules.into_iter().map(|(r, to)| (Regex::new(r).expect("a valid regex"), to)).collect();
        Self { target, rules }
    }

    fn text(&self, text: &str) -> String {
        let mut out = text.replace(CRD_GROUP, "GROUP").replace(backup_apis::GROUP, "GROUP");
        if self.target == Target::Crd {
            for short in ["tsdbb", "tsdbr"] {
                out = out.replace(&format!("{short}{CRD_SHORT_SUFFIX}"), short);
            }
            out = out.replace(CRD_CATEGORY, "backups");
        }
        // JSON (as `--raw` prints it, in the server's key order, or a watch's one event a line) with its keys
        // sorted.
        if let Ok(mut v) = serde_json::from_str::<Value>(out.trim()) {
            if v.is_object() || v.is_array() {
                sort_managed_fields(&mut v);
                out = serde_json::to_string_pretty(&v).unwrap_or(out) + "\n";
            }
        } else if out.lines().count() > 1
            && out.lines().all(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v.is_object()))
        {
            out = out
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .map(|mut v| {
                    sort_managed_fields(&mut v);
                    serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
                })
                .collect();
        }
        for (re, to) in &self.rules {
            out = re.replace_all(&out, *to).into_owned();
        }
        // Tables align columns to their widest cell: a normalised cell must not change the spacing.
        let spaces = Regex::new(r"(\S) {2,}").expect("a valid regex");
        spaces.replace_all(&out, "$1  ").into_owned()
    }
}

/// managedFields in an order that does not depend on time: upstream sorts entries by operation, then time (whole
/// seconds), then manager — so whether two writes fell in the same second reorders them, and the times themselves
/// are normalised away.
fn sort_managed_fields(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(entries)) = m.get_mut("managedFields") {
                let key = |e: &Value| {
                    ["operation", "manager", "subresource", "apiVersion"]
                        .map(|k| e.get(k).and_then(Value::as_str).unwrap_or("").to_string())
                };
                entries.sort_by_key(key);
            }
            m.values_mut().for_each(sort_managed_fields);
        }
        Value::Array(a) => a.iter_mut().for_each(sort_managed_fields),
        _ => {}
    }
}

/// Run the session on one target; the normalised outcome of every step.
async fn run_session(target: Target, kubectl: Kubectl, steps: Vec<Step>) -> Vec<Outcome> {
    let mut vars = target.vars();
    let normaliser = Normaliser::new(target);
    let mut outcomes = Vec::with_capacity(steps.len());
    for step in steps {
        let mut args = vec![format!("--namespace={NAMESPACE}")];
        args.extend(step.args.iter().map(|a| substitute(a, &vars)));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stdin = substitute(&step.stdin, &vars);
        let out = kubectl.run_with(&args, &stdin, &[]).await;
        let stdout = match &step.capture {
            Some(name) => {
                vars.insert(name.clone(), out.stdout.trim().to_string());
                // What was kept differs by nature (a resourceVersion, a target's own YAML); its use is compared.
                format!("(kept as %{name}%)")
            }
            None if step.sorted => {
                let mut lines: Vec<&str> = out.stdout.lines().collect();
                lines.sort_unstable();
                normaliser.text(&lines.join("\n"))
            }
            None => normaliser.text(&out.stdout),
        };
        outcomes.push(Outcome { code: out.code, stdout, stderr: normaliser.text(&out.stderr) });
    }
    outcomes
}

/// The allow-list: (step, target) → reason.
fn parse_allowed(text: &str, steps: &[Step]) -> BTreeMap<(String, Target), String> {
    let mut allowed = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (id, targets) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let reason = words.collect::<Vec<_>>().join(" ");
        assert!(!reason.is_empty(), "allowed.txt line {}: `<step> <targets> <reason>`: {line}", n + 1);
        assert!(steps.iter().any(|s| s.id == id), "allowed.txt line {}: no step {id}", n + 1);
        let targets: Vec<Target> = match targets {
            "both" => vec![Target::Standalone, Target::Aggregated],
            "standalone" => vec![Target::Standalone],
            "aggregated" => vec![Target::Aggregated],
            other => panic!("allowed.txt line {}: targets are standalone, aggregated or both, not {other}", n + 1),
        };
        for t in targets {
            let previous = allowed.insert((id.to_string(), t), reason.clone());
            assert!(previous.is_none(), "allowed.txt line {}: {id} on {} listed twice", n + 1, t.name());
        }
    }
    allowed
}

/// A readable account of one difference.
fn describe(step: &Step, target: Target, ours: &Outcome, crd: &Outcome) -> String {
    let mut out =
        format!("--- step {} on {} differs from the CRD: kubectl {}\n", step.id, target.name(), step.args.join(" "));
    if ours.code != crd.code {
        let _ = writeln!(out, "exit code: {} {:?}, crd {:?}", target.name(), ours.code, crd.code);
    }
    for (what, a, b) in [("stdout", &ours.stdout, &crd.stdout), ("stderr", &ours.stderr, &crd.stderr)] {
        if a != b {
            let _ = writeln!(out, "{what} (- crd, + {}):\n{}", target.name(), line_diff(b, a));
        }
    }
    out
}

/// The lines of `a` and `b` as a unified diff without context headers (`-` only in `a`, `+` only in `b`, ` ` in
/// both), from their longest common subsequence.
fn line_diff(a: &str, b: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            let _ = writeln!(out, "  {}", a[i]);
            (i, j) = (i + 1, j + 1);
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            let _ = writeln!(out, "+ {}", b[j]);
            j += 1;
        } else {
            let _ = writeln!(out, "- {}", a[i]);
            i += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_kubectl_session_against_ours_and_a_crd() {
    let started = Instant::now();
    let steps = parse_session(SESSION);
    let allowed = parse_allowed(ALLOWED, &steps);

    let env = AggregatedCluster::shared().await;
    let admin = env.cluster.kubectl();
    env.cluster.create_namespace(NAMESPACE).await;
    crd::install(&admin).await;
    let standalone = TestServer::standalone().await;
    eprintln!("targets ready in {:?}", started.elapsed());

    let session_started = Instant::now();
    let (s, a, c) = tokio::join!(
        run_session(Target::Standalone, standalone.kubectl(), steps.clone()),
        run_session(Target::Aggregated, env.cluster.kubectl(), steps.clone()),
        run_session(Target::Crd, env.cluster.kubectl(), steps.clone()),
    );
    eprintln!("{} steps on three targets in {:?}", steps.len(), session_started.elapsed());

    let mut differing = BTreeSet::new();
    let mut report = String::new();
    for (i, step) in steps.iter().enumerate() {
        for (target, ours) in [(Target::Standalone, &s[i]), (Target::Aggregated, &a[i])] {
            if *ours == c[i] {
                continue;
            }
            differing.insert((step.id.clone(), target));
            match allowed.get(&(step.id.clone(), target)) {
                Some(reason) => eprintln!("intended difference: {} on {}: {reason}", step.id, target.name()),
                None => report.push_str(&describe(step, target, ours, &c[i])),
            }
        }
    }
    let stale: Vec<String> =
        allowed.keys().filter(|k| !differing.contains(*k)).map(|(id, t)| format!("{id} {}", t.name())).collect();
    if !stale.is_empty() {
        let _ =
            writeln!(report, "--- listed in allowed.txt but no longer different (remove them): {}", stale.join(", "));
    }
    eprintln!(
        "{} differences, all listed in allowed.txt: {}; total {:?}",
        differing.len(),
        report.is_empty(),
        started.elapsed()
    );
    assert!(report.is_empty(), "the session differs from the CRD where allowed.txt does not say so:\n{report}");
}
